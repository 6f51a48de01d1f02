"""Issue 3's proof: Portage's own emerge, our bashrc snippet and the real
`portage-ima hook`, judged by `evmctl ima_verify`. Every test runs in both
layouts (ROOT=DIR and a prefix); see portage_playground."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from checks import assert_no_xattr, assert_signed, snapshot

from portage_playground import CATEGORY
from portage_playground.ima import evmctl_verify, ima_xattr, problem_lines, summaries


def live(pg, path):
    """A package path (/usr/...) on disk in this playground."""
    return pg.live(pg.ed(path))


def summary(result, pf):
    """The last (postinst) summary of the hook for CATEGORY/pf."""
    found = summaries(result.output, f"{CATEGORY}/{pf}")
    assert found, f"no portage-ima summary for {pf} in the emerge output:\n{result.output}"
    return found[-1]


def install_two(pg, pn, **phases):
    """Ebuilds pn-1 and pn-2, pn-1 installed; returns the atom of pn-2."""
    a1 = pg.add_ebuild(pn, "1", **phases)
    a2 = pg.add_ebuild(pn, "2", **phases)
    pg.emerge(a1).check()
    return a2


def test_full_package(pg):
    """Executable, data, a space in a name, /etc, a symlink, a keepdir: every
    obj signed, nothing else; and the timing the snippet relies on: ${D} is
    complete at preinst, CONTENTS at postinst, user hook functions still run."""
    rec = pg.base / "full-timing"
    pg.write_bashrc(
        extra=f"""
        if [[ ${{PN}} == full ]]; then
            case ${{EBUILD_PHASE}} in
            preinst) find "${{D}}" -type f | wc -l > "{rec}.preinst" ;;
            postinst) grep -c '^obj ' "${{EROOT%/}}/var/db/pkg/${{CATEGORY}}/${{PF}}/CONTENTS" > "{rec}.postinst" ;;
            esac
        fi
        pre_pkg_preinst() {{ einfo "user pre_pkg_preinst ran for ${{PF}}"; }}
        post_pkg_postinst() {{ einfo "user post_pkg_postinst ran for ${{PF}}"; }}
        """
    )
    atom = pg.add_ebuild("full")
    before = snapshot(pg)
    r = pg.emerge(atom).check()
    objs = assert_signed(pg, "full-1", before)

    assert {
        "/usr/bin/full",
        "/usr/share/full/file with space.txt",
        "/usr/share/full/data.txt",
        "/etc/full.conf",
        "/var/lib/full/.keep_test-ima_full-0",
    } <= {p.removeprefix(pg.eprefix) for p in objs}
    link = live(pg, "/usr/bin/full-link")
    assert link.is_symlink()
    dirs = [pg.live(e.path) for e in pg.contents(CATEGORY, "full-1") if e.kind == "dir"]
    assert_no_xattr(link, *dirs)
    assert summary(r, "full-1")["failed"] == 0
    assert "user pre_pkg_preinst ran for full-1" in r.output
    assert "user post_pkg_postinst ran for full-1" in r.output
    # ${D} already held every file at preinst; CONTENTS was complete at postinst.
    assert int(Path(f"{rec}.preinst").read_text()) == len(objs)
    assert int(Path(f"{rec}.postinst").read_text()) == len(objs)
    # The summary and the problems reach the build log too, not only stdout.
    assert "portage-ima: test-ima/full-1: signed" in r.log_text


def test_upgrade_then_reinstall(pg):
    """foo-1 -> foo-2 signs the new files; reinstalling foo-2 re-signs nothing:
    unchanged files keep their signatures, byte for byte."""
    a2 = install_two(pg, "upg")
    stable = live(pg, "/usr/share/upg/stable.txt")
    stable_sig = ima_xattr(stable)
    assert stable_sig is not None

    before = snapshot(pg)
    r = pg.emerge(a2).check()
    objs = assert_signed(pg, "upg-2", before)
    assert not pg.vdb(CATEGORY, "upg-1").exists()
    assert "version 2" in live(pg, "/usr/share/upg/data.txt").read_text()
    assert ima_xattr(stable) == stable_sig
    assert summary(r, "upg-2")["failed"] == 0

    # Same version again, signing only after the merge: all already valid.
    pg.write_ima_toml(premerge="never")
    sigs = {p: ima_xattr(f) for p, f in objs.items()}
    before = snapshot(pg)
    r = pg.emerge(a2).check()
    assert_signed(pg, "upg-2", before)
    s = summary(r, "upg-2")
    assert (s["now"], s["failed"], s["valid"]) == (0, 0, len(objs)), r.output
    assert {p: ima_xattr(f) for p, f in pg.signable(CATEGORY, "upg-2").items()} == sigs


def test_config_protect(pg):
    """The admin changed /etc/cfgp.conf: the new version lands as
    ._cfg0000_cfgp.conf and is signed; the admin's file is left alone."""
    a2 = install_two(pg, "cfgp")
    conf = live(pg, "/etc/cfgp.conf")
    with conf.open("a") as f:
        f.write("# changed by the admin\n")
    stale = ima_xattr(conf)

    before = snapshot(pg)
    pg.emerge(a2).check()
    cfg = conf.parent / "._cfg0000_cfgp.conf"
    assert cfg.is_file(), "Portage did not protect the changed config file"
    objs = assert_signed(pg, "cfgp-2", before)
    assert objs[pg.ed("/etc/cfgp.conf")] == cfg
    assert "changed by the admin" in conf.read_text()
    assert not evmctl_verify(conf, pg.cert_der)[0]
    assert ima_xattr(conf) == stale, "the admin's file was re-signed"


