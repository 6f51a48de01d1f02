"""The first boot and the recovery under real UEFI Secure Boot (issue 20).

The chain is Debian's, under QEMU (TCG): OVMF with Microsoft's keys
enrolled (`OVMF_VARS_4M.ms.fd`), Debian's signed shim and grub, and
Debian's signed 6.12 cloud kernel, which boots with lockdown and ignores
`ima_appraise=` on its command line. The root is an ext4 image (NVMe, no
initramfs) signed on the host: static busybox, portage-ima, keyctl, the
test key, a vdb with one package, app-misc/needed-1, whose program
/usr/sbin/needed is left unsigned on purpose. Four boots share one image
(each ~10-20 s), every one with `ima_appraise=log` on the command line:

1. observe: the kernel says it ignores `ima_appraise=log`; `doctor` reports
   Secure Boot on (from efivarfs and that line); `policy --observe` is
   installed and loaded; /usr/sbin/needed runs; `audit` lists it, and
   nothing else, as what enforcing would refuse. The enforcing policy is
   then installed anyway.
2. locked out: init loads it; root cannot run /usr/sbin/needed (IMA's
   type=1800 denial), `ima_appraise=log` notwithstanding.
3. recovery: `init=/bin/sh`, so the policy is never loaded; the shell signs
   the package (`portage-ima sign =app-misc/needed-1`) and powers off.
4. clean: init loads the enforcing policy again; /usr/sbin/needed runs and
   the kernel denies nothing.

Serial logs: tests/.cache/secureboot/boot-{observe,locked,recover,clean}.log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import kernelvm
from kernelvm import Unavailable, run
from portage_playground import portage_ima_bin
from portage_playground.cachelock import cache_lock

HERE = Path(__file__).resolve().parent
CACHE = kernelvm.REPO / "tests" / ".cache" / "secureboot"
OVMF = Path("/usr/share/OVMF")
KERNEL_PKG = "linux-image-6.12.118+deb12-cloud-amd64"
DEBS = ("shim-signed", "grub-efi-amd64-signed", KERNEL_PKG)
BASE_CMDLINE = "console=ttyS0 root=/dev/nvme0n1 rootfstype=ext4 rw panic=-1 loglevel=4 ima_appraise=log"
NEEDED = b"#!/bin/sh\necho needed-ran\n"


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"Secure Boot test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def unpacked() -> Path:
    """shim, grub and the signed kernel, fetched with apt-get download
    (once, under a lock; unpacked beside and renamed into place)."""
    x = CACHE / "x"
    with cache_lock(CACHE / ".lock"):
        if (x / "usr/lib/shim/shimx64.efi.signed").exists():
            return x
        debs = CACHE / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        if len(list(debs.glob("*.deb"))) < len(DEBS):
            p = subprocess.run(["apt-get", "download", *DEBS], cwd=debs, capture_output=True, text=True)
            if p.returncode != 0:
                raise Unavailable(f"apt-get download {' '.join(DEBS)}: {p.stderr.strip()}")
        tmp = CACHE / "x.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for deb in debs.glob("*.deb"):
            run(["dpkg-deb", "-x", deb, tmp])
        shutil.rmtree(x, ignore_errors=True)
        tmp.rename(x)
    return x


def build_esp(x: Path, work: Path) -> Path:
    """A FAT ESP: shim as the fallback loader, grub beside it, the kernel."""
    esp = work / "esp.img"
    run(["dd", "if=/dev/zero", f"of={esp}", "bs=1M", "count=64", "status=none"])
    run(["mkfs.vfat", "-n", "ESP", esp])
    vmlinuz = next((x / "boot").glob("vmlinuz-*"))
    for d in ("::EFI", "::EFI/BOOT", "::EFI/debian"):
        run(["mmd", "-i", esp, d])
    run(["mcopy", "-i", esp, x / "usr/lib/shim/shimx64.efi.signed", "::EFI/BOOT/BOOTX64.EFI"])
    run(["mcopy", "-i", esp, x / "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
         "::EFI/BOOT/grubx64.efi"])
    run(["mcopy", "-i", esp, vmlinuz, "::vmlinuz"])
    return esp


def esp_for(esp: Path, cmdline: str, out: Path) -> Path:
    """A copy of the ESP whose grub.cfg boots the kernel with `cmdline`."""
    shutil.copyfile(esp, out)
    cfg = out.with_suffix(".cfg")
    cfg.write_text(f"set timeout=0\nmenuentry test {{\n  linux /vmlinuz {cmdline}\n}}\n")
    for d in ("::EFI/debian/grub.cfg", "::EFI/BOOT/grub.cfg"):
        run(["mcopy", "-o", "-i", out, cfg, d])
    return out


def build_root(x: Path, work: Path, bin: Path) -> Path:
    """The root filesystem tree, every program signed on the host except
    /usr/sbin/needed, packed with mke2fs -d (which keeps security.ima)."""
    tree = work / "root"
    for d in ("dev", "proc", "sys", "tmp", "etc/ima", "etc/portage", "usr/sbin", "usr/bin",
              "lib/modules", "var/db/pkg/app-misc/needed-1", "var/tmp"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "bin").mkdir(exist_ok=True)
    shutil.copyfile(kernelvm.BUSYBOX, tree / "bin/busybox")
    os.chmod(tree / "bin/busybox", 0o755)
    applets = run([kernelvm.BUSYBOX, "--list"]).stdout.split()
    for a in applets:
        if not (tree / "bin" / a).exists():
            os.symlink("busybox", tree / "bin" / a)
    for src, dest in ((bin, "usr/bin/portage-ima"), (Path(shutil.which("keyctl")), "usr/bin/keyctl")):
        shutil.copyfile(src, tree / dest)
        os.chmod(tree / dest, 0o755)
        for lib in kernelvm.ldd_libraries(src):
            target = tree / str(lib).lstrip("/")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lib.resolve(), target)
                os.chmod(target, 0o755)
    ko = next((x / "lib/modules").glob("*/kernel/fs/efivarfs/efivarfs.ko*"))
    (tree / "lib/modules/efivarfs.ko").write_bytes(kernelvm.read_module(ko))
    (tree / "sbin").mkdir(exist_ok=True)
    shutil.copyfile(HERE / "secure_boot_init.sh", tree / "sbin/pima-init")
    shutil.copyfile(HERE / "secure_boot_recover.sh", tree / "recover.sh")
    os.chmod(tree / "sbin/pima-init", 0o755)
    os.chmod(tree / "recover.sh", 0o755)

    keys = work / "keys"
    keys.mkdir()
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keys / "key.pem",
         "-out", keys / "cert.pem", "-days", "7", "-subj", "/CN=portage-ima secure boot test",
         "-addext", "subjectKeyIdentifier=hash", "-addext", "keyUsage=critical,digitalSignature",
         "-addext", "basicConstraints=critical,CA:FALSE"])
    run(["openssl", "x509", "-in", keys / "cert.pem", "-outform", "DER", "-out",
         tree / "etc/ima/cert.der"])
    shutil.copyfile(keys / "key.pem", tree / "etc/portage/ima-key.pem")
    os.chmod(tree / "etc/portage/ima-key.pem", 0o600)
    (tree / "etc/portage/ima.toml").write_text(
        'key = "/etc/portage/ima-key.pem"\ncert = "/etc/ima/cert.der"\n')
    (tree / "etc/portage/make.conf").write_text(
        'FEATURES="userpriv xattr"\nPORTAGE_TMPDIR="/var/tmp"\n')
    (tree / "etc/passwd").write_text("root:x:0:0:root:/:/bin/sh\nportage:x:250:250::/:/bin/sh\n")
    (tree / "etc/group").write_text("root:x:0:\nportage:x:250:\n")

    needed = tree / "usr/sbin/needed"
    needed.write_bytes(NEEDED)
    os.chmod(needed, 0o755)
    mtime = int(needed.stat().st_mtime)
    vdb = tree / "var/db/pkg/app-misc/needed-1"
    (vdb / "CONTENTS").write_text(
        f"dir /usr/sbin\nobj /usr/sbin/needed {hashlib.md5(NEEDED).hexdigest()} {mtime}\n")
    for name, value in (("SLOT", "0"), ("EAPI", "8"), ("CATEGORY", "app-misc"), ("PF", "needed-1")):
        (vdb / name).write_text(value + "\n")

    # Sign every regular file but the one left unsigned on purpose.
    conf = work / "host-ima.toml"
    conf.write_text(f'key = "{keys / "key.pem"}"\ncert = "{keys / "cert.pem"}"\n')
    files = [str(p) for p in tree.rglob("*")
             if p.is_file() and not p.is_symlink() and p != needed]
    run([bin, "--config", conf, "sign", "--files", *files])
    img = work / "root.img"
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-I", "256", "-L", "sbroot", "-d", tree, img, "96M"])
    return img


def boot(esp: Path, root: Path, work: Path, name: str, cmdline: str,
         timeout: float = 300) -> kernelvm.BootResult:
    vars_copy = work / f"vars-{name}.fd"
    shutil.copyfile(OVMF / "OVMF_VARS_4M.ms.fd", vars_copy)
    disk = esp_for(esp, cmdline, work / f"esp-{name}.img")
    argv = [
        "qemu-system-x86_64", "-machine", "q35,smm=on,accel=tcg", "-m", "1G", "-smp", "1",
        "-global", "driver=cfi.pflash01,property=secure,value=on",
        "-global", "ICH9-LPC.disable_s3=1",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF / 'OVMF_CODE_4M.secboot.fd'}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
        "-drive", f"file={disk},if=none,id=esp,format=raw",
        "-device", "virtio-blk-pci,drive=esp,bootindex=1",
        "-drive", f"file={root},if=none,id=root,format=raw",
        "-device", "nvme,drive=root,serial=root",
        "-no-reboot", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
    ]
    start = time.monotonic()
    timed_out = False
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        out, rc = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, rc, timed_out = (e.stdout or b"") + (e.stderr or b""), None, True
    serial = out.decode(errors="replace")
    (CACHE / f"boot-{name}.log").write_text(serial)
    records, dmesg, meas = kernelvm.parse_serial(serial)
    result = kernelvm.BootResult(serial, time.monotonic() - start, rc, timed_out, records,
                                 dmesg, meas)
    print(f"\nSecure Boot VM, {name}: {result.seconds:.1f} s")
    return result


@pytest.fixture(scope="module")
def boots(tmp_path_factory):
    if os.geteuid() != 0:
        _unavailable("needs root (security.ima on the host)")
    bin = portage_ima_bin()
    if not os.access(bin, os.X_OK):
        _unavailable(f"{bin} not found: build it with `cargo build --all-features`")
    for f in ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"):
        if not (OVMF / f).exists():
            _unavailable(f"{OVMF / f} missing: apt-get install ovmf (scripts/install-deps tests)")
    for tool in ("qemu-system-x86_64", "mkfs.vfat", "mcopy", "mke2fs", "keyctl", "openssl"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} not found: scripts/install-deps tests")
    try:
        x = unpacked()
    except Unavailable as e:
        _unavailable(str(e))
    work = tmp_path_factory.mktemp("secureboot")
    esp = build_esp(x, work)
    root = build_root(x, work, bin)
    init = f"{BASE_CMDLINE} init=/sbin/pima-init"
    out = {}
    out["observe"] = boot(esp, root, work, "observe", f"{init} pima=observe")
    out["locked"] = boot(esp, root, work, "locked", f"{init} pima=enforce")
    out["recover"] = boot(esp, root, work, "recover", f"{BASE_CMDLINE} init=/bin/sh -- /recover.sh")
    out["clean"] = boot(esp, root, work, "clean", f"{init} pima=enforce")
    return out


def decode(rec: kernelvm.Record | None) -> str:
    assert rec is not None
    return base64.b64decode(rec.fields.get("out", "")).decode(errors="replace")


def completed(b: kernelvm.BootResult) -> None:
    if b.timed_out or b.find("done", "-") is None:
        pytest.fail(f"the VM did not finish (timed out: {b.timed_out})\n{b.tail(60)}",
                    pytrace=False)


def rc(b: kernelvm.BootResult, kind: str, id: str) -> int:
    rec = b.find(kind, id)
    assert rec is not None, f"no {kind} {id}:\n{b.tail(60)}"
    return int(rec.fields["rc"])


def test_secure_boot_ignores_ima_appraise_and_doctor_says_so(boots):
    b = boots["observe"]
    completed(b)
    assert "UEFI Secure Boot is enabled" in b.serial or "Secure boot enabled" in b.serial, b.tail()
    assert any("Secure boot enabled: ignoring ima_appraise=log option" in l for l in b.dmesg), \
        "\n".join(l for l in b.dmesg if "ima" in l.lower())
    kernel = b.find("kernel", "-")
    assert "integrity" in base64.b64decode(kernel.fields["lockdown"]).decode()
    doc = json.loads(decode(b.find("doctor", "json")))
    checks = {c["check"]: c for c in doc["checks"]}
    sb = checks["secure-boot"]
    assert sb["status"] == "warn", sb
    assert "SecureBoot=1" in sb["finding"] and "ignoring ima_appraise=log option" in sb["finding"], sb
    assert "ima_appraise=log on this command line has no effect" in sb["finding"], sb
    assert "policy --observe" in sb["fix"], sb
    # grub, no UKI: init=/bin/sh can be given at boot.
    assert checks["recovery"]["status"] == "ok", checks["recovery"]
    assert "init=/bin/sh" in checks["recovery"]["finding"], checks["recovery"]


def test_observe_policy_boots_and_audit_finds_exactly_the_unsigned_program(boots):
    b = boots["observe"]
    completed(b)
    assert rc(b, "policy", "observe") == 0, decode(b.find("policy", "observe"))
    assert rc(b, "load", "observe") == 0, decode(b.find("load", "observe"))
    assert rc(b, "exec", "needed") == 0, decode(b.find("exec", "needed"))
    assert "needed-ran" in decode(b.find("exec", "needed"))
    assert not [l for l in b.dmesg if "type=1800" in l and "res=0" in l]
    text = decode(b.find("audit", "observe"))
    refused = [l for l in text.splitlines() if l.startswith("  would refuse ")]
    assert refused == [refused[0]] and refused[0].startswith("  would refuse /usr/sbin/needed: "), \
        text
    assert "unsigned-pristine /usr/sbin/needed" in text, text
    assert "enforcing would refuse 1 of the" in text, text
    assert rc(b, "policy", "enforce") == 0, decode(b.find("policy", "enforce"))


def test_init_sh_recovery_brings_a_locked_out_machine_back(boots):
    locked = boots["locked"]
    completed(locked)
    assert rc(locked, "load", "enforce") == 0, decode(locked.find("load", "enforce"))
    assert rc(locked, "exec", "needed") != 0
    assert "Permission denied" in decode(locked.find("exec", "needed"))
    assert any('name="/usr/sbin/needed"' in l and "IMA-signature-required" in l and "res=0" in l
               for l in locked.dmesg), "\n".join(locked.dmesg[-20:])
    # ima_appraise=log was on its command line too: ignored.
    assert any("ignoring ima_appraise=log" in l for l in locked.dmesg)

    rec = boots["recover"]
    completed(rec)
    shell = rec.find("shell", "-")
    assert shell is not None and shell.fields["pid"] == "1", rec.tail()
    assert rc(rec, "sign", "recover") == 0, decode(rec.find("sign", "recover"))

    clean = boots["clean"]
    completed(clean)
    assert rc(clean, "load", "enforce") == 0, decode(clean.find("load", "enforce"))
    assert rc(clean, "exec", "needed") == 0, decode(clean.find("exec", "needed"))
    assert not [l for l in clean.dmesg if "type=1800" in l and "res=0" in l], \
        "\n".join(l for l in clean.dmesg if "type=1800" in l)
