"""Binary packages that carry their signatures (issue 14), with real emerge.

A build root with the key and FEATURES=buildpkg builds test packages in both
formats (xpak, gpkg); the hook signs ${D} in the package phase and lists the
signatures in build-info/IMA_SIGNATURES. A client root with only the build
host's certificate (mode = "verify", no key configured at all) installs
them with `emerge --usepkgonly` from the build root's PKGDIR, with its
PORTAGE_TMPDIR on the same file system and on a tmpfs: every file carries the
build host's signature and evmctl accepts it. A package changed on the
binary host after signing (one file in the archive, signatures kept) is
reported on the client, and refused with strict = true.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from portage_playground import CATEGORY, Playground
from portage_playground.ima import cert_keyid, evmctl_verify, ima_xattr

# The default PORTAGE_XATTR_EXCLUDE of Portage 3.0 without security.ima: the
# client setting that lets `emerge -K` restore the xattrs an xpak carries.
XATTR_EXCLUDE_KEEPING_IMA = (
    "btrfs.* security.evm security.selinux system.nfs4_acl user.apache_handler "
    "user.Beagle.* user.dublincore.* user.mime_encoding user.xdg.*"
)
FORMATS = ("xpak", "gpkg")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, hook_bin):
    """(build host, client): two scratch roots; the client has no key."""
    if os.geteuid() != 0:
        pytest.skip("real emerge into a scratch ROOT needs root")
    base = tmp_path_factory.mktemp("binhost")
    build = Playground(base / "build", "root", hook=hook_bin)
    client = Playground(base / "client", "root", hook=hook_bin)
    return build, client


def client_toml(client: Playground, build: Playground, mode: str = "verify", **extra) -> None:
    """The client's ima.toml: the build host's certificate only, no key, no
    cert of its own; with mode="sign-missing" the client's own key too."""
    trusted = client.base / "trusted" / "binhost.der"
    trusted.parent.mkdir(exist_ok=True)
    shutil.copy(build.cert_der, trusted)
    # config_files = "sign" as on the build root (Playground.write_ima_toml):
    # every file, /etc's too, is signed there and must be kept here
    # (hook_binpkg.rs covers the default, "executable", and "hash").
    lines = [
        f'mode = "{mode}"',
        f'trusted_certs = ["{trusted}"]',
        'hash = "sha256"',
        'config_files = "sign"',
    ]
    if mode == "sign-missing":
        lines += [f'key = "{client.key}"', f'cert = "{client.cert}"']
    lines += [f"{k} = {'true' if v else 'false'}" for k, v in extra.items()]
    client.ima_toml.write_text("\n".join(lines) + "\n")


def build_package(build: Playground, pn: str, fmt: str, env: dict | None = None, **phases: str) -> Path:
    """Builds `pn` with FEATURES=buildpkg in format `fmt` (`env` on top);
    returns the package file."""
    atom = build.add_ebuild(pn, **phases)
    env = {"FEATURES": "buildpkg xattr", "BINPKG_FORMAT": fmt, **(env or {})}
    r = build.emerge(atom, env=env).check()
    assert f"{CATEGORY}/{pn}-1: binary package:" in r.output, r.output
    pkgs = list((build.base / "pkgdir" / CATEGORY / pn).glob(f"{pn}-1*"))
    assert len(pkgs) == 1, pkgs
    return pkgs[0]


def client_emerge(client: Playground, build: Playground, pn: str, tmpdir: Path | None = None, **env):
    env = {"PKGDIR": build.base / "pkgdir", **env}
    if tmpdir is not None:
        env["PORTAGE_TMPDIR"] = tmpdir
    return client.emerge(f"={CATEGORY}/{pn}-1", args=("--oneshot", "--usepkgonly"), env=env)


def hook_line(output: str, pn: str, when: str) -> dict[str, int]:
    """The numbers of the client hook's summary for `when` (before the merge / merged)."""
    m = re.search(
        rf"{CATEGORY}/{pn}-1: {when}: (\d+) carried signatures kept, (\d+) applied from "
        r"IMA_SIGNATURES(?: \(([^)]*)\))?(?:, (\d+) signed with our key)?, "
        r"(\d+) without a trusted signature",
        output,
    )
    assert m, output
    return {
        "kept": int(m[1]),
        "applied": int(m[2]),
        "keys": m[3] or "",
        "signed": int(m[4] or 0),
        "failed": int(m[5]),
    }


