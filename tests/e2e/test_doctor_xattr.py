"""`portage-ima doctor` gives the PORTAGE_XATTR_EXCLUDE line to paste, taken
from the running Portage (the playground's PyPI Portage, asked through its
own portageq) with only security.ima removed: never a frozen copy."""

from __future__ import annotations

import json
import subprocess
import tempfile

from portage_playground import SNIPPET


def portage_default_exclude(pg) -> list[str]:
    """PORTAGE_XATTR_EXCLUDE as Portage's own make.globals sets it, read by
    Portage's own config parser."""
    code = (
        "import sys, portage.util; "
        "print(portage.util.getconfig(sys.argv[1], expand=False)['PORTAGE_XATTR_EXCLUDE'])"
    )
    out = subprocess.run(
        [str(pg.venv / "bin/python"), "-c", code, str(pg.venv / "share/portage/config/make.globals")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def test_doctor_prints_the_exclude_line_from_the_running_portage(pg, hook_bin):
    default = portage_default_exclude(pg)
    assert "security.ima" in default and len(default) > 3, default
    # A PORTAGE_TMPDIR on another filesystem (tmpfs), so that keeping the
    # xattr matters; FEATURES without xattr.
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmpfs_dir:
        for etc in {pg.configroot / "etc/portage", pg.broot / "etc/portage"}:
            with open(etc / "make.conf", "a") as f:
                f.write(f'PORTAGE_TMPDIR="{tmpfs_dir}"\n')
        pg.write_bashrc(before=f"[[ -r {SNIPPET} ]] && source {SNIPPET}", snippet=False)
        proc = subprocess.run(
            [str(hook_bin), "doctor", "--json", "--root", str(pg.configroot)],
            env=pg.env(), capture_output=True, text=True,
        )  # fmt: skip
        for etc in {pg.configroot / "etc/portage", pg.broot / "etc/portage"}:
            (etc / "make.conf").write_text(
                "".join(l for l in (etc / "make.conf").read_text().splitlines(True) if tmpfs_dir not in l)
            )
    report = json.loads(proc.stdout)
    # The README's guarded source line counts as hooking Portage.
    bashrc = next(c for c in report["checks"] if c["check"] == "bashrc")
    assert bashrc["status"] == "ok", bashrc
    xattr = next(c for c in report["checks"] if c["check"] == "xattr")
    assert "from portageq" in xattr["finding"], xattr
    want = 'PORTAGE_XATTR_EXCLUDE="' + " ".join(p for p in default if p != "security.ima") + '"'
    assert xattr["fix"] and want in xattr["fix"], (want, xattr)
    assert 'FEATURES="${FEATURES} xattr"' in xattr["fix"], xattr