@pytest.mark.parametrize("premerge", ["auto", "never"])
def test_changed_in_window(pg, premerge):
    """The old version's postrm (after the merge, before postinst) appends to
    a new file: that file ends without a valid signature and is reported; the
    emerge succeeds."""
    pn = f"win-{premerge}"
    data = live(pg, f"/usr/share/{pn}/data.txt")
    a2 = install_two(pg, pn)
    pg.write_ima_toml(premerge=premerge)
    pg.write_bashrc(
        extra=f"""
        post_pkg_postrm() {{
            [[ ${{PN}} == {pn} ]] && echo "changed after the merge" >> "{data}"
        }}
        """
    )
    before = snapshot(pg)
    r = pg.emerge(a2).check()
    assert "changed after the merge" in data.read_text()
    assert_signed(pg, f"{pn}-2", before, unsigned=(pg.ed(f"/usr/share/{pn}/data.txt"),))
    assert problem_lines(r.output, f"/usr/share/{pn}/data.txt"), r.output
    assert summary(r, f"{pn}-2")["failed"] >= 1


def test_replaced_by_symlink_in_window(pg):
    """A new file replaced by a symlink to a file outside the package: the
    link is not followed, the target gains no xattr, it is reported."""
    outside = pg.base / "outside" / "target.txt"
    outside.parent.mkdir(exist_ok=True)
    outside.write_text("not part of any package\n")
    data = live(pg, "/usr/share/swap/data.txt")
    a2 = install_two(pg, "swap")
    pg.write_bashrc(
        extra=f"""
        post_pkg_postrm() {{
            [[ ${{PN}} == swap ]] && rm -f "{data}" && ln -s "{outside}" "{data}"
        }}
        """
    )
    before = snapshot(pg)
    r = pg.emerge(a2).check()
    assert data.is_symlink()
    assert_no_xattr(data, outside)
    assert_signed(pg, "swap-2", before, unsigned=(pg.ed("/usr/share/swap/data.txt"),))
    assert problem_lines(r.output, "/usr/share/swap/data.txt"), r.output


RECORD_POSTRM = """\
getfattr --absolute-names -n security.ima -e hex "{bin}" "{data}" > "{record}" 2>&1
true
"""


@pytest.mark.parametrize("premerge", ["auto", "never"])
def test_signed_before_old_postrm(pg, premerge):
    """With preinst signing the new files are signed by the time the old
    version's pkg_postrm runs (and can execute them under appraisal); with
    premerge = never they are not (the window this closes)."""
    pn = f"rec-{premerge}"
    record = pg.base / f"{pn}.postrm"
    binary, data = live(pg, f"/usr/bin/{pn}"), live(pg, f"/usr/share/{pn}/data.txt")
    postrm = RECORD_POSTRM.format(bin=binary, data=data, record=record)
    a2 = install_two(pg, pn, pkg_postrm=postrm)
    pg.write_ima_toml(premerge=premerge)
    before = snapshot(pg)
    r = pg.emerge(a2).check()
    assert_signed(pg, f"{pn}-2", before)

    seen = record.read_text()
    if premerge == "auto":
        for f in (binary, data):
            assert f"security.ima=0x{ima_xattr(f).hex()}" in seen, (seen, r.output)
        assert summary(r, f"{pn}-2")["failed"] == 0
    else:
        assert "security.ima=" not in seen, seen
        assert "No such attribute" in seen, seen