@pytest.fixture
def tmpfs(tmp_path):
    target = tmp_path / "tmpfs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(target)], check=True)
    yield target
    subprocess.run(["umount", str(target)], check=True)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("where", ("same-fs", "tmpfs"))
def test_client_without_key_keeps_the_build_hosts_signatures(hosts, fmt, where, request):
    build, client = hosts
    pn = f"bin{fmt[0]}{where[0]}"
    package = build_package(build, pn, fmt)
    client_toml(client, build, strict=True)
    tmpdir = request.getfixturevalue("tmpfs") if where == "tmpfs" else None
    if tmpdir is not None:
        assert os.stat(tmpdir).st_dev != os.stat(client.root).st_dev
    r = client_emerge(client, build, pn, tmpdir).check()
    objs = client.signable(CATEGORY, f"{pn}-1")
    n = len(objs)
    assert n == 6, objs  # FULL_INSTALL: 5 files and a keepdir's .keep
    keyid = cert_keyid(build.cert)
    for path, live in objs.items():
        ok, out = evmctl_verify(live, build.cert_der)
        assert ok, f"{path}: {out}\n{r.output}"
        assert ima_xattr(live)[3:7].hex() == keyid
    before = hook_line(r.output, pn, "before the merge")
    after = hook_line(r.output, pn, "merged")
    assert before["failed"] == after["failed"] == 0, r.output
    # xpak carries the xattrs in its tar (gtar --xattrs with FEATURES=xattr),
    # but emerge -K drops security.ima (default PORTAGE_XATTR_EXCLUDE); gpkg
    # stores none. Either way the list in the metadata supplies them.
    assert before["applied"] == n and f"key id {keyid}: {n}" in before["keys"], r.output
    if where == "same-fs":
        assert after["kept"] == n, r.output  # renamed: the xattrs went along
    else:
        assert after["applied"] == n, r.output  # copied without them: applied again
    assert (client.vdb(CATEGORY, f"{pn}-1") / "IMA_SIGNATURES").is_file()
    assert package.exists()


def test_xpak_restores_xattrs_with_xattr_feature(hosts):
    """The exact client settings under which an xpak's own xattrs survive
    `emerge -K`: FEATURES=xattr and security.ima out of PORTAGE_XATTR_EXCLUDE."""
    build, client = hosts
    pn = "binxattr"
    build_package(build, pn, "xpak")
    client_toml(client, build)
    env = {"FEATURES": "xattr", "PORTAGE_XATTR_EXCLUDE": XATTR_EXCLUDE_KEEPING_IMA}
    r = client_emerge(client, build, pn, **env).check()
    before = hook_line(r.output, pn, "before the merge")
    assert (before["kept"], before["applied"], before["failed"]) == (6, 0, 0), r.output


# A file the binary package does not carry: pkg_preinst makes it on the client.
ADDED_IN_PREINST = {
    "pkg_preinst": 'printf "made in preinst\\n" > "${ED}/usr/share/${PN}/preinst.txt" || die',
}


