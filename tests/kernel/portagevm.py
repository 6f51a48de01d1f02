"""A root filesystem on which real Portage runs inside a VM that enforces IMA appraisal.

test_enforce_emerge.py boots Debian's cloud kernel with `ima_appraise=enforce`
on the ext4 image built here. The image is a tiny Gentoo-like system:

- Debian's python3.11 with its standard library, Portage (the PyPI copy the
  host tests install) in a venv at /opt/portage, and the programs an emerge
  execs (bash, coreutils, findutils, sed, grep, gawk/mawk, tar, compressors,
  diff, patch, attr, binutils, zstd, keyutils), each with the libraries `ldd`
  lists; tcc with libc's headers and start files, so that a package can be
  compiled in the VM; a static busybox for mount and poweroff;
- /etc/passwd and /etc/group with the `portage` user (FEATURES=userpriv, as on
  Gentoo), the C.utf8 locale, an ld.so.cache made by `ldconfig -r`;
- a local ebuild repository (/var/db/repos/ima_test) with the test packages,
  make.conf, /etc/portage/bashrc sourcing the hook snippet where the ebuild
  installs it, ima.toml with the test key, and the portage-ima binary under
  test as /usr/bin/portage-ima;
- a gpkg of test-ima/binhello in /var/cache/binpkgs, built and signed on the
  host by real emerge with FEATURES=buildpkg (the binary host of issue 14);
- /sbin/portage-vm-init (portagevm-init.sh), which runs the cases.

Every regular file in it is signed on the host with `portage-ima sign
--files` (the test key), then `mke2fs -d` packs the tree (it keeps
security.ima). The image is cached under tests/.cache/portagevm, keyed by a
hash of everything that goes into it, and booted with `snapshot=on`, so
every boot starts from the same clean, signed system.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import kernelvm
from kernelvm import Unavailable, run
from portage_playground.cachelock import cache_lock
from portage_playground.playground import CATEGORY as PLAYGROUND_CATEGORY, MAKE_DEFAULTS, Playground

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "portagevm"
INIT = HERE / "portagevm-init.sh"
CACHE = kernelvm.REPO / "tests" / ".cache" / "portagevm"
SNIPPET = kernelvm.REPO / "bashrc.d" / "portage-ima.bashrc"

#: Debian packages whose files (minus documentation) go into the image
#: (scripts/install-deps tests installs those that are not essential).
DEB_PACKAGES = (
    "bash", "coreutils", "findutils", "sed", "grep", "mawk", "tar", "gzip",
    "bzip2", "xz-utils", "zstd", "diffutils", "patch", "attr", "keyutils",
    "binutils", "binutils-x86-64-linux-gnu", "libc-bin", "libc6", "debianutils",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    # The compiler for the source-build case, and what it links against.
    "tcc", "libc6-dev", "linux-libc-dev", "libcrypt-dev",
)
#: Parts of those packages the VM never uses (documentation, test suites,
#: translations, static libraries other than libc_nonshared.a, gconv).
SKIP_RE = re.compile(
    r"^/usr/share/(doc|man|info|locale|lintian|bash-completion|bug|gdb|i18n)/"
    r"|^/usr/lib/python3\.11/(test|idlelib|tkinter|turtledemo|ensurepip|lib2to3|pydoc_data)/"
    r"|^/usr/lib/x86_64-linux-gnu/gconv/"
    r"|^/usr/lib/x86_64-linux-gnu/(?!libc_nonshared\.a$)[^/]*\.a$"
)

PORTAGE_VENV = "/opt/portage"
REPO_PATH = "/var/db/repos/ima_test"
CATEGORY = "test-ima"
KEY_DIR = "/etc/keys"

# FEATURES=userpriv as on Gentoo: builds run as the portage user. No sandbox
# (Debian has none), no fsync per merged file, tests on (srcbuild).
MAKE_CONF = """\
ACCEPT_LICENSE="*"
FEATURES="userpriv test -sandbox -usersandbox -network-sandbox -ipc-sandbox -pid-sandbox -mount-sandbox -merge-sync -news"
CLEAN_DELAY=0
EMERGE_WARNING_DELAY=0
PORTAGE_TMPDIR="/var/tmp"
DISTDIR="/var/cache/distfiles"
PKGDIR="/var/cache/binpkgs"
PORTAGE_LOGDIR="/var/log/portage"
PORTAGE_ELOG_CLASSES="info warn error log qa"
PORTAGE_ELOG_SYSTEM="save"
"""

def xattr_make_conf() -> str:
    """make.conf lines that make a copying merge keep security.ima: FEATURES
    xattr, and Portage's own PORTAGE_XATTR_EXCLUDE without security.ima."""
    globals_ = (kernelvm.REPO / "tests/.cache/venv/share/portage/config/make.globals").read_text()
    m = re.search(r'^PORTAGE_XATTR_EXCLUDE="([^"]*)"', globals_, re.M)
    if not m:
        raise RuntimeError("make.globals has no PORTAGE_XATTR_EXCLUDE")
    kept = [p for p in m.group(1).split() if p != "security.ima"]
    return f'FEATURES="${{FEATURES}} xattr"\nPORTAGE_XATTR_EXCLUDE="{" ".join(kept)}"\n'