@pytest.mark.parametrize("xattr_feature", [False, True])
def test_tmpdir_on_tmpfs(pg, xattr_feature):
    """PORTAGE_TMPDIR on tmpfs: the merge copies across filesystems. Without
    FEATURES=xattr preinst signing is skipped with a hint and postinst signs
    everything; with it (and security.ima not excluded) preinst signs."""
    pn = "shm-xattr" if xattr_feature else "shm"
    atom = pg.add_ebuild(pn)
    shm = Path(tempfile.mkdtemp(prefix="portage-ima-e2e.", dir="/dev/shm"))
    env = {"PORTAGE_TMPDIR": shm}
    if xattr_feature:
        env.update(FEATURES="xattr", PORTAGE_XATTR_EXCLUDE="system.nfs4_acl")
    try:
        before = snapshot(pg)
        r = pg.emerge(atom, env=env).check()
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    assert f"{shm}/portage/{CATEGORY}/{pn}-1/image" in r.output
    objs = assert_signed(pg, f"{pn}-1", before)
    hook_lines = [line for line in r.output.splitlines() if "portage-ima" in line]
    before_merge = [s["before"] for s in summaries(r.output, f"{CATEGORY}/{pn}-1")]
    assert before_merge, r.output
    if xattr_feature:
        assert max(before_merge) == len(objs), r.output
    else:
        assert max(before_merge) == 0, r.output
        assert any("xattr" in line.lower() for line in hook_lines), "\n".join(hook_lines)


def test_strict_fails_the_merge(pg):
    """strict = true and a file changed in the window: emerge fails, clearly."""
    data = live(pg, "/usr/share/strict/data.txt")
    a2 = install_two(pg, "strict")
    pg.write_ima_toml(strict=True)
    pg.write_bashrc(
        extra=f"""
        post_pkg_postrm() {{
            [[ ${{PN}} == strict ]] && echo "changed after the merge" >> "{data}"
        }}
        """
    )
    r = pg.emerge(a2)
    assert r.returncode != 0, r.output
    assert problem_lines(r.output, "/usr/share/strict/data.txt"), r.output
    assert "strict mode" in r.output
    assert "ERROR: " in r.output and "test-ima/strict-2" in r.output


def test_strict_immutable_file(pg):
    """strict = true, signing only in postinst, a new file made immutable in
    the window: the xattr cannot be written, emerge fails."""
    data = live(pg, "/usr/share/immut/data.txt")
    a2 = install_two(pg, "immut")
    pg.write_ima_toml(strict=True, premerge="never")
    pg.write_bashrc(
        extra=f"""
        post_pkg_postrm() {{
            [[ ${{PN}} == immut ]] && chattr +i "{data}"
        }}
        """
    )
    try:
        r = pg.emerge(a2)
    finally:
        subprocess.run(["chattr", "-i", str(data)], check=False)
    assert r.returncode != 0, r.output
    assert problem_lines(r.output, "/usr/share/immut/data.txt"), r.output
    assert "strict mode" in r.output
    assert ima_xattr(data) is None