@pytest.fixture(scope="module")
def gpg(tmp_path_factory):
    """A GnuPG home with a signing key without passphrase: the binary host
    signs its gpkg packages with it (FEATURES=binpkg-signing), and the client
    verifies them with the same home (FEATURES=binpkg-request-signature),
    where the key is ultimately trusted."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    uid = "portage-ima binhost <binhost@example.invalid>"
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "rsa2048", "sign", "never"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    listing = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    # Portage runs gpg --verify as nobody:nogroup unless told not to; the
    # home under pytest's root-only tmp dir is root's.
    verify_home = {
        "BINPKG_GPG_VERIFY_GPG_HOME": str(home),
        "GPG_VERIFY_USER_DROP": "",
        "GPG_VERIFY_GROUP_DROP": "",
    }
    yield {
        "sign": {
            "FEATURES": "buildpkg xattr binpkg-signing",
            "BINPKG_GPG_SIGNING_GPG_HOME": str(home),
            "BINPKG_GPG_SIGNING_KEY": fpr,
            # The build host merges what it just packed, and checks it too.
            **verify_home,
            "BINPKG_GPG_SIGNING_BASE_COMMAND": "/usr/bin/gpg --sign --armor --yes --batch "
            "--pinentry-mode loopback [PORTAGE_CONFIG]",
        },
        # Portage checks a signed gpkg whenever it carries a signature; only
        # the feature makes that required, and lets the hook know it.
        "home": verify_home,
        "verify": {"FEATURES": "binpkg-request-signature", **verify_home},
    }
    subprocess.run(["gpgconf", "--kill", "all"], env=env, check=False)


def test_sign_missing_signs_only_what_the_binary_host_did_not(hosts, gpg):
    """A file the package's IMA_SIGNATURES does not name (here: one its
    pkg_preinst makes on the client) is signed with the client's key only
    when Portage verified the package's GPG signature (issue 22, row 4)."""
    build, client = hosts
    pn = "binmissing"
    build_package(build, pn, "gpkg", env=gpg["sign"], **ADDED_IN_PREINST)
    added = f"/usr/share/{pn}/preinst.txt"
    binhost_id, own_id = cert_keyid(build.cert), cert_keyid(client.cert)

    # verify: the file without the build host's signature is reported.
    client_toml(client, build)
    r = client_emerge(client, build, pn, **gpg["home"]).check()
    after = hook_line(r.output, pn, "merged")
    assert (after["failed"], after["signed"]) == (1, 0), r.output
    assert any(added in line and "has no entry for it" in line for line in r.output.splitlines())
    assert ima_xattr(client.live(added)) is None

    # sign-missing, the package's GPG signature not required: left unsigned.
    client_toml(client, build, mode="sign-missing")
    r = client_emerge(client, build, pn, **gpg["home"]).check()
    after = hook_line(r.output, pn, "merged")
    assert (after["failed"], after["signed"]) == (1, 0), r.output
    assert any(added in line and "nothing vouches for the package" in line for line in r.output.splitlines())
    assert ima_xattr(client.live(added)) is None

    # sign-missing, Portage verified it: that file gets our signature, the
    # others keep the host's.
    r = client_emerge(client, build, pn, **gpg["verify"]).check()
    after = hook_line(r.output, pn, "merged")
    assert (after["failed"], after["signed"]) == (0, 1), r.output
    objs = client.signable(CATEGORY, f"{pn}-1")
    for path, live in objs.items():
        cert = client.cert_der if path == added else build.cert_der
        ok, out = evmctl_verify(live, cert)
        assert ok, f"{path}: {out}"
        assert ima_xattr(live)[3:7].hex() == (own_id if path == added else binhost_id), path


# ---- a package changed on the binary host after signing -----------------


