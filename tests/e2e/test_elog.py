"""Which hook messages reach elog, with Portage's own elog code and its
default PORTAGE_ELOG_CLASSES="log warn error" (the playground's make.conf
keeps every class; these tests put the default back), and the per-package
opt-out PORTAGE_IMA_SKIP through package.env. Real emerge, both layouts."""

from __future__ import annotations

from checks import assert_no_xattr, assert_signed, snapshot

from portage_playground import CATEGORY
from portage_playground.ima import summaries

DEFAULT_CLASSES = 'PORTAGE_ELOG_CLASSES="log warn error"\n'


def configure(pg, text: str) -> None:
    """Append ``text`` to make.conf (both config roots, as the playground
    writes them); later assignments win."""
    for etc in {pg.configroot / "etc/portage", pg.broot / "etc/portage"}:
        with open(etc / "make.conf", "a") as f:
            f.write(text)


def elog_text(pg, pf: str) -> str:
    """What Portage's elog "save" module wrote for CATEGORY/pf (newest)."""
    logs = sorted((pg.logdir / "elog").glob(f"{CATEGORY}:{pf}:*.log"), key=lambda p: p.stat().st_mtime)
    assert logs, f"no elog file for {pf} in {pg.logdir / 'elog'}"
    return logs[-1].read_text()


def test_summary_stays_out_of_elog_by_default(pg):
    configure(pg, DEFAULT_CLASSES)
    result = pg.emerge(pg.add_ebuild("elog-default")).check()
    assert summaries(result.output, f"{CATEGORY}/elog-default-1"), result.output
    # Portage writes an elog file only when a class it keeps has messages:
    # none here, or one without our summary.
    logs = list((pg.logdir / "elog").glob(f"{CATEGORY}:elog-default-1:*.log"))
    assert all("portage-ima:" not in p.read_text() for p in logs), [p.read_text() for p in logs]


def test_summary_in_elog_when_asked(pg):
    configure(pg, DEFAULT_CLASSES + "PORTAGE_IMA_ELOG_SUMMARY=yes\n")
    pg.emerge(pg.add_ebuild("elog-asked")).check()
    text = elog_text(pg, "elog-asked-1")
    assert summaries(text, f"{CATEGORY}/elog-asked-1"), text
    assert "LOG:" in text, text


def test_problems_reach_elog(pg):
    configure(pg, DEFAULT_CLASSES)
    pg.write_ima_toml(key=str(pg.base / "no-such-key.pem"))
    result = pg.emerge(pg.add_ebuild("elog-problem")).check()
    text = elog_text(pg, "elog-problem-1")
    assert "WARN:" in text and "no-such-key.pem" in text, (text, result.output)


def test_package_env_opt_out(pg):
    for etc in {pg.configroot / "etc/portage", pg.broot / "etc/portage"}:
        (etc / "env").mkdir(exist_ok=True)
        (etc / "env" / "no-ima.conf").write_text("PORTAGE_IMA_SKIP=1\n")
        (etc / "package.env").write_text(f"{CATEGORY}/optout-skipped no-ima.conf\n")
    before = snapshot(pg)
    try:
        skipped = pg.emerge(pg.add_ebuild("optout-skipped")).check()
        signed = pg.emerge(pg.add_ebuild("optout-signed")).check()
    finally:
        for etc in {pg.configroot / "etc/portage", pg.broot / "etc/portage"}:
            (etc / "package.env").unlink()
    assert "PORTAGE_IMA_SKIP=1: files of " in skipped.output, skipped.output
    assert not summaries(skipped.output, f"{CATEGORY}/optout-skipped-1"), skipped.output
    assert_no_xattr(*pg.signable(CATEGORY, "optout-skipped-1").values())
    assert summaries(signed.output, f"{CATEGORY}/optout-signed-1"), signed.output
    assert_signed(pg, "optout-signed-1", before)
