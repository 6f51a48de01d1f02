"""Boot Debian's kernel under QEMU with IMA appraisal enforced, and read back what it did.

This module knows nothing of portage-ima. It provides the pieces that
test_appraisal.py puts together:

- `ensure_host_tools()`: qemu-system-x86, busybox-static, cpio (installed with
  apt-get when missing and we are root);
- `prepare_kernel()`: the newest `linux-image-*-cloud-amd64-unsigned` that apt
  knows, downloaded and unpacked once under tests/.cache/kernel;
- `resolve_modules()`: the .ko files (with their dependencies, in load order)
  for the features the kernel built as modules (sha512, virtio);
- `Initramfs`: a staging tree packed with cpio; binaries go in with the
  libraries `ldd` lists;
- `boot()`: runs QEMU with `ima_appraise=enforce` and returns its serial
  output, parsed into `@@ima-test` result lines, dmesg and the measurement list.

When something the test cannot do without is missing, `Unavailable` is raised
with a reason; the test turns it into a skip, or a failure when CI is set.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import lzma
import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

from portage_playground.cachelock import cache_lock

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "tests" / ".cache" / "kernel"
HERE = Path(__file__).resolve().parent

#: The package family we boot. The cloud flavour boots fastest; it has
#: CONFIG_IMA_APPRAISE and no CONFIG_INTEGRITY_TRUSTED_KEYRING, so a userspace
#: `_ima` keyring takes a self-made certificate.
KERNEL_PACKAGE_RE = re.compile(r"^linux-image-[0-9].*-cloud-amd64-unsigned$")

#: Set to a package name to boot that kernel instead of the newest one.
KERNEL_PACKAGE_ENV = "PORTAGE_IMA_TEST_KERNEL_PACKAGE"

HOST_PACKAGES = {
    # command -> Debian package that provides it
    "qemu-system-x86_64": "qemu-system-x86",
    "cpio": "cpio",
}
BUSYBOX = Path("/bin/busybox")

RESULT_PREFIX = "@@ima-test "
DMESG_PREFIX = "@@dmesg "
MEAS_PREFIX = "@@meas "


class Unavailable(Exception):
    """Something the VM test needs (QEMU, the kernel package...) cannot be had here."""


def run(argv, **kw) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; raise with its stderr when it fails."""
    kw.setdefault("check", True)
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    try:
        return subprocess.run([str(a) for a in argv], **kw)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(
            f"command failed (exit {e.returncode}): {' '.join(map(str, argv))}\n"
            f"{(e.stderr or '').strip()}"
        ) from None


# --------------------------------------------------------------------------
# Host tools
# --------------------------------------------------------------------------


def _is_static(path: Path) -> bool:
    """True if `path` is an ELF with no program interpreter (statically linked)."""
    with open(path, "rb") as f:
        hdr = f.read(64)
        if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", hdr, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(
        struct.unpack_from("<I", table, i * phentsize)[0] != 3  # PT_INTERP
        for i in range(phnum)
    )


def _missing_host_packages() -> list[str]:
    missing = [pkg for cmd, pkg in HOST_PACKAGES.items() if shutil.which(cmd) is None]
    if not (BUSYBOX.exists() and _is_static(BUSYBOX)):
        missing.append("busybox-static")
    return missing


#: Held around apt-get install/update: dpkg takes one frontend at a time,
#: and two test workers may find the same package missing.
APT_LOCK = REPO / "tests" / ".cache" / "apt.lock"


def ensure_host_tools() -> None:
    """Make sure qemu-system-x86_64, a static /bin/busybox and cpio exist.

    Installs the missing Debian packages with `apt-get install
    --no-install-recommends` when running as root; raises `Unavailable` when
    they cannot be had.
    """
    if not _missing_host_packages():
        return
    with cache_lock(APT_LOCK):
        _install_host_tools()