def _zstd(data: bytes, decompress: bool) -> bytes:
    args = ["zstd", "-q", "-c"] + (["-d"] if decompress else [])
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def _retar(data: bytes, victim: str, content: bytes) -> bytes:
    """The tar `data` with member `victim` replaced by `content`, keeping
    every PAX header (the SCHILY.xattr.security.ima signatures too)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data)) as src, tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT
    ) as dst:
        found = False
        for m in src.getmembers():
            if m.name.endswith(victim):
                found = True
                m.size = len(content)
                dst.addfile(m, io.BytesIO(content))
            else:
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        assert found, victim
    return out.getvalue()


def tamper_xpak(path: Path, victim: str, content: bytes) -> None:
    from portage import xpak

    meta = path.parent / "meta"
    package = xpak.tbz2(str(path))
    package.decompose(str(meta))  # also scans: xpaksize is the metadata's
    raw = path.read_bytes()
    data = _zstd(raw[: len(raw) - package.xpaksize], decompress=True)
    path.write_bytes(_zstd(_retar(data, victim, content), decompress=False))
    xpak.tbz2(str(path)).recompose(str(meta))
    shutil.rmtree(meta)


def tamper_gpkg(path: Path, victim: str, content: bytes, signatures=None) -> None:
    """Rewrites image.tar.zst (and, with `signatures`, a function of the
    IMA_SIGNATURES text, metadata.tar.zst) and their lines in the gpkg's
    Manifest (what a binary host's attacker can do; the package has no GPG
    signature)."""
    with tarfile.open(path) as container:
        members = [(m, container.extractfile(m).read()) for m in container.getmembers()]
    blobs = {m.name.rsplit("/", 1)[1]: data for m, data in members}
    blobs["image.tar.zst"] = _zstd(_retar(_zstd(blobs["image.tar.zst"], True), victim, content), False)
    if signatures is not None:
        meta = _zstd(blobs["metadata.tar.zst"], True)
        with tarfile.open(fileobj=io.BytesIO(meta)) as src:
            old = next(src.extractfile(m).read() for m in src.getmembers() if m.name.endswith("/IMA_SIGNATURES"))
        new = signatures(old.decode()).encode()
        blobs["metadata.tar.zst"] = _zstd(_retar(meta, "/IMA_SIGNATURES", new), False)
    lines = []
    for line in blobs["Manifest"].decode().splitlines():
        for name in ("image.tar.zst", "metadata.tar.zst"):
            if line.startswith(f"DATA {name} "):
                data = blobs[name]
                line = (
                    f"DATA {name} {len(data)} BLAKE2B {hashlib.blake2b(data).hexdigest()} "
                    f"SHA512 {hashlib.sha512(data).hexdigest()}"
                )
        lines.append(line)
    blobs["Manifest"] = ("\n".join(lines) + "\n").encode()
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as container:
        for m, _ in members:
            data = blobs[m.name.rsplit("/", 1)[1]]
            m.size = len(data)
            container.addfile(m, io.BytesIO(data))


def reindex(build: Playground) -> None:
    """`emaint --fix binhost`: the Packages index gets the changed package's
    size and checksums, as the binary host's owner (or attacker) would do."""
    emaint = build.venv / "bin" / "emaint"
    subprocess.run(
        [str(emaint), "--fix", "binhost"], env=build.env(), check=True, capture_output=True
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_package_changed_after_signing_is_reported_and_refused_in_strict_mode(hosts, fmt):
    build, client = hosts
    pn = f"bintamper{fmt}"
    package = build_package(build, pn, fmt)
    victim = f"usr/share/{pn}/data.txt"
    (tamper_xpak if fmt == "xpak" else tamper_gpkg)(package, victim, b"changed on the binhost\n")
    # emaint re-indexes a package only when its MTIME (whole seconds) or
    # SIZE changed; a rewrite within the build's second, of a container
    # padded to the same size, kept the old SHA1 and Portage refused the
    # package before the hook ran (seen once in a full run).
    st = package.stat()
    os.utime(package, (st.st_atime, st.st_mtime + 10))
    reindex(build)
    # The xattrs travel too (xpak): the client gets the old signature on new content.
    env = {"FEATURES": "xattr", "PORTAGE_XATTR_EXCLUDE": XATTR_EXCLUDE_KEEPING_IMA}

    client_toml(client, build, strict=True)
    r = client_emerge(client, build, pn, **env)
    assert r.returncode != 0, r.output
    assert "strict mode" in r.output, r.output
    assert not client.vdb(CATEGORY, f"{pn}-1").exists(), "a refused package was merged"
    assert not client.live(f"/{victim}").exists()
    reported = [line for line in r.output.splitlines() if victim in line]
    assert any("changed after signing" in line for line in reported), r.output

    client_toml(client, build)
    r = client_emerge(client, build, pn, **env).check()
    assert client.live(f"/{victim}").read_bytes() == b"changed on the binhost\n"
    after = hook_line(r.output, pn, "merged")
    assert after["failed"] == 1 and after["kept"] + after["applied"] == 5, r.output
    assert any(
        victim in line and "changed after signing" in line for line in r.output.splitlines()
    ), r.output
    for path, live in client.signable(CATEGORY, f"{pn}-1").items():
        ok, out = evmctl_verify(live, build.cert_der)
        assert ok == (path != f"/{victim}"), f"{path}: {out}"

    # sign-missing does not vouch for it with the client's own key either.
    client_toml(client, build, mode="sign-missing")
    r = client_emerge(client, build, pn, **env).check()
    after = hook_line(r.output, pn, "merged")
    assert (after["failed"], after["signed"]) == (1, 0), r.output
    ok, out = evmctl_verify(client.live(f"/{victim}"), client.cert_der)
    assert not ok, out


# ---- a package whose saved environment switches the hook off (issue 22, row 3)


def _saved_environment(package: Path) -> str:
    """The build environment a gpkg carries (metadata/environment.bz2)."""
    import bz2

    with tarfile.open(package) as container:
        meta = next(m for m in container.getmembers() if m.name.endswith("/metadata.tar.zst"))
        inner = _zstd(container.extractfile(meta).read(), True)
    with tarfile.open(fileobj=io.BytesIO(inner)) as metadata:
        env = next(m for m in metadata.getmembers() if m.name.endswith("/environment.bz2"))
        return bz2.decompress(metadata.extractfile(env).read()).decode()


@pytest.mark.parametrize("variable", ("PORTAGE_IMA_SKIP=1", "PORTAGE_IMA=/bin/true"))
def test_saved_environment_cannot_switch_the_hook_off_on_a_client(hosts, variable):
    """Portage restores a binary package's saved environment for its merge.
    The build host's bashrc exports the variable after the snippet ran (so
    the package is signed there, and the variable is saved with it); the
    package is then changed on the binary host. A strict verify client
    refuses it all the same; only the client's own `skip` lets it through."""
    build, client = hosts
    name = variable.split("=")[0]
    pn = "binenv" + ("skip" if name == "PORTAGE_IMA_SKIP" else "bin")
    build.write_bashrc(before=f"unset {name}", extra=f"export {variable}")
    if name == "PORTAGE_IMA":
        build.write_bashrc(before=f"export PORTAGE_IMA={build.hook}", extra=f"export {variable}")
    try:
        package = build_package(build, pn, "gpkg")
    finally:
        build.write_bashrc()
    assert f"declare -x {variable}" in _saved_environment(package).replace('"', "")
    victim = f"usr/share/{pn}/data.txt"
    tamper_gpkg(package, victim, b"changed on the binhost\n")
    st = package.stat()
    os.utime(package, (st.st_atime, st.st_mtime + 10))
    reindex(build)

    client_toml(client, build, strict=True)
    r = client_emerge(client, build, pn)
    assert r.returncode != 0, r.output
    assert "strict mode" in r.output, r.output
    assert not client.vdb(CATEGORY, f"{pn}-1").exists(), "a refused package was merged"
    assert any(victim in line and "changed after signing" in line for line in r.output.splitlines()), r.output

    # Opting out is the client's own choice, in its ima.toml.
    with client.ima_toml.open("a") as toml:
        toml.write(f'skip = ["{CATEGORY}/{pn}"]\n')
    r = client_emerge(client, build, pn).check()
    assert f"{CATEGORY}/{pn}-1: skip = [" in r.output, r.output
    assert client.live(f"/{victim}").read_bytes() == b"changed on the binhost\n"


# ---- sign-missing and a doctored IMA_SIGNATURES (issue 22, row 4) --------


def _doctored_package(build: Playground, pn: str, signatures) -> str:
    """A gpkg (no GPG signature) whose data.txt was changed on the binary
    host and whose IMA_SIGNATURES went through `signatures`; returns the
    changed file's CONTENTS path."""
    package = build_package(build, pn, "gpkg")
    victim = f"usr/share/{pn}/data.txt"
    tamper_gpkg(package, victim, b"changed on the binhost\n", signatures=signatures)
    st = package.stat()
    os.utime(package, (st.st_atime, st.st_mtime + 10))
    reindex(build)
    return f"/{victim}"


def test_sign_missing_does_not_sign_a_file_whose_line_was_dropped(hosts):
    build, client = hosts
    pn = "bindropped"
    victim = _doctored_package(
        build, pn, lambda text: "".join(line for line in text.splitlines(True) if "/data.txt" not in line)
    )
    client_toml(client, build, mode="sign-missing")
    r = client_emerge(client, build, pn).check()
    after = hook_line(r.output, pn, "merged")
    assert (after["failed"], after["signed"]) == (1, 0), r.output
    assert any(victim in line and "nothing vouches for the package" in line for line in r.output.splitlines()), r.output
    live = client.live(victim)
    assert live.read_bytes() == b"changed on the binhost\n"
    assert ima_xattr(live) is None, "the client's key vouched for content the host never signed"

    client_toml(client, build, mode="sign-missing", strict=True)
    r = client_emerge(client, build, pn)
    assert r.returncode != 0 and "strict mode" in r.output, r.output


def test_a_malformed_signature_list_fails_closed(hosts):
    build, client = hosts
    pn = "binmalformed"
    victim = _doctored_package(build, pn, lambda text: text + "zz /usr/share/nothing\n")
    client_toml(client, build, mode="sign-missing")
    r = client_emerge(client, build, pn).check()
    assert any("IMA_SIGNATURES line" in line and "nothing is signed with our key" in line for line in r.output.splitlines()), r.output
    after = hook_line(r.output, pn, "merged")
    assert after["signed"] == 0 and after["failed"] >= 1, r.output
    own = cert_keyid(client.cert)
    for path, live in client.signable(CATEGORY, f"{pn}-1").items():
        value = ima_xattr(live)
        assert value is None or value[3:7].hex() != own, f"{path} signed with the client's key"
    assert ima_xattr(client.live(victim)) is None

    client_toml(client, build, mode="sign-missing", strict=True)
    r = client_emerge(client, build, pn)
    assert r.returncode != 0 and "strict mode" in r.output, r.output
