"""`portage-ima policy` reads the setup the way Portage itself resolves it
(the playground's real portageq: make.globals, make.conf, FEATURES
stacking), in both layouts, and `doctor` agrees with what it wrote."""

from __future__ import annotations

import subprocess
import tempfile
from contextlib import contextmanager

from portage_playground import tmpfs_noexec


@contextmanager
def make_conf_lines(pg, text: str):
    """`text` appended to make.conf for the duration."""
    confs = {pg.configroot / "etc/portage/make.conf", pg.broot / "etc/portage/make.conf"}
    saved = {c: c.read_text() for c in confs}
    try:
        for c in confs:
            c.write_text(saved[c] + text)
        yield
    finally:
        for c, old in saved.items():
            c.write_text(old)


def policy(pg, hook_bin, *args: str, noexec_tmpfs: bool = False,
           then: str = "") -> subprocess.CompletedProcess:
    cmd = [str(hook_bin), "policy", *args]
    if noexec_tmpfs:
        cmd = tmpfs_noexec(cmd, then)
    return subprocess.run(cmd, env=pg.env(), capture_output=True, text=True)


def header(text: str) -> str:
    """The comment lines as one line (the header is wrapped)."""
    return " ".join(l[1:].strip() for l in text.splitlines() if l.startswith("#"))


def test_policy_reads_portageq_and_exempts_a_tmpfs_build_directory(pg, hook_bin):
    # With every other tmpfs noexec (the only way fsmagic may exempt it).
    with tempfile.TemporaryDirectory(dir="/dev/shm") as tmpfs_dir:
        with make_conf_lines(pg, f'PORTAGE_TMPDIR="{tmpfs_dir}"\n'):
            out = policy(pg, hook_bin, "--appraise", "exec", noexec_tmpfs=True)
            path = pg.base / "ima-policy"
            written = policy(pg, hook_bin, "--appraise", "exec", "--output", str(path),
                             noexec_tmpfs=True)
            # Another tmpfs where programs may run: refused.
            with tempfile.TemporaryDirectory() as other:
                exec_shm = policy(pg, hook_bin, "--appraise", "exec", noexec_tmpfs=True,
                                  then=f"mount -t tmpfs tmpfs {other}")
            doctor = subprocess.run(
                [str(hook_bin), "doctor", "--root", str(pg.configroot), "--policy", str(path)],
                env=pg.env(), capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    h = header(out.stdout)
    assert "(from portageq)" in h, h
    assert f"PORTAGE_TMPDIR={tmpfs_dir}: builds run in {tmpfs_dir}, a tmpfs" in h, h
    # The playground's make.conf has FEATURES="-userpriv ...", as portageq says.
    assert "no userpriv (every phase runs as root)" in h, h
    rules = [l for l in out.stdout.splitlines() if l and not l.startswith("#")]
    assert "dont_appraise fsmagic=0x1021994" in rules
    assert rules[-1] == "appraise func=BPRM_CHECK appraise_type=imasig", rules
    assert written.returncode == 0 and path.read_text() == out.stdout, written.stderr
    line = next(l for l in doctor.stdout.splitlines() if l.startswith("ok    policy-builds:"))
    assert f"{tmpfs_dir}, a tmpfs" in line, doctor.stdout
    assert "exemption wider than the build directory" in out.stderr, out.stderr
    assert exec_shm.returncode == 2, exec_shm.stdout + exec_shm.stderr
    assert f"among them {other}, which are not mounted noexec" in exec_shm.stderr, exec_shm.stderr


def test_policy_refuses_what_cannot_let_builds_run(pg, hook_bin):
    # The playground builds in its own directory, on the filesystem of ROOT
    # (or, in the prefix layout, of /), without userpriv.
    out = policy(pg, hook_bin)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "no policy can appraise root-exec and let builds run" in out.stderr, out.stderr
    assert "without FEATURES=userpriv every build phase runs as root" in out.stderr
    assert "add userpriv to FEATURES" in out.stderr
    assert out.stdout == ""
