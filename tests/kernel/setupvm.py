"""An unsigned Gentoo-like root filesystem booted by real OpenRC, for `portage-ima setup`.

test_setup_vm.py starts where a Gentoo machine is before portage-ima: the
image built here is portagevm.py's system (Debian's programs and Python,
Portage, the test repository) without anything portage-ima's setup makes:
no file carries security.ima, no key exists, there is no ima.toml, no
bashrc line and no IMA policy. On top of portagevm's pieces it has:

- OpenRC from Debian's `openrc`, `librc1` and `libeinfo1` packages (fetched
  with `apt-get download`, unpacked with `dpkg-deb -x`, not installed on the
  host), with its empty runlevels; the VM's init (setupvm-init.sh) mounts
  the pseudo filesystems and runs `openrc sysinit` and `openrc boot`, so a
  service in the `boot` runlevel runs as OpenRC runs it;
- portage-ima as its ebuild installs it: /usr/bin/portage-ima, the bashrc
  snippet, and the shipped boot integration (boot/load as
  /usr/libexec/portage-ima/load, boot/openrc/portage-ima.initd as
  /etc/init.d/portage-ima, its conf.d file), owned by an installed
  `app-portage/portage-ima-0` in the package database; and a stand-in for
  Gentoo's `sysfs` service (mounts sysfs and securityfs, in sysinit), which
  the shipped service needs and Debian's openrc lacks;
- every other file owned by an installed `virtual/vm-base-0`, whose CONTENTS
  lists it with its real MD5 and mtime as Portage writes them, so that
  `portage-ima sign --all` covers the whole system, as on a real machine;
- Debian's kernel config at /boot/config-RELEASE, where setup reads it when
  the kernel has no /proc/config.gz;
- the openssl command (setup makes the key with it), and an
  `app-portage/portage-ima-1` ebuild for the self-upgrade.

The image is cached under tests/.cache/setupvm, keyed by a hash of its
inputs, and built under `cache_lock` (two pytest workers may want it at
once). A test boots a copy of it (`working_copy`), so that what one boot
writes the next boot sees.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import kernelvm
import portagevm
from kernelvm import Unavailable, run
from portage_playground.cachelock import cache_lock

HERE = Path(__file__).resolve().parent
CACHE = kernelvm.REPO / "tests" / ".cache" / "setupvm"
INIT = HERE / "setupvm-init.sh"
BOOT_DIR = kernelvm.REPO / "boot"
#: The shipped boot integration (under boot/) where the ebuild installs it.
SHIPPED = {
    "load": ("/usr/libexec/portage-ima/load", 0o755),
    "openrc/portage-ima.initd": ("/etc/init.d/portage-ima", 0o755),
    "openrc/portage-ima.confd": ("/etc/conf.d/portage-ima", 0o644),
}
#: Gentoo's sysfs service, which the shipped one needs (Debian's openrc has none).
SYSFS_SERVICE = HERE / "setupvm-sysfs.initd"

#: OpenRC and the libraries only it uses; downloaded, never installed on the host.
OPENRC_DEBS = ("openrc", "librc1", "libeinfo1")
#: Debian packages the host has (scripts/install-deps tests) that go in on top
#: of portagevm's: the openssl command setup runs.
EXTRA_PACKAGES = ("openssl", "libssl3")

#: The package that owns portage-ima's files, and its upgrade in the repository.
PORTAGE_IMA_CATEGORY = "app-portage"
BASE_ATOM = ("virtual", "vm-base", "0")

#: What app-portage/portage-ima-0 owns: the binary, the snippet, the boot integration.
PORTAGE_IMA_FILES = ["/usr/bin/portage-ima", "/usr/share/portage-ima/portage-ima.bashrc",
                     *(dest for dest, _ in SHIPPED.values())]

# The upgrade of portage-ima itself: a new binary (a version trailer makes it
# differ), with the snippet and the service as the real ebuild installs them;
# pkg_postinst runs the new binary, as the real pkg_postinst runs it.
PORTAGE_IMA_EBUILD = portagevm.EBUILD_HEAD.format(pn="portage-ima") + """
src_install() {
	ima_install_exe "${EROOT}/usr/bin/portage-ima" /usr/bin
	insinto /usr/share/portage-ima
	doins "${EROOT}/usr/share/portage-ima/portage-ima.bashrc"
	exeinto /usr/libexec/portage-ima
	doexe "${EROOT}/usr/libexec/portage-ima/load"
	newinitd "${EROOT}/etc/init.d/portage-ima" portage-ima
	newconfd "${EROOT}/etc/conf.d/portage-ima" portage-ima
}

