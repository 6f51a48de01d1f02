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


def build_package(build: Playground, pn: str, fmt: str, **phases: str) -> Path:
    """Builds `pn` with FEATURES=buildpkg in format `fmt`; returns the package file."""
    atom = build.add_ebuild(pn, **phases)
    env = {"FEATURES": "buildpkg xattr", "BINPKG_FORMAT": fmt}
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


def test_sign_missing_signs_only_what_the_binary_host_did_not(hosts):
    build, client = hosts
    pn = "binmissing"
    build_package(build, pn, "gpkg", **ADDED_IN_PREINST)
    added = f"/usr/share/{pn}/preinst.txt"
    binhost_id, own_id = cert_keyid(build.cert), cert_keyid(client.cert)

    # verify: the file without the build host's signature is reported.
    client_toml(client, build)
    r = client_emerge(client, build, pn).check()
    after = hook_line(r.output, pn, "merged")
    assert (after["failed"], after["signed"]) == (1, 0), r.output
    assert any(added in line and "has no entry for it" in line for line in r.output.splitlines())
    assert ima_xattr(client.live(added)) is None

    # sign-missing: that file gets our signature, the others keep the host's.
    client_toml(client, build, mode="sign-missing")
    r = client_emerge(client, build, pn).check()
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


def tamper_gpkg(path: Path, victim: str, content: bytes) -> None:
    """Rewrites image.tar.zst and its line in the gpkg's Manifest (what a
    binary host's attacker can do; the package has no GPG signature)."""
    with tarfile.open(path) as container:
        members = [(m, container.extractfile(m).read()) for m in container.getmembers()]
    blobs = {m.name.rsplit("/", 1)[1]: data for m, data in members}
    image = _zstd(_retar(_zstd(blobs["image.tar.zst"], True), victim, content), False)
    lines = []
    for line in blobs["Manifest"].decode().splitlines():
        if line.startswith("DATA image.tar.zst "):
            line = (
                f"DATA image.tar.zst {len(image)} BLAKE2B {hashlib.blake2b(image).hexdigest()} "
                f"SHA512 {hashlib.sha512(image).hexdigest()}"
            )
        lines.append(line)
    blobs["image.tar.zst"] = image
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
