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

import bz2
import io
import os
import shutil
import tarfile
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


def make_token(dir: Path, pin: str = PIN) -> tuple[dict[str, str], Path]:
    """A token "ima" (user PIN `pin`) with a P-256 key labelled "ec"; returns
    the environment that finds the token and the key's self-signed
    certificate (DER)."""
    PIN = pin  # noqa: N806
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


# A PIN no checksum or timestamp in a package can contain by chance.
LEAKY_PIN = "Pz7q-leak-Q9xw"


def unpacked(path: Path) -> bytes:
    """The bytes of `path`, bzip2 and zstd undone, tar members inside
    (recursively) appended: where a saved environment could hide."""
    return unpacked_bytes(path.name, path.read_bytes())


def unpacked_bytes(name: str, data: bytes) -> bytes:
    if name.endswith(".zst"):
        data = subprocess.run(["zstd", "-q", "-d", "-c"], input=data, capture_output=True,
                              check=True).stdout  # fmt: skip
        name = name[: -len(".zst")]
    elif name.endswith(".bz2"):
        data = bz2.decompress(data)
        name = name[: -len(".bz2")]
    if not name.endswith((".tar", ".gpkg")):
        return data
    out = [data]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                out.append(unpacked_bytes(m.name, tar.extractfile(m).read()))
    return b"\n".join(out)


def emerge_with_pin_in_env(pg, tmp_path, variable: str, toml_pin: str, pn: str):
    """A real emerge with FEATURES=buildpkg and the PIN exported as
    `variable` where emerge runs (what the README once suggested)."""
    require_tools()
    env, cert = make_token(tmp_path, LEAKY_PIN)
    pin_file = tmp_path / "pin"
    pin_file.write_text(LEAKY_PIN + "\n")
    pin_file.chmod(0o400)
    toml_pin = toml_pin.format(pin_file=pin_file)
    pg.ima_toml.write_text(
        'key = "pkcs11:token=ima;object=ec;type=private"\n'
        f'cert = "{cert}"\n'
        'hash = "sha256"\n'
        'config_files = "sign"\n'
        "[hardware]\n"
        f'module = "{MODULE}"\n'
        f"{toml_pin}\n"
    )
    atom = pg.add_ebuild(pn)
    env = {**env, variable: LEAKY_PIN, "FEATURES": "buildpkg", "BINPKG_FORMAT": "gpkg"}
    result = pg.emerge(atom, env=env).check()
    return result, cert


def assert_pin_saved_nowhere(pg, pn: str, variable: str) -> None:
    vdb = pg.vdb(CATEGORY, f"{pn}-1")
    assert (vdb / "environment.bz2").is_file()
    packages = list((pg.base / "pkgdir" / CATEGORY / pn).glob(f"{pn}-1*"))
    assert len(packages) == 1, packages
    for path in [*vdb.iterdir(), packages[0]]:
        data = unpacked(path)
        assert LEAKY_PIN.encode() not in data, f"the PIN is saved in {path}"
        assert variable.encode() not in data, f"{variable} is saved in {path}"


def test_pin_exported_to_emerge_is_not_saved_in_vdb_or_binary_package(pg, tmp_path):
    """Issue 22 row 1: the PIN exported as IMA_TOKEN_PIN (the default name)
    where emerge runs reaches neither the vdb's environment.bz2 nor the
    binary package; signing uses pin_file."""
    pn = "pinleak"
    result, cert = emerge_with_pin_in_env(
        pg, tmp_path, "IMA_TOKEN_PIN", 'pin_file = "{pin_file}"', pn
    )
    assert_pin_saved_nowhere(pg, pn, "IMA_TOKEN_PIN")
    objs = pg.signable(CATEGORY, f"{pn}-1")
    assert objs and all(evmctl_verify(live, cert)[0] for live in objs.values())
    assert LEAKY_PIN not in result.output


def test_pin_env_is_refused_inside_emerge_and_not_saved(pg, tmp_path):
    """Issue 22 row 1: with pin_env naming another variable, the hook refuses
    it inside an ebuild phase (saying to use pin_file), and the snippet keeps
    that variable out of what Portage saves."""
    pn = "pinenv"
    result, _ = emerge_with_pin_in_env(pg, tmp_path, "SITE_HSM_PIN", 'pin_env = "SITE_HSM_PIN"', pn)
    assert "pin_file" in result.output and "pin_env" in result.output, result.output
    assert "are NOT signed" in result.output, result.output
    assert_pin_saved_nowhere(pg, pn, "SITE_HSM_PIN")
    assert LEAKY_PIN not in result.output