pkg_postinst() {
	ima_case "${EROOT}/usr/bin/portage-ima" --version
}
"""

#: What the package database does not own: the database itself, the
#: repository, the admin's Portage configuration, and the state directories.
UNOWNED_PREFIXES = ("/var/db/pkg", "/var/db/repos", "/etc/portage", "/var/cache", "/var/log",
                    "/var/lib/portage", "/var/tmp", "/tmp", "/root", "/proc", "/sys", "/dev", "/run")


def _openrc_root() -> Path:
    """Debian's OpenRC unpacked (cached)."""
    debs = CACHE / "openrc-debs"
    x = CACHE / "openrc-x"
    if (x / "sbin" / "openrc").exists():
        return x
    debs.mkdir(parents=True, exist_ok=True)
    if len(list(debs.glob("*.deb"))) < len(OPENRC_DEBS):
        p = subprocess.run(["apt-get", "download", *OPENRC_DEBS], cwd=debs, capture_output=True, text=True)
        if p.returncode != 0:
            raise Unavailable(f"apt-get download {' '.join(OPENRC_DEBS)}: {p.stderr.strip()}")
    shutil.rmtree(x, ignore_errors=True)
    for deb in debs.glob("*.deb"):
        run(["dpkg-deb", "-x", deb, x])
    return x


def _add_openrc(tree: portagevm.Tree, x: Path) -> None:
    """OpenRC's files (minus documentation), through the tree's merged-/usr
    links: /sbin/openrc lands in /usr/sbin."""
    for src in sorted(x.rglob("*")):
        rel = "/" + str(src.relative_to(x))
        if portagevm.SKIP_RE.search(rel) or rel.startswith("/usr/share/zsh"):
            continue
        if src.is_dir() and not src.is_symlink():
            tree.path(rel + "/.").mkdir(parents=True, exist_ok=True)
        else:
            tree.copy(src, rel)


def _md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _contents(tree: portagevm.Tree, paths: list[str]) -> str:
    """CONTENTS as Portage writes it: `dir PATH`, `obj PATH MD5 MTIME`,
    `sym PATH -> TARGET MTIME`."""
    lines = []
    for rel in paths:
        p = tree.root / rel.lstrip("/")
        if p.is_symlink():
            lines.append(f"sym {rel} -> {os.readlink(p)} {int(p.lstat().st_mtime)}")
        elif p.is_dir():
            lines.append(f"dir {rel}")
        elif p.is_file():
            lines.append(f"obj {rel} {_md5(p)} {int(p.stat().st_mtime)}")
    return "".join(line + "\n" for line in lines)


def _vdb_entry(tree: portagevm.Tree, category: str, pn: str, version: str, paths: list[str],
               counter: int) -> None:
    """An installed package: the files Portage's vardbapi reads for an
    installed package, and the ebuild its unmerge phases would source."""
    pf = f"{pn}-{version}"
    d = f"/var/db/pkg/{category}/{pf}"
    ebuild = portagevm.EBUILD_HEAD.format(pn=pn).replace("\ninherit ima-case\n", "\n")
    for name, text in {"CATEGORY": category, "PF": pf, "SLOT": "0", "EAPI": "8", "COUNTER": str(counter),
                       "repository": "ima_test", "KEYWORDS": "amd64", "DEFINED_PHASES": "",
                       "USE": "", "IUSE": "", "LICENSE": "MIT", "BUILD_TIME": "1764979200",
                       "DESCRIPTION": f"portage-ima setup VM test: {pn}", f"{pf}.ebuild": ebuild}.items():
        tree.write(f"{d}/{name}", text if name.endswith(".ebuild") else text + "\n")
    tree.write(f"{d}/CONTENTS", _contents(tree, paths))


def _all_paths(tree: portagevm.Tree) -> list[str]:
    out = []
    for dirpath, dirs, files in os.walk(tree.root):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            out.append("/" + str(Path(dirpath, name).relative_to(tree.root)))
    return out


