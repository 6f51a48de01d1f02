"""Assertions shared by the e2e tests: what "the package is signed" means."""

from __future__ import annotations

from pathlib import Path

from portage_playground import CATEGORY, Playground
from portage_playground.ima import evmctl_verify, ima_xattr, xattr_paths


def snapshot(pg: Playground) -> dict[str, bytes]:
    """All security.ima xattrs in the playground (outside PORTAGE_TMPDIR)."""
    tmp = str(pg.tmpdir)
    return {p: v for p, v in xattr_paths(pg.base).items() if not p.startswith(tmp)}


def assert_signed(
    pg: Playground,
    pf: str,
    before: dict[str, bytes],
    unsigned: tuple[str, ...] = (),
) -> dict[str, Path]:
    """Every ``obj`` of ``pf`` (except the CONTENTS paths in ``unsigned``)
    carries a security.ima that ``evmctl ima_verify`` accepts; the ones in
    ``unsigned`` carry none that verifies; and no other path in the
    playground gained or changed a security.ima since ``before``."""
    objs = pg.signable(CATEGORY, pf)
    assert objs, f"{pf} has no obj in CONTENTS"
    bad = []
    for path, live in objs.items():
        ok, out = evmctl_verify(live, pg.cert_der)
        if path in unsigned:
            if ok:
                bad.append(f"{live}: verifies but must not")
        elif not ok:
            bad.append(f"{live}: evmctl ima_verify failed: {out}")
    assert not bad, "\n".join(bad)
    allowed = {str(p) for p in objs.values()}
    after = snapshot(pg)
    gained = sorted(p for p, v in after.items() if before.get(p) != v and p not in allowed)
    assert not gained, f"security.ima appeared or changed outside {pf}'s files: {gained}"
    return objs


def assert_no_xattr(*paths: Path) -> None:
    """None of ``paths`` (symlinks not followed) has a security.ima."""
    have = [str(p) for p in paths if ima_xattr(p) is not None]
    assert not have, f"unexpected security.ima on {have}"