def test_only_preinst_and_postinst(pg):
    """The hook is called once in preinst and once in postinst, never in
    depend (metadata) or any other phase, and the metadata cache is clean."""
    calls = pg.base / "hook-calls.log"
    phases = pg.base / "bashrc-phases.log"
    wrapper = pg.base / "hook-wrapper"
    wrapper.write_text(
        f'#!/bin/sh\necho "${{EBUILD_PHASE:-<empty>}} ${{PF}} $*" >> "{calls}"\n'
        f'exec "{pg.hook}" "$@"\n'
    )
    wrapper.chmod(0o755)
    # Builtins only: this also runs in depend, where PATH=/dev/null.
    pg.write_bashrc(
        extra=f'[[ ${{PN}} == phases ]] && echo "${{EBUILD_PHASE:-<empty>}}" >> "{phases}"'
    )
    atom = pg.add_ebuild("phases")
    before = snapshot(pg)
    r = pg.emerge(atom, hook=wrapper).check()
    assert_signed(pg, "phases-1", before)

    seen = phases.read_text().split()
    assert "depend" in seen and "<empty>" in seen, seen
    assert calls.read_text().splitlines() == ["preinst phases-1 hook", "postinst phases-1 hook"]
    caches = list(pg.base.glob(f"**/var/cache/edb/dep/**/{CATEGORY}/phases-1"))
    assert caches, "no metadata cache entry was written"
    for cache in caches:
        lines = cache.read_text().splitlines()
        assert "EAPI=8" in lines
        # Nothing but KEY=VALUE lines: no stray output from the depend phase.
        assert all(re.match(r"^[A-Za-z0-9_]+=", line) for line in lines), lines


def test_missing_binary(pg):
    """No binary: one warning, the emerge succeeds, nothing is signed."""
    atom = pg.add_ebuild("nobin")
    before = snapshot(pg)
    r = pg.emerge(atom, hook=pg.base / "no-such-portage-ima").check()
    warnings = [line for line in r.output.splitlines() if "not found" in line and "portage-ima" in line]
    assert len(warnings) == 1, r.output
    assert snapshot(pg) == before


@pytest.mark.parametrize("binpkg_format", ["gpkg", "xpak"])
def test_binary_package(pg, binpkg_format):
    """Installing from a binary package (MERGE_TYPE=binary, no build phases)
    is signed the same way: build one, remove the package, emerge -K it."""
    pn = f"bin-{binpkg_format}"
    atom = pg.add_ebuild(pn)
    env = {"BINPKG_FORMAT": binpkg_format}
    pg.emerge(atom, args=("--oneshot", "--buildpkg=y"), env=env).check()
    pg.emerge(atom, args=("--unmerge",), env=env).check()
    assert not pg.vdb(CATEGORY, f"{pn}-1").exists()
    assert not live(pg, f"/usr/bin/{pn}").exists()
    before = snapshot(pg)
    r = pg.emerge(atom, args=("--oneshot", "--usepkgonly"), env=env).check()
    assert "Installing (1 of 1)" in r.output and "Emerging binary" in r.output, r.output
    assert_signed(pg, f"{pn}-1", before)
    assert summary(r, f"{pn}-1")["failed"] == 0


def test_pkg_preinst_changes_the_image(pg):
    """The snippet signs ${D} before the ebuild's own pkg_preinst runs; what
    pkg_preinst adds to or changes in ${D} is signed in postinst."""
    atom = pg.add_ebuild(
        "ownpreinst",
        pkg_preinst="""\
        echo added > "${ED}/usr/share/ownpreinst/added.txt" || die
        echo more >> "${ED}/usr/share/ownpreinst/data.txt" || die
        """,
    )
    before = snapshot(pg)
    r = pg.emerge(atom).check()
    objs = assert_signed(pg, "ownpreinst-1", before)
    assert pg.ed("/usr/share/ownpreinst/added.txt") in objs
    s = summary(r, "ownpreinst-1")
    assert (s["now"], s["failed"]) == (2, 0), r.output


def test_configuration_problem_does_not_break(pg):
    """A key that does not exist: the hook reports it, the emerge succeeds,
    nothing is signed."""
    missing = pg.base / "no-such-key.pem"
    pg.write_ima_toml(key=str(missing))
    atom = pg.add_ebuild("nokey")
    before = snapshot(pg)
    r = pg.emerge(atom).check()
    assert snapshot(pg) == before
    warned = [line for line in r.output.splitlines() if str(missing) in line]
    assert warned, r.output
    assert "exit status 2" in r.output, r.output
    # Per phase one warning, naming the command to run once the key is there.
    follow_up = [line for line in r.output.splitlines() if "NOT signed" in line]
    assert len(follow_up) == 2, r.output
    assert all(line.endswith(f"run: portage-ima sign {atom}") for line in follow_up), r.output