def _write_vdb(tree: portagevm.Tree) -> None:
    """virtual/vm-base-0 owns every file but portage-ima's and the unowned ones."""
    ima = set(PORTAGE_IMA_FILES)
    ima_dirs = {"/usr/share/portage-ima", "/usr/libexec/portage-ima"}
    base = [p for p in _all_paths(tree)
            if p not in ima and p not in ima_dirs
            and not any(p == u or p.startswith(u + "/") for u in UNOWNED_PREFIXES)]
    _vdb_entry(tree, *BASE_ATOM, base, counter=1)
    _vdb_entry(tree, PORTAGE_IMA_CATEGORY, "portage-ima", "0", sorted(ima_dirs | ima), counter=2)


def inputs_digest(hook: Path, kernel: kernelvm.Kernel) -> str:
    """A hash of everything the image is made from."""
    h = portagevm.base_inputs_hash(hook, (*portagevm.DEB_PACKAGES, *EXTRA_PACKAGES))
    shipped = [BOOT_DIR / f for f in SHIPPED]
    for f in (Path(__file__), INIT, SYSFS_SERVICE, *shipped):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(kernel.package.encode() + kernel.version.encode())
    h.update(" ".join(sorted(p.name for p in (CACHE / "openrc-debs").glob("*.deb"))).encode())
    return h.hexdigest()[:16]


def build_image(hook: Path, kernel: kernelvm.Kernel, *, log=print) -> Path:
    """The unsigned root filesystem image (cached), for `hook` and `kernel`."""
    for f in SHIPPED:
        if not (BOOT_DIR / f).exists():
            raise RuntimeError(f"{BOOT_DIR / f} does not exist: the shipped boot integration is missing")
    with cache_lock(CACHE / ".lock"):
        x = _openrc_root()
        digest = inputs_digest(hook, kernel)
        image = CACHE / f"root-{digest}.ext4"
        if image.exists():
            return image
        for old in CACHE.glob("root-*.ext4"):
            old.unlink()
        work = CACHE / f"stage-{digest}"
        shutil.rmtree(work, ignore_errors=True)
        tree = portagevm.Tree(work)
        portagevm.add_base_system(tree, hook, (*portagevm.DEB_PACKAGES, *EXTRA_PACKAGES))
        portagevm.add_portage(tree)
        portagevm.write_repo(tree)
        repo = portagevm.REPO_PATH
        tree.write(f"{repo}/profiles/categories",
                   f"{portagevm.CATEGORY}\n{PORTAGE_IMA_CATEGORY}\nvirtual\n")
        tree.write(f"{repo}/{PORTAGE_IMA_CATEGORY}/portage-ima/portage-ima-1.ebuild", PORTAGE_IMA_EBUILD)
        _add_openrc(tree, x)
        for src, (dest, mode) in SHIPPED.items():
            tree.copy(BOOT_DIR / src, dest)
            os.chmod(tree.path(dest), mode)
        tree.copy(SYSFS_SERVICE, "/etc/init.d/sysfs")
        os.chmod(tree.path("/etc/init.d/sysfs"), 0o755)
        tree.path("/etc/runlevels/sysinit/sysfs").symlink_to("/etc/init.d/sysfs")
        # The prebuilt programs in the repository's files/ are sources of
        # the ebuilds, not programs: a repository carries none.
        for f in tree.path(repo).rglob("files/*"):
            os.chmod(f, 0o644)
        tree.copy(INIT, "/sbin/setupvm-init")
        os.chmod(tree.path("/sbin/setupvm-init"), 0o755)
        tree.copy(kernel.root / "boot" / f"config-{kernel.release}", f"/boot/config-{kernel.release}")
        tree.add_libraries()
        run(["ldconfig", "-r", work])
        _write_vdb(tree)
        size = sum(f.stat().st_size for f in work.rglob("*") if f.is_file() and not f.is_symlink())
        tmp = image.with_suffix(".tmp")
        run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-I", "256", "-L", "gentoo-unsigned",
             "-d", work, tmp, f"{size // 2**20 + 640}M"])
        tmp.rename(image)
        shutil.rmtree(work)
        log(f"built {image} from {size // 2**20} MB of files")
        return image


def working_copy(image: Path, dest: Path) -> Path:
    """A sparse copy of the cached image that boots write to and keep."""
    run(["cp", "--sparse=always", image, dest])
    return dest
