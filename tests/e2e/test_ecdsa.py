"""Issue 12: an ECDSA key configured in ima.toml signs what Portage merges.

The admin makes a P-256 or P-384 key with openssl (the SEC1 form `openssl
ecparam -genkey` writes, or PKCS#8), sets `key`/`cert` in ima.toml, and the
hook signs every installed file with it through either backend: evmctl
accepts each signature with the key's certificate, the header carries the
chosen hash and the certificate's key id, and `portage-ima verify` agrees.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from checks import snapshot

from portage_playground import CATEGORY
from portage_playground.ima import cert_keyid, evmctl_verify, ima_xattr

IMA_HASH_ALGO = {"sha256": 4, "sha384": 5, "sha512": 6}


def make_ec_key(dir: Path, curve: str, form: str) -> tuple[Path, Path, Path]:
    """(key, certificate PEM, certificate DER) for `curve` (prime256v1,
    secp384r1), the key in `form` ("sec1" or "pkcs8")."""
    key, pem, der = dir / f"{curve}.key", dir / f"{curve}.crt.pem", dir / f"{curve}.crt.der"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    if form == "sec1":
        run("openssl", "ecparam", "-name", curve, "-genkey", "-out", str(key))
    else:
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
            f"ec_paramgen_curve:{curve}", "-out", str(key))  # fmt: skip
    key.chmod(0o600)
    run("openssl", "req", "-x509", "-new", "-key", str(key), "-out", str(pem), "-days", "7",
        "-subj", f"/CN=portage-ima e2e {curve}", "-addext", "keyUsage=digitalSignature",
        "-addext", "basicConstraints=critical,CA:FALSE",
        "-addext", "subjectKeyIdentifier=hash")  # fmt: skip
    run("openssl", "x509", "-in", str(pem), "-outform", "der", "-out", str(der))
    return key, pem, der


@pytest.mark.parametrize(
    "curve,form,backend,hash",
    [
        ("prime256v1", "sec1", "openssl", "sha256"),
        ("secp384r1", "pkcs8", "rustcrypto", "sha384"),
        ("prime256v1", "pkcs8", "rustcrypto", "sha512"),
        ("secp384r1", "sec1", "openssl", "sha512"),
    ],
)
def test_emerge_signs_with_an_ecdsa_key(pg, tmp_path, curve, form, backend, hash):
    key, pem, der = make_ec_key(tmp_path, curve, form)
    pg.write_ima_toml(key=str(key), cert=str(pem), hash=hash, backend=backend)
    pn = f"ec{curve[-4:-1]}{form}{backend[0]}{hash[3:]}"
    atom = pg.add_ebuild(pn)
    before = snapshot(pg)
    pg.emerge(atom).check()

    objs = pg.signable(CATEGORY, f"{pn}-1")
    assert objs
    keyid = cert_keyid(pem)
    bad = []
    for path, live in objs.items():
        ok, out = evmctl_verify(live, der)
        if not ok:
            bad.append(f"{live}: evmctl ima_verify failed: {out}")
            continue
        value = ima_xattr(live)
        # signature v2, the configured hash, the certificate's key id, a DER signature.
        if value[:3] != bytes([3, 2, IMA_HASH_ALGO[hash]]) or value[3:7].hex() != keyid \
                or value[9] != 0x30:
            bad.append(f"{live}: header {value[:10].hex()}, want 0302{IMA_HASH_ALGO[hash]:02x}{keyid}..30")
    assert not bad, "\n".join(bad)
    gained = sorted(p for p, v in snapshot(pg).items()
                    if before.get(p) != v and p not in {str(x) for x in objs.values()})
    assert not gained, f"security.ima appeared outside {pn}'s files: {gained}"

    # The tool's own verify agrees, with the certificate from ima.toml.
    verify = subprocess.run(
        [str(pg.hook), "--config", str(pg.ima_toml), "verify", "--json", "--cert", str(pem),
         "--files", *map(str, objs.values())],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    statuses = {f["path"]: f["status"] for f in json.loads(verify.stdout)["files"]}
    assert statuses == {str(p): "ok" for p in objs.values()}, statuses