# The eclass every test ebuild inherits: installing a copy of a file marked
# with the version (so each version's file differs and is really replaced),
# and logging what a phase ran for the host to read.
ECLASS = """\
# Written by tests/kernel/portagevm.py.
# @ECLASS: ima-case.eclass
# @BLURB: helpers of the portage-ima enforce-mode VM test

# ima_install_exe SRC DIR: install a copy of SRC into DIR, with a trailer
# naming ${PF}, so that every version installs a different file.
ima_install_exe() {
	local name=${1##*/}
	cp "$1" "${T}/${name}" || die "cp $1"
	printf '\\nportage-ima test %s\\n' "${PF}" >>"${T}/${name}" || die
	exeinto "$2"
	doexe "${T}/${name}"
}

# ima_case CMD...: run CMD and append "CATEGORY/PF PHASE rc=N out=..." to
# /var/log/ima-cases, which the VM's init prints for the host.
ima_case() {
	local out rc
	out=$("$@" 2>&1)
	rc=$?
	printf '%s %s rc=%s out=%s\\n' "${CATEGORY}/${PF}" "${EBUILD_PHASE}" "${rc}" "${out//$'\\n'/ }" \\
		>>"${EROOT}/var/log/ima-cases"
}
"""

EBUILD_HEAD = """\
# Written by tests/kernel/portagevm.py.
EAPI=8

inherit ima-case

DESCRIPTION="portage-ima enforce-mode test package {pn}"
HOMEPAGE="https://example.invalid/portage-ima"
S="${{WORKDIR}}"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
# The prebuilt files carry a version trailer that strip would drop.
RESTRICT="strip"
"""

