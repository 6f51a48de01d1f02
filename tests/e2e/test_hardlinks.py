"""Hard links in ${D} to a file outside the image (issue 22, row 7), with
real emerge, both layouts.

Whoever can add names to ${D} (the portage user during the build) can
hard-link an inode from elsewhere into the image; Portage merges it by
rename, so the outside name stays and would carry our signature. A bashrc
post_src_install (the build's last word before the package is merged) adds
such a link here. Such a file is never signed, before the merge or after
it, and strict mode stops the merge. Hard links inside the image still sign.
"""

from __future__ import annotations

from checks import assert_signed, snapshot
from portage_playground import CATEGORY
from portage_playground.ima import ima_xattr

# Two names for one file inside the image (git installs its commands so).
INSIDE_LINKS = """\
insinto "/usr/share/${PN}"
printf 'linked inside\\n' > "${T}/one.txt" || die
doins "${T}/one.txt"
ln "${ED}/usr/share/${PN}/one.txt" "${ED}/usr/share/${PN}/two.txt" || die
"""


def link_from_outside(pg, outside) -> None:
    pg.write_bashrc(
        extra=f"""\
        post_src_install() {{
            ln "{outside}" "${{ED}}/usr/share/${{PN}}/outside.txt" || die
        }}
        """
    )


def test_hard_links_inside_the_image_are_signed(pg):
    pn = "hlinside"
    before = snapshot(pg)
    pg.emerge(pg.add_ebuild(pn, install=INSIDE_LINKS)).check()
    objs = assert_signed(pg, f"{pn}-1", before)
    one, two = objs[pg.ed(f"/usr/share/{pn}/one.txt")], objs[pg.ed(f"/usr/share/{pn}/two.txt")]
    assert one.stat().st_ino == two.stat().st_ino and one.stat().st_nlink == 2


def test_a_file_linked_from_outside_is_not_signed(pg):
    pn = "hloutside"
    outside = pg.base / f"{pn}-outside.txt"
    outside.write_text("not the package's\n")
    link_from_outside(pg, outside)
    before = snapshot(pg)
    r = pg.emerge(pg.add_ebuild(pn, install=INSIDE_LINKS)).check()
    linked = pg.ed(f"/usr/share/{pn}/outside.txt")
    assert pg.live(linked).stat().st_ino == outside.stat().st_ino  # Portage kept the link
    assert ima_xattr(outside) is None, "the outside file got signed"
    reported = [line for line in r.output.splitlines() if "outside.txt" in line]
    assert any("hard links but only 1 inside" in line for line in reported), r.output
    # Everything else is signed, the link inside the image included.
    assert_signed(pg, f"{pn}-1", before, unsigned=(linked,))


def test_strict_mode_refuses_a_file_linked_from_outside(pg):
    pn = "hlstrict"
    outside = pg.base / f"{pn}-outside.txt"
    outside.write_text("not the package's\n")
    link_from_outside(pg, outside)
    pg.write_ima_toml(strict=True)
    r = pg.emerge(pg.add_ebuild(pn, install=INSIDE_LINKS))
    assert r.returncode != 0, r.output
    assert "strict mode" in r.output and "preinst" in r.output, r.output
    assert not pg.vdb(CATEGORY, f"{pn}-1").exists(), "merged although preinst refused it"
    assert ima_xattr(outside) is None


def test_the_package_phase_does_not_sign_a_file_linked_from_outside(pg):
    """FEATURES=buildpkg: Portage packs a hard-linked copy of the image
    (${T}/packaging), so every file there has two names; only a third, outside
    both, is refused."""
    pn = "hlbinpkg"
    outside = pg.base / f"{pn}-outside.txt"
    outside.write_text("not the package's\n")
    link_from_outside(pg, outside)
    r = pg.emerge(pg.add_ebuild(pn, install=INSIDE_LINKS), env={"FEATURES": "buildpkg"}).check()
    # one.txt and two.txt are one inode: signed once, listed twice.
    summary = f"{CATEGORY}/{pn}-1: binary package: 2 files signed (1 newly), listed in build-info/IMA_SIGNATURES, 1 failed"
    assert summary in r.output, r.output
    assert any("outside.txt" in line and "hard links but only 2 inside" in line for line in r.output.splitlines()), r.output
    assert ima_xattr(outside) is None
