"""Issue 12, key rotation: a root that real emerges signed with an RSA key
(through the hook) moves to an ECDSA P-256 key without re-emerging.

The admin's overlap procedure (README, "Rotating the signing key"): the new
key in ima.toml, both certificates on the keyring, `sign --all --rotate`,
`verify --all --cert NEW`, then the old certificate retired. Checked here:
`verify --cert NEW --cert OLD` calls the old signatures `other-key` (not a
failure), `sign --all --rotate` can be interrupted (SIGINT) and resumed,
leaves every file signed by one key or the other (evmctl is the judge), does
not sign a file changed since the merge, and afterwards `verify --all --cert
NEW` is all `ok`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ecdsa import make_ec_key
from test_system import System, big_install, interrupt_when

from portage_playground import CATEGORY, md5
from portage_playground.ima import cert_keyid, evmctl_verify, ima_xattr

# Enough work that the rotation can be interrupted part way: two large
# files (one is being read at SIGINT) and many small ones.
ROTBIG_INSTALL = big_install(blobs=2, blob_mb=100, small_files=400)


def keyid_of(path: Path) -> str | None:
    """The key id in a file's signature (sigv2 header bytes 3..7)."""
    value = ima_xattr(path)
    return value[3:7].hex() if value and value[0] == 3 else None


def rejected(paths, cert_der: Path) -> list[str]:
    results = ((p, evmctl_verify(p, cert_der)) for p in paths)
    return [f"{p}: {out}" for p, (ok, out) in results if not ok]


def test_rotate_rsa_to_ecdsa(pg, hook_bin, tmp_path):
    # Emerged with the hook on, signed with the playground's RSA key.
    atoms = [pg.add_ebuild("rotsmall"), pg.add_ebuild("rotbig", install=ROTBIG_INSTALL)]
    pg.emerge(*atoms).check()
    system = System(pg, hook_bin)
    old_pem, old_der, old_id = pg.cert, pg.cert_der, cert_keyid(pg.cert)
    objs = {**pg.signable(CATEGORY, "rotsmall-1"), **pg.signable(CATEGORY, "rotbig-1")}
    files = list(objs.values())
    assert all(keyid_of(p) == old_id for p in files), "the hook did not sign everything"
    # The admin changed a file since the merge: rotation must not bless it.
    changed = objs[pg.ed("/usr/share/rotsmall/data.txt")]
    original = changed.read_bytes()
    changed.write_bytes(b"changed by the admin\n")
    changed_value = ima_xattr(changed)

    new_key, new_pem, new_der = make_ec_key(tmp_path, "prime256v1", "sec1")
    new_id = cert_keyid(new_pem)
    pg.write_ima_toml(key=str(new_key), cert=str(new_pem))

    # Before: both certificates given, the old signatures are other-key
    # (reported, not a failure); the new certificate alone, unknown-key.
    both = ("--cert", str(new_pem), "--cert", str(old_pem))
    r, doc = system.verify_json(f"{CATEGORY}/rotbig", *both)
    assert r.returncode == 0, str(r)
    assert {f["status"] for f in doc["files"]} == {"other-key"}, str(r)
    r, doc = system.verify_json(f"{CATEGORY}/rotbig", "--cert", str(new_pem))
    assert r.returncode == 1 and {f["status"] for f in doc["files"]} == {"unknown-key"}, str(r)

    # Interrupted once a large file is being read and something is rotated.
    argv = system.argv("sign", "--json", "--all", "--rotate")
    blobs = {str(p) for p in files if p.name.startswith("blob")}
    first, signalled, _ = interrupt_when(
        system,
        argv,
        lambda opened: bool(blobs & opened) and any(keyid_of(p) == new_id for p in files),
    )
    if signalled is None:
        pytest.fail(f"the rotation finished before it could be interrupted\n{first}")
    assert first.returncode == 130, str(first)
    assert "interrupted" in first.stderr, str(first)
    rotated = [p for p in files if keyid_of(p) == new_id]
    left = [p for p in files if keyid_of(p) == old_id]
    print(f"[{pg.layout}] interrupted rotation: {len(rotated)} rotated, {len(left)} left")
    assert rotated and left and len(rotated) + len(left) == len(files)
    assert changed in left, "the changed file was signed"
    assert not rejected(rotated, new_der)
    assert not rejected([p for p in left if p != changed], old_der)
    reported = [f for f in first.doc()["files"] if f["outcome"] == "rotated"]
    assert len(reported) == len(rotated), str(first)
    assert all(f["detail"] == f"was signed by key id {old_id}" for f in reported), str(first)

    # Resumed: the rest is rotated, what was done is already valid, the
    # changed file fails and keeps its old value.
    again = system.sign("--all", "--rotate")
    assert again.returncode == 1, str(again)
    summary = again.doc()["summary"]
    assert (summary["rotated"], summary["already-valid"], summary["failed"]) == (
        len(left) - 1,
        len(rotated),
        1,
    ), str(again)
    assert [Path(p).name for p in again.failed()] == ["data.txt"], str(again)
    assert "content differs" in next(iter(again.failed().values())), str(again)
    assert ima_xattr(changed) == changed_value
    unchanged = [p for p in files if p != changed]
    assert all(keyid_of(p) == new_id for p in unchanged)
    assert not rejected(unchanged, new_der)
    big_md5s = system.md5s(CATEGORY, "rotbig-1")
    assert {p: md5(p) for p in big_md5s} == big_md5s, "a file's content changed"

    # The admin puts the file back: the next rotation signs it too, and the
    # new certificate alone verifies every installed file.
    changed.write_bytes(original)
    last = system.sign("--all", "--rotate")
    assert last.returncode == 0 and last.doc()["summary"]["rotated"] == 1, str(last)
    r, doc = system.verify_json("--all", "--cert", str(new_pem))
    assert r.returncode == 0, str(r)
    assert {f["status"] for f in doc["files"]} == {"ok"}, str(r)
    assert not rejected(files, new_der)