EBUILD_BODIES = {
    # An executable and the shared library it loads (RUNPATH /usr/lib/hellolib).
    "hellolib": """\
src_install() {
	ima_install_exe "${FILESDIR}/libhello.so" /usr/lib/hellolib
	ima_install_exe "${FILESDIR}/hello" /usr/bin
}
""",
    # vim's case: the new version's postinst and the old version's postrm
    # (which runs after the new files are merged) run the new binary.
    "vimlike": """\
src_install() {
	ima_install_exe "${FILESDIR}/vimlike" /usr/bin
}

pkg_postinst() {
	ima_case "${EROOT}/usr/bin/vimlike" postinst "${PVR}"
}

pkg_postrm() {
	ima_case "${EROOT}/usr/bin/vimlike" postrm "${PVR}"
}
""",
    # A source build that runs what it just compiled, in src_compile and src_test.
    "srcbuild": """\
src_compile() {
	tcc -o gen "${FILESDIR}/gen.c" || die "tcc"
	./gen >generated.txt || die "running ./gen"
}

src_test() {
	./gen --test || die "./gen --test"
}

src_install() {
	dobin gen
	insinto /usr/share/srcbuild
	doins generated.txt
}
""",
    # portage-ima upgrading itself; the hook at the start of postinst and the
    # package's pkg_postinst both run the copy just merged.
    # The audit case (test_enforce_audit.py): three scripts the VM's init
    # then strips of their signature, changes, and signs with a key the
    # kernel does not have.
    "auditcase": """\
src_install() {
	local name
	for name in audit-unsigned audit-modified audit-foreign; do
		printf '#!/bin/sh\\necho "%s ran"\\n' "${name}" >"${T}/${name}" || die
		dobin "${T}/${name}"
	done
}
""",
    # A new build of the shell Portage runs every phase with (/bin/bash):
    # the VM's bash with a trailer naming ${PF}. Its pkg_postinst logs the
    # tail of the program running that phase, which shows the new bash.
    "bash": """\
src_install() {
	ima_install_exe "${EROOT}/usr/bin/bash" /usr/bin
}

pkg_postinst() {
	ima_case tail -n 1 "/proc/$$/exe"
}
""",
    # Issue 25: version 1 is copied back over version 2 (a rollback).
    "rollback": """\
src_install() {
	ima_install_exe "${FILESDIR}/rollback" /usr/bin
}
""",
    "portage-ima": """\
src_install() {
	ima_install_exe "${EROOT}/usr/bin/portage-ima" /usr/bin
}

pkg_postinst() {
	ima_case "${EROOT}/usr/bin/portage-ima" --version
}
""",
}

#: The versions in the repository (the init script emerges them by number).
VERSIONS = {"hellolib": (1, 2), "vimlike": (1, 2, 3, 4), "srcbuild": (1,), "portage-ima": (1, 2),
            "auditcase": (1,), "bash": (1,), "rollback": (1, 2)}

#: Prebuilt with the host's gcc into each package's files/ (FILESDIR).
PREBUILT = {
    "hellolib": {
        "libhello.so": ["-shared", "-fPIC", "libhello.c"],
        "hello": ["hello.c", "-L{out}", "-lhello", "-Wl,-rpath,/usr/lib/hellolib"],
    },
    "vimlike": {"vimlike": ["vimlike.c"]},
    "rollback": {"rollback": ["rollback.c"]},
}


def _package_files(package: str) -> list[str]:
    out = run(["dpkg", "-L", package], check=False)
    if out.returncode != 0:
        raise Unavailable(f"Debian package {package} is not installed "
                          f"(scripts/install-deps tests installs it)")
    return [p for p in out.stdout.splitlines() if p.startswith("/") and not SKIP_RE.search(p)]


def base_inputs_hash(hook: Path, packages=DEB_PACKAGES) -> "hashlib._Hash":
    """A hash of what add_base_system, add_portage and write_repo make a
    tree from: the Debian packages' versions, the Portage venv, our sources
    and the binary."""
    h = hashlib.sha256()
    versions = run(["dpkg-query", "-W", *packages], check=False).stdout
    h.update(versions.encode())
    venv = kernelvm.REPO / "tests" / ".cache" / "venv"
    h.update((venv / "pyvenv.cfg").read_bytes())
    for name in sorted(os.listdir(venv / "lib" / "python3.11" / "site-packages")):
        h.update(name.encode())
    playground = kernelvm.REPO / "tests" / "portage_playground" / "playground.py"  # MAKE_DEFAULTS
    for f in sorted(SOURCES.iterdir()) + [Path(__file__), SNIPPET, playground]:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(hashlib.file_digest(open(hook, "rb"), "sha256").digest())
    return h


