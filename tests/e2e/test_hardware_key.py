"""Issue 12: a key held by a PKCS#11 token signs what Portage merges.

The admin keeps the signing key on a token (here a SoftHSM2 token, made with
softhsm2-util and pkcs11-tool as the README shows), points `key` in ima.toml
at its `pkcs11:` URI and gives the PKCS#11 module and a PIN file under
`[hardware]`. A real emerge runs the hook, which signs every installed file
through libp11's pkcs11 engine without the key ever leaving the token; evmctl
accepts each signature with the certificate made for the token's key, the
summary reports the device's signing rate, and the PIN shows up nowhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from portage_playground import CATEGORY
from portage_playground.ima import evmctl_verify

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "161803"


def require_tools() -> None:
    missing = [t for t in ("softhsm2-util", "pkcs11-tool", "openssl") if not shutil.which(t)]
    if not Path(MODULE).exists():
        missing.append(MODULE)
    if not Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so").exists():
        missing.append("libengine-pkcs11-openssl")
    if missing:
        message = f"needs {', '.join(missing)} (scripts/install-deps tests)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def make_token(dir: Path) -> tuple[dict[str, str], Path]:
    """A token "ima" with a P-256 key labelled "ec"; returns the environment
    that finds the token and the key's self-signed certificate (DER)."""
    tokens = dir / "tokens"
    tokens.mkdir()
    conf = dir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    run = lambda *a, env=env: subprocess.run(a, check=True, capture_output=True, env=env)  # noqa: E731
    run("softhsm2-util", "--init-token", "--free", "--label", "ima", "--pin", PIN,
        "--so-pin", "27182818")  # fmt: skip
    run("pkcs11-tool", "--module", MODULE, "--token-label", "ima", "--login", "--pin", PIN,
        "--keypairgen", "--key-type", "EC:prime256v1", "--id", "02", "--label", "ec")  # fmt: skip
    # The certificate, signed on the token through the engine (the test's
    # own OpenSSL config holds the PIN; portage-ima reads it from a file).
    cnf = dir / "engine.cnf"
    cnf.write_text(
        "openssl_conf = oc\n[oc]\nengines = es\n[es]\npkcs11 = p11\n[p11]\n"
        f"engine_id = pkcs11\nMODULE_PATH = {MODULE}\nPIN = {PIN}\n"
        "[req]\ndistinguished_name = dn\n[dn]\n"
    )
    cert = dir / "token.der"
    run("openssl", "req", "-new", "-x509", "-days", "7", "-subj", "/CN=portage-ima e2e token",
        "-engine", "pkcs11", "-keyform", "engine",
        "-key", "pkcs11:token=ima;object=ec;type=private",
        "-addext", "keyUsage=digitalSignature", "-addext", "subjectKeyIdentifier=hash",
        "-outform", "DER", "-out", str(cert), env={**env, "OPENSSL_CONF": str(cnf)})  # fmt: skip
    return {"SOFTHSM2_CONF": str(conf)}, cert


def test_emerge_signs_through_a_pkcs11_token(pg, tmp_path):
    require_tools()
    env, cert = make_token(tmp_path)
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o400)
    pg.ima_toml.write_text(
        'key = "pkcs11:token=ima;object=ec;type=private"\n'
        f'cert = "{cert}"\n'
        'hash = "sha256"\n'
        # Every file Portage merged, config files too (as the playground's
        # own ima.toml does), so that each one can be checked below.
        'config_files = "sign"\n'
        "[hardware]\n"
        f'module = "{MODULE}"\n'
        f'pin_file = "{pin_file}"\n'
    )
    pn = "token"
    atom = pg.add_ebuild(pn)
    result = pg.emerge(atom, env=env).check()

    objs = pg.signable(CATEGORY, f"{pn}-1")
    assert objs
    bad = [f"{live}: {out}" for live in objs.values() for ok, out in [evmctl_verify(live, cert)] if not ok]
    assert not bad, "\n".join(bad)
    assert "signing device:" in result.output and "files/s" in result.output, result.output
    assert PIN not in result.output, "the PIN was shown in the emerge output"