def _install_host_tools() -> None:
    missing = _missing_host_packages()
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(
            f"missing {', '.join(missing)}: install them with "
            f"`apt-get install --no-install-recommends {' '.join(missing)}`"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    p = subprocess.run(install, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        # Stale or missing package lists are the usual cause on a fresh machine.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        p = subprocess.run(install, capture_output=True, text=True, env=env)
    still = _missing_host_packages()
    if still:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-5:])
        raise Unavailable(f"could not install {', '.join(still)} with apt-get:\n{tail}")


# --------------------------------------------------------------------------
# The kernel package
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kernel:
    package: str
    version: str
    root: Path  # the unpacked .deb
    release: str  # `uname -r` of that kernel

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    def config(self) -> dict[str, str]:
        cfg = {}
        for line in (self.root / "boot" / f"config-{self.release}").read_text().splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                cfg[k] = v
        return cfg


def _dpkg_newer(a: str, b: str) -> int:
    """cmp() for Debian versions, by dpkg itself."""
    if a == b:
        return 0
    gt = subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0
    return 1 if gt else -1


def _kernel_package_names() -> list[str]:
    out = run(["apt-cache", "pkgnames", "linux-image-"], check=False).stdout
    return [n for n in out.split() if KERNEL_PACKAGE_RE.match(n)]


def newest_kernel_package() -> tuple[str, str]:
    """(package, version) of the newest cloud-amd64-unsigned kernel apt knows of."""
    wanted = os.environ.get(KERNEL_PACKAGE_ENV)
    if wanted:
        names = [wanted]
    else:
        names = _kernel_package_names()
        if not names and os.geteuid() == 0:
            # A fresh machine may have no package lists yet.
            with cache_lock(APT_LOCK):
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            names = _kernel_package_names()
    if not names:
        raise Unavailable("apt-cache knows no linux-image-*-cloud-amd64-unsigned package "
                          "(run `apt-get update`?)")
    show = run(["apt-cache", "show", "--no-all-versions", *names], check=False).stdout
    found = {}
    for stanza in show.split("\n\n"):
        pkg = re.search(r"^Package: (\S+)", stanza, re.M)
        ver = re.search(r"^Version: (\S+)", stanza, re.M)
        if pkg and ver:
            found[pkg.group(1)] = ver.group(1)
    if not found:
        raise Unavailable(f"apt-cache show gave no version for {', '.join(names)}")
    best = max(found.items(), key=functools.cmp_to_key(lambda x, y: _dpkg_newer(x[1], y[1])))
    return best


def _unpacked(root: Path, package: str, version: str) -> Kernel:
    releases = [p.name for p in (root / "lib" / "modules").iterdir()]
    if len(releases) != 1:
        raise RuntimeError(f"{root}: expected one lib/modules/<release>, found {releases}")
    return Kernel(package, version, root, releases[0])


def _newest_cached() -> Kernel | None:
    """The newest kernel already unpacked in the cache (of the requested package, if any)."""
    wanted = os.environ.get(KERNEL_PACKAGE_ENV)
    found = []
    for d in sorted(CACHE.glob("linux-image-*")):
        stamp = d / ".complete"
        if stamp.exists():
            pkg, ver = stamp.read_text().split()
            if wanted in (None, "", pkg):
                found.append(_unpacked(d, pkg, ver))
    if not found:
        return None
    return max(found, key=functools.cmp_to_key(lambda x, y: _dpkg_newer(x.version, y.version)))


def prepare_kernel() -> Kernel:
    """Download and unpack the newest cloud kernel once; reuse the cache afterwards.

    When apt cannot name or fetch a kernel (no network) the newest one already
    in the cache is used; with an empty cache `Unavailable` is raised. One
    test worker at a time (`cache_lock`); the others wait and reuse it.
    """
    with cache_lock(CACHE / ".lock"):
        return _prepare_kernel_locked()