def inputs_digest(hook: Path, key_dir: Path) -> str:
    """A hash of everything the image is made from: the Debian packages'
    versions, the Portage venv, our sources, the binary and the test key."""
    h = base_inputs_hash(hook)
    h.update(INIT.read_bytes())
    other = other_key_dir(key_dir)
    for f in (key_dir / "ima.key.pem", key_dir / "ima.cert.pem",
              other / "ima.key.pem", other / "ima.cert.pem"):
        h.update(hashlib.file_digest(open(f, "rb"), "sha256").digest())
    return h.hexdigest()[:16]


def ensure_key(key_dir: Path, subject: str = "/CN=portage-ima enforce-mode VM test") -> Path:
    """The test's RSA-2048 signing key and certificate (PEM and DER), made
    once and kept with the image cache so that the image's hash is stable."""
    key_dir.mkdir(parents=True, exist_ok=True)
    key, pem, der = key_dir / "ima.key.pem", key_dir / "ima.cert.pem", key_dir / "ima.cert.der"
    if not der.exists():
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", pem, "-days", "3650", "-subj", subject,
             "-addext", "subjectKeyIdentifier=hash", "-addext", "keyUsage=critical,digitalSignature",
             "-addext", "basicConstraints=critical,CA:FALSE"])
        os.chmod(key, 0o600)
        run(["openssl", "x509", "-in", pem, "-outform", "DER", "-out", der])
    return key_dir


def other_key_dir(key_dir: Path) -> Path:
    """A second key, whose certificate is never put on the VM's keyring."""
    return key_dir.parent / "keys-other"


