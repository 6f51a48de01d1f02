"""The bashrc snippet on its own: shellcheck, bash -n, and its behaviour in
each phase with stand-ins for Portage's einfo/ewarn/die and for the hook
(fast; the real thing runs in test_emerge.py)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap

import pytest

from portage_playground import SNIPPET

# Portage's message functions, recorded; die stops like Portage's does.
HARNESS = """\
einfo() { echo "einfo:$*"; }
ewarn() { echo "ewarn:$*"; }
die() { echo "die:$*"; exit 99; }
before_funcs=$(declare -F)
source "$SNIPPET"
echo "status:$?"
[[ -z $(compgen -v _portage_ima) ]] || echo "leaked variables"
[[ $(declare -F) == "$before_funcs" ]] || echo "defined functions"
"""


def run(tmp_path, phase, hook_body=None, path="/usr/bin:/bin", portage_ima=True):
    """Source the snippet in EBUILD_PHASE=phase with a fake hook whose body is
    ``hook_body``; returns (exit status, output lines, hook calls)."""
    calls = tmp_path / "calls"
    hook = tmp_path / "portage-ima"
    hook.write_text(f'#!/bin/bash\necho "$EBUILD_PHASE $*" >> "{calls}"\n{hook_body or ""}\n')
    hook.chmod(0o755)
    (tmp_path / "T").mkdir(exist_ok=True)
    env = {
        "PATH": path,
        "SNIPPET": str(SNIPPET),
        "EBUILD_PHASE": phase,
        "T": str(tmp_path / "T"),
        "CATEGORY": "app-misc",
        "PF": "foo-1",
    }
    if portage_ima:
        env["PORTAGE_IMA"] = str(hook)
    proc = subprocess.run(
        ["/bin/bash", "-c", HARNESS], env=env, capture_output=True, text=True
    )
    lines = proc.stdout.splitlines()
    assert "leaked variables" not in lines and "defined functions" not in lines, lines
    assert proc.stderr == "", proc.stderr
    return proc.returncode, lines, calls.read_text().splitlines() if calls.exists() else []


def test_shellcheck_and_syntax():
    subprocess.run(["bash", "-n", str(SNIPPET)], check=True)
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck not installed")
    proc = subprocess.run(["shellcheck", str(SNIPPET)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("phase", ["depend", "", "setup", "install", "prerm", "postrm", "config"])
def test_other_phases_do_nothing(tmp_path, phase):
    path = "/dev/null" if phase == "depend" else "/usr/bin:/bin"
    rc, lines, calls = run(tmp_path, phase, "exit 3", path=path)
    assert (rc, lines, calls) == (0, ["status:0"], [])
    # Not even looking for the binary when PORTAGE_IMA is unset.
    rc, lines, calls = run(tmp_path, phase, path=path, portage_ima=False)
    assert (rc, lines) == (0, ["status:0"])


@pytest.mark.parametrize("phase", ["preinst", "postinst"])
def test_output_goes_to_einfo_and_ewarn(tmp_path, phase):
    body = textwrap.dedent(
        """\
        echo "portage-ima: app-misc/foo-1: signed 2 before the merge"
        echo ""
        echo "portage-ima: /usr/bin/foo: not signed: changed" >&2
        exit 1
        """
    )
    rc, lines, calls = run(tmp_path, phase, body)
    assert rc == 0
    assert calls == [f"{phase} hook"]
    assert lines == [
        "einfo:portage-ima: app-misc/foo-1: signed 2 before the merge",
        "ewarn:portage-ima: /usr/bin/foo: not signed: changed",
        "status:0",
    ]
    assert list((tmp_path / "T").iterdir()) == [], "temporary stderr file left behind"


def test_strict_failure_dies(tmp_path):
    rc, lines, _ = run(tmp_path, "postinst", "echo 'portage-ima: /x: not signed: y' >&2; exit 3")
    assert rc == 99
    assert lines[0] == "ewarn:portage-ima: /x: not signed: y"
    assert lines[1].startswith("die:portage-ima: strict mode") and "app-misc/foo-1" in lines[1]


@pytest.mark.parametrize("code", [2, 127, 139])
def test_other_failures_warn_only(tmp_path, code):
    rc, lines, _ = run(tmp_path, "postinst", f"exit {code}")
    assert rc == 0
    assert len(lines) == 2 and lines[0].startswith("ewarn:") and f"exit status {code}" in lines[0]


def test_missing_binary_warns_once(tmp_path):
    for phase, warnings in (("preinst", 0), ("postinst", 1)):
        rc, lines, _ = run(tmp_path, phase, portage_ima=False)
        assert rc == 0
        assert len([x for x in lines if x.startswith("ewarn:")]) == warnings, lines
        if warnings:
            assert "not found" in lines[0] and "app-misc/foo-1" in lines[0]


def test_found_on_path(tmp_path):
    rc, lines, calls = run(tmp_path, "postinst", "echo hi", path=f"{tmp_path}:/usr/bin:/bin", portage_ima=False)
    assert (rc, lines, calls) == (0, ["einfo:hi", "status:0"], ["postinst hook"])
