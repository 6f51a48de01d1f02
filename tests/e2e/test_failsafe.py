"""Fail-safe merges (issue 20) with real emerge, in both layouts: PORTAGE_TMPDIR
on a tmpfs, so Portage copies the image and drops security.ima unless
FEATURES=xattr keeps it. With `enforce = true` (what the hook acts on when
the kernel appraises what root runs) the merge stops in preinst, strict or
not, the message names the two make.conf lines, and nothing of the package
reaches ROOT. No stop with `enforce = false`, with FEATURES=xattr, or with
`allow_unsigned_window = true` (a warning then)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from checks import assert_signed, snapshot
from test_doctor_xattr import portage_default_exclude

from portage_playground import CATEGORY


@pytest.fixture
def tmpfs(tmp_path):
    target = tmp_path / "tmpfs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(target)], check=True)
    yield target
    subprocess.run(["umount", str(target)], check=True)


def tree(pg) -> dict[str, tuple[int, int]]:
    """Every path under EROOT but var/ (logs, caches, the vdb) and tmp/
    (Portage makes it): (mode, size)."""
    found = {}
    for path in pg.eroot.rglob("*"):
        rel = path.relative_to(pg.eroot)
        if rel.parts[0] not in ("var", "tmp"):
            st = path.lstat()
            found[str(rel)] = (st.st_mode, st.st_size)
    return found


@pytest.mark.parametrize("strict", [False, True])
def test_enforce_stops_a_merge_that_drops_signatures(pg, tmpfs, strict):
    pn = f"failstop{int(strict)}"
    atom = pg.add_ebuild(pn)
    pg.write_ima_toml(enforce=True, strict=strict)
    assert os.stat(tmpfs).st_dev != os.stat(pg.eroot).st_dev
    before = tree(pg)
    r = pg.emerge(atom, env={"PORTAGE_TMPDIR": tmpfs})
    assert r.returncode != 0, r.output
    out = r.output
    assert f"stopping the merge of {CATEGORY}/{pn}-1 before any file goes live" in out, out
    assert "the kernel refuses unsigned programs (enforce = true in ima.toml)" in out, out
    assert "FEATURES lacks xattr" in out, out
    # The fix: the two make.conf lines, the exclude list Portage uses minus security.ima.
    assert 'FEATURES="${FEATURES} xattr"' in out, out
    default = portage_default_exclude(pg)
    want = 'PORTAGE_XATTR_EXCLUDE="' + " ".join(p for p in default if p != "security.ima") + '"'
    assert want in out, (want, out)
    assert "allow_unsigned_window = true" in out, out
    assert f"portage-ima: the merge of {CATEGORY}/{pn}-1 is stopped before any file goes live" in out, out
    assert "ERROR: " in out and "preinst" in out, out
    # Nothing of the package was merged.
    assert not pg.vdb(CATEGORY, f"{pn}-1").exists()
    assert tree(pg) == before
    assert not pg.live(pg.ed(f"/usr/bin/{pn}")).exists()


def test_enforce_false_merges_and_postinst_signs(pg, tmpfs):
    pn = "failoff"
    atom = pg.add_ebuild(pn)
    pg.write_ima_toml(enforce=False)
    before = snapshot(pg)
    r = pg.emerge(atom, env={"PORTAGE_TMPDIR": tmpfs}).check()
    assert "stopping the merge" not in r.output, r.output
    assert "not signing before the merge" in r.output, r.output
    assert_signed(pg, f"{pn}-1", before)


def test_enforce_with_features_xattr_merges_signed_before_the_merge(pg, tmpfs):
    pn = "failxattr"
    atom = pg.add_ebuild(pn)
    pg.write_ima_toml(enforce=True, strict=True)
    exclude = " ".join(p for p in portage_default_exclude(pg) if p != "security.ima")
    before = snapshot(pg)
    r = pg.emerge(atom, env={"PORTAGE_TMPDIR": tmpfs, "FEATURES": "xattr",
                             "PORTAGE_XATTR_EXCLUDE": exclude}).check()  # fmt: skip
    assert "stopping the merge" not in r.output, r.output
    assert f"{CATEGORY}/{pn}-1: signed 6 files before the merge" in r.output, r.output
    assert_signed(pg, f"{pn}-1", before)


def test_allow_unsigned_window_warns_and_merges(pg, tmpfs):
    pn = "failwindow"
    atom = pg.add_ebuild(pn)
    pg.write_ima_toml(enforce=True, allow_unsigned_window=True)
    before = snapshot(pg)
    r = pg.emerge(atom, env={"PORTAGE_TMPDIR": tmpfs}).check()
    assert f"merging {CATEGORY}/{pn}-1 anyway (allow_unsigned_window = true)" in r.output, r.output
    assert_signed(pg, f"{pn}-1", before)


def test_self_upgrade_runs_the_signed_copy_in_postinst(pg, tmpfs, hook_bin):
    """A package that installs the running hook binary at its own path (ROOT
    = / only, so in the prefix layout, where EPREFIX is the playground):
    preinst keeps a signed copy in ${T} and the snippet runs it in postinst."""
    if pg.layout != "prefix":
        pytest.skip("the copy is made only when ROOT is / (the prefix layout)")
    pn = "failself"
    # The hook runs as ${EPREFIX}/usr/bin/portage-ima: a copy of the built binary.
    live_bin = pg.live(pg.ed("/usr/bin/portage-ima"))
    live_bin.parent.mkdir(parents=True, exist_ok=True)
    live_bin.write_bytes(Path(hook_bin).read_bytes())
    live_bin.chmod(0o755)
    atom = pg.add_ebuild(pn, install=f'exeinto /usr/bin\nnewexe "{hook_bin}" portage-ima\n')
    pg.write_ima_toml(enforce=True, allow_unsigned_window=True)
    before = snapshot(pg)
    r = pg.emerge(atom, env={"PORTAGE_TMPDIR": tmpfs}, hook=live_bin).check()
    assert (f"this merge replaces {live_bin} and drops its signature: the postinst hook runs "
            f"the new one from ") in r.output, r.output
    assert f"{CATEGORY}/{pn}-1: signed 0 before the merge, 1 now" in r.output, r.output
    assert_signed(pg, f"{pn}-1", before)