class Tree:
    """The staging directory of the root filesystem (Debian's merged /usr)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True)
        for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64"):
            (root / d).mkdir(parents=True)
        for link in ("bin", "sbin", "lib", "lib64"):
            (root / link).symlink_to(f"usr/{link}")

    def path(self, dest: str) -> Path:
        p = self.root / dest.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def copy(self, src: str | Path, dest: str | None = None) -> None:
        """Copy a file or symlink from the host (times kept: .pyc stay valid)."""
        src = Path(src)
        p = self.path(str(dest or src))
        if p.is_symlink() or p.exists():
            return
        if src.is_symlink():
            p.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, p)

    def write(self, dest: str, text: str, mode: int = 0o644) -> Path:
        p = self.path(dest)
        p.write_text(text)
        os.chmod(p, mode)
        return p

    def elves(self) -> list[Path]:
        found = []
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                p = Path(dirpath, f)
                if p.is_symlink() or not p.is_file():
                    continue
                with open(p, "rb") as fh:
                    if fh.read(4) == b"\x7fELF":
                        found.append(p)
        return found

    def add_libraries(self) -> None:
        """Every library `ldd` lists for an ELF in the tree, until none is missing."""
        seen: set[Path] = set()
        while True:
            new = [e for e in self.elves() if e not in seen]
            if not new:
                return
            for elf in new:
                seen.add(elf)
                for lib in kernelvm.ldd_libraries(elf):
                    if not self.path(str(lib)).exists():
                        self.copy(lib.resolve(), str(lib))


def _prebuild(work: Path, repo: Path) -> None:
    for pn, outputs in PREBUILT.items():
        out = repo / CATEGORY / pn / "files"
        out.mkdir(parents=True, exist_ok=True)
        for name, args in outputs.items():
            argv = [a.format(out=out) for a in args]
            argv = [str(SOURCES / a) if a.endswith(".c") else a for a in argv]
            run(["gcc", "-O1", "-o", out / name, *argv])


def write_repo(tree: Tree) -> None:
    repo = tree.path(REPO_PATH)
    tree.write(f"{REPO_PATH}/profiles/repo_name", "ima_test\n")
    tree.write(f"{REPO_PATH}/profiles/categories", CATEGORY + "\n")
    tree.write(f"{REPO_PATH}/profiles/arch.list", "amd64\n")
    tree.write(f"{REPO_PATH}/profiles/profiles.desc", "amd64 default stable\n")
    tree.write(f"{REPO_PATH}/profiles/default/eapi", "8\n")
    tree.write(f"{REPO_PATH}/profiles/default/make.defaults", MAKE_DEFAULTS)
    tree.write(f"{REPO_PATH}/metadata/layout.conf",
               "masters =\nthin-manifests = true\nsign-manifests = false\n"
               "profile-formats = portage-2\ncache-formats =\n")
    tree.write(f"{REPO_PATH}/licenses/MIT", "MIT License (test stand-in)\n")
    tree.write(f"{REPO_PATH}/eclass/ima-case.eclass", ECLASS)
    for pn, versions in VERSIONS.items():
        for v in versions:
            tree.write(f"{REPO_PATH}/{CATEGORY}/{pn}/{pn}-{v}.ebuild",
                       EBUILD_HEAD.format(pn=pn) + "\n" + EBUILD_BODIES[pn])
    tree.copy(SOURCES / "gen.c", f"{REPO_PATH}/{CATEGORY}/srcbuild/files/gen.c")
    _prebuild(tree.root, repo)


def add_portage(tree: Tree) -> None:
    """Portage from the host test venv as a venv at /opt/portage on Debian's
    python3.11 (Portage is pure Python); its scripts also in /usr/bin."""
    venv = kernelvm.REPO / "tests" / ".cache" / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    dest = f"{PORTAGE_VENV}/lib/python3.11/site-packages"
    for pkg in ("portage", "_emerge"):
        shutil.copytree(site / pkg, tree.path(f"{dest}/{pkg}"), symlinks=True)
    shutil.copytree(venv / "lib" / "portage", tree.path(f"{PORTAGE_VENV}/lib/portage"), symlinks=True)
    tree.write(f"{PORTAGE_VENV}/pyvenv.cfg",
               "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n")
    for name in ("python3.11", "python3", "python"):
        tree.path(f"{PORTAGE_VENV}/bin/{name}").symlink_to("/usr/bin/python3.11")
    for script in ("emerge", "ebuild", "portageq", "egencache", "emaint", "env-update"):
        text = (venv / "bin" / script).read_text().split("\n", 1)[1]
        tree.write(f"{PORTAGE_VENV}/bin/{script}", f"#!{PORTAGE_VENV}/bin/python3.11\n{text}", 0o755)
        tree.path(f"/usr/bin/{script}").symlink_to(f"{PORTAGE_VENV}/bin/{script}")
    # With EPREFIX="" (PORTAGE_OVERRIDE_EPREFIX=/) a module install reads its
    # defaults from /share/portage/config.
    cfg = venv / "share" / "portage" / "config"
    tree.copy(cfg / "make.globals", "/share/portage/config/make.globals")
    tree.copy(cfg / "sets" / "portage.conf", "/share/portage/config/sets/portage.conf")


def add_base_system(tree: Tree, hook: Path, packages=DEB_PACKAGES) -> None:
    """The Debian programs, Python, the portage user, make.conf and the
    repository configuration: a Gentoo-like system before portage-ima is
    set up (no key, no ima.toml, no bashrc line)."""
    for pkg in packages:
        for f in _package_files(pkg):
            if os.path.isfile(f) or os.path.islink(f):
                tree.copy(f)
    # __pycache__ is made by Debian's postinst, not listed by dpkg.
    for dirpath, dirs, _ in os.walk("/usr/lib/python3.11"):
        dirs[:] = [d for d in dirs if not SKIP_RE.search(f"{dirpath}/{d}/")]
        if os.path.basename(dirpath) == "__pycache__":
            for f in os.listdir(dirpath):
                if ".cpython-311." in f and ".opt-" not in f:
                    tree.copy(f"{dirpath}/{f}")
    for f in Path("/usr/lib/locale/C.utf8").rglob("*"):
        tree.copy(f)
    tree.copy(kernelvm.BUSYBOX, "/usr/bin/busybox")
    tree.path("/bin/sh").symlink_to("bash")
    # Debian's alternatives links, which no package lists.
    tree.path("/usr/bin/awk").symlink_to("mawk")
    tree.path("/usr/local/bin/scanelf").symlink_to("/usr/bin/true")
    tree.copy(hook, "/usr/bin/portage-ima")
    tree.copy(SNIPPET, "/usr/share/portage-ima/portage-ima.bashrc")

    tree.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"
               "portage:x:250:250:portage:/var/lib/portage/home:/bin/false\n")
    tree.write("/etc/group", "root:x:0:\nportage:x:250:portage\n")
    tree.write("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n")
    tree.write("/etc/hosts", "127.0.0.1 localhost\n")
    for d, mode in (("/var/tmp", 0o1777), ("/tmp", 0o1777), ("/root", 0o700),
                    ("/var/db/pkg", 0o755), ("/var/cache/edb", 0o755),
                    ("/var/cache/distfiles", 0o755), ("/var/log/portage", 0o755),
                    ("/var/lib/portage/home", 0o755), ("/proc", 0o555), ("/sys", 0o555),
                    ("/dev", 0o755), ("/run", 0o755)):
        tree.path(d + "/x").parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tree.path(d + "/x").parent, mode)
    tree.write("/var/lib/portage/world", "")

    etc = "/etc/portage"
    tree.write(f"{etc}/make.conf", MAKE_CONF)
    tree.write(f"{etc}/repos.conf/ima_test.conf",
               f"[DEFAULT]\nmain-repo = ima_test\n\n[ima_test]\nlocation = {REPO_PATH}\nauto-sync = no\n")
    tree.path(f"{etc}/make.profile").symlink_to(f"{REPO_PATH}/profiles/default")


def _add_signing(tree: Tree, key_dir: Path) -> None:
    """What the README's manual setup adds: the bashrc line, the test keys
    and ima.toml, and the make.conf lines for a copying merge."""
    etc = "/etc/portage"
    # The README's line.
    tree.write(f"{etc}/bashrc", "[[ -r /usr/share/portage-ima/portage-ima.bashrc ]] && "
                                "source /usr/share/portage-ima/portage-ima.bashrc\n")
    tree.copy(key_dir / "ima.key.pem", f"{KEY_DIR}/ima.key.pem")
    os.chmod(tree.path(f"{KEY_DIR}/ima.key.pem"), 0o600)
    tree.copy(key_dir / "ima.cert.pem", f"{KEY_DIR}/ima.cert.pem")
    tree.copy(key_dir / "ima.cert.der", f"{KEY_DIR}/ima.cert.der")
    # Not on the keyring: what a file signed by someone else's key looks like.
    other = other_key_dir(key_dir)
    tree.copy(other / "ima.key.pem", f"{KEY_DIR}/other.key.pem")
    os.chmod(tree.path(f"{KEY_DIR}/other.key.pem"), 0o600)
    tree.copy(other / "ima.cert.pem", f"{KEY_DIR}/other.cert.pem")
    tree.write(f"{etc}/make.conf.xattr", xattr_make_conf())
    tree.write(f"{etc}/ima.toml", f'key = "{KEY_DIR}/ima.key.pem"\ncert = "{KEY_DIR}/ima.cert.pem"\n'
                                  'hash = "sha256"\n')


#: The binary package built on the host (portagevm.case=binpkg).
BINPKG_PN = "binhello"
#: Where the host's security.ima of its executable is put in the image (hex).
BINPKG_SIGNATURE = "/var/cache/binhello.security.ima"


def _add_binpkg(tree: Tree, hook: Path, key_dir: Path, work: Path) -> None:
    """A gpkg of test-ima/binhello (one ELF in /usr/bin), built on the host
    by real emerge with FEATURES=buildpkg, the hook and the image's key (the
    binary host of issue 14), into the image's PKGDIR; the security.ima the
    host wrote on the executable goes beside it for the VM to compare."""
    assert PLAYGROUND_CATEGORY == CATEGORY
    base = work.parent / f"{work.name}-binhost"
    shutil.rmtree(base, ignore_errors=True)
    keys = base / "keys"
    keys.mkdir(parents=True)
    for name in ("ima.key.pem", "ima.cert.pem", "ima.cert.der"):
        shutil.copy2(key_dir / name, keys / name)
    host = Playground(base, "root", hook=hook)  # keeps the keys it finds
    elf = base / BINPKG_PN
    run(["gcc", "-O1", "-o", elf, SOURCES / f"{BINPKG_PN}.c"])
    atom = host.add_ebuild(BINPKG_PN, install=f'newbin "{elf}" {BINPKG_PN}')
    # The hook found on PATH, as on a real build host: Portage saves the
    # build's environment in the package and restores it on the client for
    # a binary merge, so a PORTAGE_IMA set here would name this host's path
    # in the VM (and the client's hook would not run).
    (host.bin / "portage-ima").symlink_to(hook.resolve())
    r = host.emerge(atom, env={"FEATURES": "buildpkg xattr", "BINPKG_FORMAT": "gpkg", "PORTAGE_IMA": None})
    if r.returncode != 0 or f"{CATEGORY}/{BINPKG_PN}-1: binary package:" not in r.output:
        raise RuntimeError(f"building the binary package on the host failed:\n{r.output}")
    signature = os.getxattr(host.live(f"/usr/bin/{BINPKG_PN}"), "security.ima")
    tree.write(BINPKG_SIGNATURE, signature.hex() + "\n")
    shutil.copytree(base / "pkgdir", tree.path("/var/cache/binpkgs"), dirs_exist_ok=True)
    shutil.rmtree(base)


def build_image(hook: Path, *, log=print) -> tuple[Path, Path]:
    """The signed root filesystem image for `hook` (cached), and the key
    directory. Built by one test worker at a time (`cache_lock`); another
    that wants it waits and boots the same file."""
    with cache_lock(CACHE / ".lock"):
        return _build_image_locked(hook, log)


def _build_image_locked(hook: Path, log) -> tuple[Path, Path]:
    key_dir = ensure_key(CACHE / "keys")
    ensure_key(other_key_dir(key_dir), "/CN=portage-ima enforce-mode VM test, not on the keyring")
    digest = inputs_digest(hook, key_dir)
    image = CACHE / f"root-{digest}.ext4"
    if image.exists():
        return image, key_dir
    for old in CACHE.glob("root-*.ext4"):
        old.unlink()
    work = CACHE / f"stage-{digest}"
    shutil.rmtree(work, ignore_errors=True)
    tree = Tree(work)
    add_base_system(tree, hook)
    _add_signing(tree, key_dir)
    tree.copy(INIT, "/sbin/portage-vm-init")
    os.chmod(tree.path("/sbin/portage-vm-init"), 0o755)
    add_portage(tree)
    write_repo(tree)
    _add_binpkg(tree, hook, key_dir, work)
    tree.add_libraries()
    run(["ldconfig", "-r", work])
    # Sign everything, as an admin would sign a system before enforcing.
    p = subprocess.run([hook, "sign", "-q", "--key", key_dir / "ima.key.pem",
                        "--cert", key_dir / "ima.cert.pem", "--hash", "sha256", "--files", work],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"portage-ima sign --files {work} failed (exit {p.returncode}):\n"
                           f"{p.stdout}{p.stderr}")
    size = sum(f.stat().st_size for f in work.rglob("*") if f.is_file() and not f.is_symlink())
    tmp = image.with_suffix(".tmp")
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-I", "256", "-L", "gentoo-ima",
         "-d", work, tmp, f"{size // 2**20 + 640}M"])
    tmp.rename(image)
    shutil.rmtree(work)
    log(f"built {image} from {size // 2**20} MB of files")
    return image, key_dir