def _prepare_kernel_locked() -> Kernel:
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        package, version = newest_kernel_package()
    except (Unavailable, RuntimeError, FileNotFoundError) as e:
        cached = _newest_cached()
        if cached:
            return cached
        raise Unavailable(f"no kernel package: {e}") from None

    dest = CACHE / f"{package}_{version}".replace(":", "%3a")
    if (dest / ".complete").exists():
        return _unpacked(dest, package, version)

    debs = CACHE / "debs"
    debs.mkdir(exist_ok=True)
    p = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=debs,
                       capture_output=True, text=True)
    deb = next(iter(sorted(debs.glob(f"{package}_*.deb"))), None)
    if p.returncode != 0 or deb is None:
        cached = _newest_cached()
        if cached:
            return cached
        raise Unavailable(f"`apt-get download {package}={version}` failed:\n{p.stderr.strip()}")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    run(["dpkg-deb", "-x", deb, tmp])
    kernel = _unpacked(tmp, package, version)
    if not kernel.vmlinuz.exists():
        raise RuntimeError(f"{deb}: no boot/vmlinuz-{kernel.release} inside")
    (tmp / ".complete").write_text(f"{package} {version}\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    deb.unlink()
    return _unpacked(dest, package, version)


# --------------------------------------------------------------------------
# Kernel modules
# --------------------------------------------------------------------------


def _norm(name: str) -> str:
    return name.replace("-", "_")


def _module_name(path: Path) -> str:
    return _norm(path.name.split(".ko")[0])


def read_module(path: Path) -> bytes:
    """The uncompressed bytes of a .ko, .ko.xz, .ko.gz or .ko.zst file."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return run(["zstd", "-dc", path], text=False).stdout
    return data


def _modinfo(ko: bytes) -> dict[str, list[str]]:
    """The key=value strings of an ELF64 module's .modinfo section."""
    shoff, = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i):
        name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", ko, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = section(shstrndx)
    info: dict[str, list[str]] = {}
    for i in range(shnum):
        name, off, size = section(i)
        end = ko.index(b"\0", stroff + name)
        if ko[stroff + name:end] == b".modinfo":
            for item in ko[off:off + size].split(b"\0"):
                if b"=" in item:
                    k, v = item.decode(errors="replace").split("=", 1)
                    info.setdefault(k, []).append(v)
    return info


def resolve_modules(moddir: Path, wanted: list[str]) -> list[tuple[str, bytes]]:
    """The modules to insmod for `wanted`, dependencies first, as (name, bytes).

    Features the kernel has built in (modules.builtin) need nothing; a name
    that is neither built in nor shipped is an error.
    """
    builtin = {
        _module_name(Path(line.strip()))
        for line in (moddir / "modules.builtin").read_text().splitlines() if line.strip()
    }
    index = {_module_name(p): p for p in (moddir / "kernel").rglob("*.ko*")}
    order: list[tuple[str, bytes]] = []
    done: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]):
        name = _norm(name)
        if name in done or name in builtin:
            return
        if name not in index:
            raise RuntimeError(f"kernel module {name} (needed by {' <- '.join(chain) or 'the test'}) "
                               f"is neither built in nor in {moddir}")
        data = read_module(index[name])
        deps = [d for v in _modinfo(data).get("depends", []) for d in v.split(",") if d]
        for d in deps:
            visit(d, chain + (name,))
        done.add(name)
        order.append((name, data))

    for w in wanted:
        visit(w, ())
    return order


# --------------------------------------------------------------------------
# The initramfs
# --------------------------------------------------------------------------


def ldd_libraries(binary: Path) -> list[Path]:
    """The shared objects (and the dynamic loader) `ldd` lists for `binary`."""
    out = run(["ldd", binary], check=False).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


class Initramfs:
    """A staging tree that becomes a newc cpio archive (owned by root)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, dest: str) -> Path:
        p = self.root / dest.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add_file(self, src: Path, dest: str, mode: int | None = None) -> None:
        p = self.path(dest)
        shutil.copyfile(src, p)
        os.chmod(p, mode if mode is not None else (os.stat(src).st_mode & 0o777))

    def add_bytes(self, data: bytes, dest: str, mode: int = 0o644) -> None:
        p = self.path(dest)
        p.write_bytes(data)
        os.chmod(p, mode)

    def add_binary(self, src: Path, dest: str) -> None:
        """A dynamic executable plus every library `ldd` lists, at the same paths."""
        self.add_file(src, dest, 0o755)
        for lib in ldd_libraries(src):
            if not self.path(str(lib)).exists():
                self.add_file(lib.resolve(), str(lib), 0o755)

    def pack(self, out: Path) -> Path:
        files = run(["find", ".", "-mindepth", "1"], cwd=self.root).stdout
        with open(out, "wb") as f:
            subprocess.run(["cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet"],
                           input=files.encode(), stdout=f, cwd=self.root, check=True)
        return out


# --------------------------------------------------------------------------
# Booting and reading the serial console
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    """One `@@ima-test KIND ID key=value...` line printed by the VM's /init."""
    kind: str
    id: str
    fields: dict[str, str]
    line: str


@dataclasses.dataclass
class BootResult:
    serial: str
    seconds: float
    returncode: int | None
    timed_out: bool
    records: list[Record]
    dmesg: list[str]
    measurements: list[str]

    def find(self, kind: str, id: str) -> Record | None:
        for r in self.records:
            if r.kind == kind and r.id == id:
                return r
        return None

    def completed(self) -> bool:
        return self.find("done", "-") is not None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.serial.splitlines()[-n:])


def parse_serial(text: str) -> tuple[list[Record], list[str], list[str]]:
    records, dmesg, meas = [], [], []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        # The kernel may print on the same console; only whole lines that start
        # with our markers count.
        if line.startswith(RESULT_PREFIX):
            parts = line[len(RESULT_PREFIX):].split()
            if len(parts) < 2:
                continue
            fields = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
            records.append(Record(parts[0], parts[1], fields, line))
        elif line.startswith(DMESG_PREFIX):
            dmesg.append(line[len(DMESG_PREFIX):])
        elif line.startswith(MEAS_PREFIX):
            meas.append(line[len(MEAS_PREFIX):])
    return records, dmesg, meas


def boot(kernel: Kernel, initrd: Path | None, disks: list[Path] = (), *, memory: str = "1G",
         timeout: float = 480, extra_append: str = "", log: Path | None = None,
         nvme_root: Path | None = None, smp: int = 1, snapshot: bool = True) -> BootResult:
    """Boot `kernel` with `initrd` under QEMU (TCG), IMA appraisal enforced.

    `nvme_root` attaches a raw image as an NVMe disk (the cloud kernel has
    NVMe and ext4 built in, so it can be the root filesystem without an
    initramfs) with `snapshot=on`: the VM's writes never reach the file
    (with `snapshot=False` they do: a machine that keeps its disk across boots).
    The serial console is captured until QEMU exits (the /init powers off) or
    `timeout` seconds pass; a timed-out boot is reported, never hidden.
    """
    argv = [
        "qemu-system-x86_64", "-accel", "tcg", "-m", memory, "-smp", str(smp),
        "-no-reboot", "-nodefaults", "-no-user-config", "-display", "none",
        "-serial", "stdio", "-kernel", kernel.vmlinuz,
        *(["-initrd", initrd] if initrd else []),
        "-append", f"console=ttyS0 ima_appraise=enforce panic=-1 quiet loglevel=1 {extra_append}".strip(),
    ]
    for d in disks:
        argv += ["-drive", f"file={d},if=virtio,format=raw,readonly=on"]
    if nvme_root:
        argv += ["-drive", f"file={nvme_root},if=none,id=root,format=raw,snapshot={'on' if snapshot else 'off'}",
                 "-device", "nvme,drive=root,serial=root"]
    start = time.monotonic()
    timed_out = False
    try:
        p = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc, timed_out = (e.stdout or b"") + (e.stderr or b""), None, True
    seconds = time.monotonic() - start
    serial = out.decode(errors="replace")
    if log:
        log.write_text(serial)
    records, dmesg, meas = parse_serial(serial)
    return BootResult(serial, seconds, rc, timed_out, records, dmesg, meas)
