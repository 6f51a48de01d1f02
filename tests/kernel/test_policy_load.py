"""`portage-ima policy` against a real kernel: every rule it can emit loads,
and a signed policy is the only one a POLICY_CHECK-appraising kernel takes.

Debian's 6.12 cloud kernel has no CONFIG_IMA_WRITE_POLICY: one successful
policy write per boot. So two boots (QEMU, TCG), each a few seconds:

1. `union`: every variant the generator has (--appraise root-exec, exec,
   exec-mmap; with and without --measure and --require-signed-policy; the
   build directory on a tmpfs and on a filesystem of its own, exempted by
   fsmagic and by fsuuid) is generated on the host by the real binary; the
   distinct rules of all of them, exemptions first, are loaded at once by
   path, and the kernel must log each rule (type=1807, res=1) and
   "policy update completed". Before that, the VM reports the statfs magic
   of the pseudo filesystems it can mount, which must be those the
   generator exempts. After it, an unsigned program runs from a tmpfs (the
   exemption comes first) and is denied from a ramfs (nothing exempts it).
   This boot runs SELinux (`security=selinux`, permissive): before the
   union, /init loads a tiny policy (compiled here by checkpolicy) that
   defines Gentoo's `portage_tmp_t` and `portage_sandbox_t`; the real
   `portage-ima policy` must not see the types before that load and must
   exempt by those labels after it, and the label rules are in the union
   (the kernel refuses an LSM rule whose type the loaded policy lacks).
2. `signed` (`ima_policy=secure_boot`, whose built-in rules appraise
   POLICY_CHECK): inside the VM, `portage-ima policy --output` writes an
   unsigned policy, refused by path and by content; `--sign` one that is
   then changed by a line, refused; and a `--sign`ed one, accepted. That
   policy (root-exec) is then enforced: root may not run an unsigned
   program, the portage user may.

Serial logs: tests/.cache/kernel/policy-{union,signed}.log.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import kernelvm
from kernelvm import Unavailable, run
from portage_playground import portage_ima_bin, tmpfs_noexec

HERE = Path(__file__).resolve().parent
SCOPES = ("root-exec", "exec", "exec-mmap")
# The pseudo filesystems the VM mounts to read their magic (name: fstype, dir).
PSEUDO_MOUNTS = {
    "proc": "/proc", "sysfs": "/sys", "securityfs": "/sys/kernel/security",
    "devpts": "/dev/pts", "cgroup2": "/sys/fs/cgroup", "debugfs": "/sys/kernel/debug",
    "tracefs": "/sys/kernel/tracing", "configfs": "/sys/kernel/config",
    "bpf": "/sys/fs/bpf", "pstore": "/sys/fs/pstore", "mqueue": "/dev/mqueue",
    "hugetlbfs": "/dev/hugepages", "binfmt_misc": "/proc/sys/fs/binfmt_misc",
}


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"kernel policy test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def policy_cmd(bin: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    # No portageq: the scratch root's make.conf is what counts. Every other
    # tmpfs noexec, so that the tmpfs layout is exempted by fsmagic.
    return subprocess.run(tmpfs_noexec([str(bin), "policy", "--root", str(root), *args]),
                          capture_output=True, text=True, env={"PATH": "/nonexistent"})


def scratch_root(base: Path, tmpdir: Path) -> Path:
    root = base / "root"
    (root / "etc/portage").mkdir(parents=True)
    (root / "etc/portage/make.conf").write_text(
        f'FEATURES="userpriv xattr"\nPORTAGE_XATTR_EXCLUDE="btrfs.*"\nPORTAGE_TMPDIR="{tmpdir}"\n')
    return root


class Layouts:
    """The two layouts whose build directory can be exempted: a tmpfs
    (/dev/shm, the root on the host's disk) and an ext4 filesystem of its
    own (a loop-mounted image, the root elsewhere)."""

    def __init__(self, work: Path):
        self.work = work
        self.mounted: Path | None = None
        self.shm: Path | None = None

    def tmpfs(self) -> Path:
        self.shm = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="portage-ima-policy-"))
        return scratch_root(self.work / "tmpfs", self.shm)

    def own_fs(self) -> tuple[Path, str]:
        image, mnt = self.work / "tmpdir.ext4", self.work / "tmpdir"
        mnt.mkdir()
        run(["mke2fs", "-q", "-t", "ext4", image, "16M"])
        try:
            run(["mount", "-o", "loop", image, mnt])
        except RuntimeError as e:
            raise Unavailable(f"cannot loop-mount an ext4 image for the fsuuid layout: {e}")
        self.mounted = mnt
        uuid = re.search(r"Filesystem UUID:\s+(\S+)",
                         run(["dumpe2fs", "-h", image]).stdout).group(1)
        return scratch_root(self.work / "own", mnt), uuid

    def close(self):
        if self.shm:
            shutil.rmtree(self.shm, ignore_errors=True)
        if self.mounted:
            subprocess.run(["umount", str(self.mounted)])


def generate_variants(bin: Path, work: Path) -> dict[str, str]:
    """name -> policy text, for every variant; checks the fsuuid is the image's."""
    layouts = Layouts(work)
    try:
        roots = {"tmpfs": layouts.tmpfs()}
        roots["fsuuid"], uuid = layouts.own_fs()
        variants = {}
        for layout, root in roots.items():
            for scope in SCOPES:
                for measure in (False, True):
                    for signed in (False, True):
                        args = ["--appraise", scope] + ["--measure"] * measure
                        args += ["--require-signed-policy"] * signed
                        p = policy_cmd(bin, root, *args)
                        assert p.returncode == 0, f"{layout} {args}: {p.stderr}"
                        variants[f"{layout} {' '.join(args)}"] = p.stdout
        fsuuid_rules = {l for t in variants.values() for l in t.splitlines()
                        if l.startswith("dont_appraise fsuuid=")}
        assert fsuuid_rules == {f"dont_appraise fsuuid={uuid}"}, fsuuid_rules
        return variants
    finally:
        layouts.close()


def rules_of(text: str) -> list[str]:
    return [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]


def union(variants: dict[str, str]) -> list[str]:
    """The distinct rules of every variant, exemptions first (so the VM's
    own busybox, on the rootfs tmpfs, keeps running), in first-seen order."""
    seen: dict[str, None] = {}
    for text in variants.values():
        for rule in rules_of(text):
            seen.setdefault(rule, None)
    rules = list(seen)
    return [r for r in rules if r.startswith("dont_")] + [r for r in rules if not r.startswith("dont_")]


# The smallest SELinux policy that defines Gentoo's Portage types (the
# reference policy's portage module names them), non-MLS; checkpolicy -U
# allow lets every class and permission the kernel knows and this does not
# declare through.
SELINUX_POLICY = """
class security
class process
class file
sid kernel
sid security
sid unlabeled
class security { load_policy }
class process { transition dyntransition }
class file { read execute }
type kernel_t;
type unlabeled_t;
type portage_tmp_t;
type portage_sandbox_t;
allow kernel_t self:process transition;
role system_r;
role system_r types { kernel_t portage_sandbox_t };
user system_u roles { system_r };
sid kernel system_u:system_r:kernel_t
sid security system_u:object_r:unlabeled_t
sid unlabeled system_u:object_r:unlabeled_t
"""
# What `portage-ima policy` emits for them (generate.rs).
LABEL_RULES = ["dont_appraise obj_type=portage_tmp_t", "dont_measure obj_type=portage_tmp_t",
               "dont_appraise subj_type=portage_sandbox_t",
               "dont_measure subj_type=portage_sandbox_t"]


def compile_selinux_policy(work: Path) -> bytes:
    checkpolicy = shutil.which("checkpolicy")
    if checkpolicy is None:
        raise Unavailable("checkpolicy not found: apt-get install checkpolicy")
    src, out = work / "selinux.conf", work / "selinux.policy"
    src.write_text(SELINUX_POLICY)
    run([checkpolicy, "-U", "allow", "-o", out, src])
    return out.read_bytes()


def build_initramfs(work: Path, kernel: kernelvm.Kernel, bin: Path, key: dict[str, Path],
                    cases: str, files: dict[str, bytes]) -> Path:
    ir = kernelvm.Initramfs(work)
    ir.add_file(HERE / "policy_init.sh", "/init", 0o755)
    ir.add_file(kernelvm.BUSYBOX, "/bin/busybox", 0o755)
    keyctl = shutil.which("keyctl")
    if keyctl is None:
        raise Unavailable("keyctl not found: apt-get install keyutils")
    ir.add_binary(Path(keyctl), "/usr/bin/keyctl")
    ir.add_binary(bin, "/usr/bin/portage-ima")
    ir.add_file(key["der"], "/ima/cert.der", 0o644)
    ir.add_file(key["key"], "/ima/key.pem", 0o600)
    ir.add_bytes(f'key = "/ima/key.pem"\ncert = "/ima/cert.der"\n'.encode(), "/ima/ima.toml")
    ir.add_bytes(b"root:x:0:0:root:/:/bin/sh\nportage:x:250:250:portage:/:/bin/sh\n", "/etc/passwd")
    ir.add_bytes(b"root:x:0:\nportage:x:250:\n", "/etc/group")
    for dest, data in files.items():
        ir.add_bytes(data, dest)
    ir.add_bytes(cases.encode(), "/cases.sh", 0o755)
    return ir.pack(work.with_suffix(".cpio"))


def make_key(dir: Path) -> dict[str, Path]:
    key, pem, der = dir / "key.pem", dir / "cert.pem", dir / "cert.der"
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
         "-out", pem, "-days", "7", "-subj", "/CN=portage-ima policy test",
         "-addext", "subjectKeyIdentifier=hash", "-addext", "keyUsage=critical,digitalSignature",
         "-addext", "basicConstraints=critical,CA:FALSE"])
    run(["openssl", "x509", "-in", pem, "-outform", "DER", "-out", der])
    os.chmod(key, 0o600)
    return {"key": key, "der": der}


SIGN_BUSYBOX = ("run_step sign busybox portage-ima --config /ima/ima.toml sign "
                "--files /bin/busybox\n")


def union_cases() -> str:
    lines = [SIGN_BUSYBOX, "# The magic of each pseudo filesystem this kernel can mount."]
    for fstype, dir in PSEUDO_MOUNTS.items():
        q = shlex.quote
        mounted = f"grep -q ' {dir} ' /proc/mounts"
        lines.append(f"mkdir -p {q(dir)}; {mounted} || "
                     f"mount -t {q(fstype)} {q(fstype)} {q(dir)} 2>/dev/null; "
                     f"{mounted} && say magic {fstype} m=$(stat -f -c %t {q(dir)})")
    lines.append("say magic rootfs m=$(stat -f -c %t /)")
    # Unsigned copies of busybox on a tmpfs (exempted) and on a ramfs (not).
    lines.append("mkdir -p /mnt/r && mount -t ramfs ramfs /mnt/r || die 'mount ramfs'")
    lines.append("cp /bin/busybox /mnt/t/busybox.unsigned && cp /bin/busybox /mnt/r/busybox.unsigned"
                 " || die 'cp busybox'")
    lines.append("run_step exec ramfs-before /mnt/r/busybox.unsigned true")
    # SELinux: the generator sees Gentoo's types only once a policy has them.
    gen = "portage-ima --config /ima/ima.toml policy --root /proot --appraise exec"
    lines.append(VM_ROOT_SETUP)
    lines.append("mkdir -p /sys/fs/selinux && mount -t selinuxfs selinuxfs /sys/fs/selinux"
                 " || die 'mount selinuxfs'")
    lines.append(f"run_step gen selinux-unloaded {gen}")
    lines.append("run_step selinux load sh -c 'cat /selinux/policy >/sys/fs/selinux/load'")
    lines.append(f"run_step gen selinux {gen}")
    lines.append("load union /ima/union.policy")
    lines.append("run_step exec tmpfs /mnt/t/busybox.unsigned true")
    lines.append("run_step exec ramfs /mnt/r/busybox.unsigned true")
    lines.append("sleep 0.5")
    return "\n".join(lines) + "\n"


# The fake Portage root inside the VM (on the rootfs tmpfs; builds in /mnt/t).
VM_ROOT_SETUP = """
mkdir -p /proot/etc/portage /mnt/t/build
printf 'FEATURES="userpriv"\\nPORTAGE_TMPDIR="/mnt/t/build"\\n' >/proot/etc/portage/make.conf
"""


def signed_cases() -> str:
    gen = "portage-ima --config /ima/ima.toml policy --root /proot --require-signed-policy"
    return "\n".join([
        SIGN_BUSYBOX + VM_ROOT_SETUP,
        f"run_step gen unsigned {gen} --output /mnt/t/unsigned.policy",
        "load unsigned /mnt/t/unsigned.policy",
        "run_step load content sh -c 'cat /mnt/t/unsigned.policy >/sys/kernel/security/ima/policy'",
        f"run_step gen tampered {gen} --sign --output /mnt/t/tampered.policy",
        "echo 'appraise func=FILE_CHECK appraise_type=imasig' >>/mnt/t/tampered.policy",
        "load tampered /mnt/t/tampered.policy",
        f"run_step gen signed {gen} --sign --output /mnt/t/signed.policy",
        "cp /bin/busybox /mnt/t/busybox.unsigned || die 'cp busybox'",
        "load signed /mnt/t/signed.policy",
        # The loaded policy (root-exec, builds not exempted: the VM's root is a
        # tmpfs) appraises what root runs, and only that.
        "run_step exec root-unsigned /mnt/t/busybox.unsigned true",
        "run_step exec root-signed /bin/busybox true",
        "run_step exec portage-unsigned su -s /bin/sh portage -c '/mnt/t/busybox.unsigned true'",
        "cp /bin/busybox /mnt/t/busybox.built && chown 250:250 /mnt/t/busybox.built || die 'cp built'",
        "run_step exec portage-own su -s /bin/sh portage -c '/mnt/t/busybox.built true'",
        "sleep 0.5",
    ]) + "\n"


def decode(rec: kernelvm.Record) -> str:
    return base64.b64decode(rec.fields.get("out", "")).decode(errors="replace").strip()


def complete(b: kernelvm.BootResult) -> None:
    fatal = next((r for r in b.records if r.kind == "fatal"), None)
    if fatal is not None:
        reason = base64.b64decode(fatal.fields.get("reason", "")).decode(errors="replace")
        pytest.fail(f"the VM's /init gave up: {reason}\n--- serial tail ---\n{b.tail()}",
                    pytrace=False)
    if b.timed_out or not b.completed():
        pytest.fail(f"the VM did not finish (timed out: {b.timed_out}, {b.seconds:.0f} s)\n"
                    f"--- serial tail ---\n{b.tail()}", pytrace=False)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if os.geteuid() != 0:
        _unavailable("needs root (loop mount, security.ima)")
    bin = portage_ima_bin()
    if not os.access(bin, os.X_OK):
        _unavailable(f"{bin} not found: build it with `cargo build --all-features`")
    try:
        kernelvm.ensure_host_tools()
        kernel = kernelvm.prepare_kernel()
        for tool in ("mke2fs", "dumpe2fs", "openssl", "ldd", "mount"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} not found")
    except Unavailable as e:
        _unavailable(str(e))
    work = tmp_path_factory.mktemp("policy")
    (work / "keys").mkdir()
    return bin, kernel, work, make_key(work / "keys")


@pytest.fixture(scope="module")
def union_boot(env):
    bin, kernel, work, key = env
    try:
        variants = generate_variants(bin, work)
    except Unavailable as e:
        _unavailable(str(e))
    try:
        selinux_policy = compile_selinux_policy(work)
    except Unavailable as e:
        _unavailable(str(e))
    rules = LABEL_RULES + union(variants)
    initrd = build_initramfs(work / "union", kernel, bin, key, union_cases(),
                             {"/ima/union.policy": ("\n".join(rules) + "\n").encode(),
                              "/selinux/policy": selinux_policy})
    # Every rule is logged (type=1807): room for all of them in the audit backlog.
    result = kernelvm.boot(kernel, initrd, timeout=180,
                           extra_append="audit_backlog_limit=8192 security=selinux",
                           log=kernelvm.CACHE / "policy-union.log")
    print(f"\nunion boot ({len(rules)} rules of {len(variants)} variants): {result.seconds:.1f} s")
    return variants, rules, result


@pytest.fixture(scope="module")
def signed_boot(env):
    bin, kernel, work, key = env
    initrd = build_initramfs(work / "signed", kernel, bin, key, signed_cases(), {})
    result = kernelvm.boot(kernel, initrd, timeout=180, extra_append="ima_policy=secure_boot",
                           log=kernelvm.CACHE / "policy-signed.log")
    print(f"\nsigned-policy boot: {result.seconds:.1f} s")
    return result


def test_every_rule_the_generator_emits_loads(union_boot):
    variants, rules, b = union_boot
    complete(b)
    # Every kind of rule is in the union (the generator's whole vocabulary).
    for needle in ("dont_appraise fsmagic=0x1021994", "dont_appraise fsuuid=",
                   "appraise func=POLICY_CHECK appraise_type=imasig",
                   "appraise func=BPRM_CHECK uid=0 appraise_type=imasig",
                   "appraise func=BPRM_CHECK appraise_type=imasig",
                   "appraise func=MMAP_CHECK mask=MAY_EXEC appraise_type=imasig",
                   "measure func=BPRM_CHECK uid=0", "measure func=MMAP_CHECK mask=MAY_EXEC",
                   "dont_measure fsmagic=0x9fa0"):
        assert any(r.startswith(needle) for r in rules), needle
    load = b.find("load", "union")
    assert load is not None and load.fields["rc"] == "0", decode(load) if load else b.tail()
    accepted = [l for l in b.dmesg if "type=1807" in l and "res=1" in l]
    refused = [l for l in b.dmesg if "type=1807" in l and "res=0" in l]
    assert not refused, "\n".join(refused)
    assert len(accepted) == len(rules), f"{len(accepted)} of {len(rules)} rules logged"
    assert any("ima: policy update completed" in l for l in b.dmesg), "\n".join(b.dmesg[-20:])
    # The exemptions come first and work: an unsigned program runs from a
    # tmpfs, and is denied by IMA from a ramfs, which nothing exempts.
    tmpfs, ramfs = b.find("exec", "tmpfs"), b.find("exec", "ramfs")
    assert tmpfs is not None and tmpfs.fields["rc"] == "0", decode(tmpfs) if tmpfs else b.tail()
    assert ramfs is not None and ramfs.fields["rc"] != "0", b.tail()
    assert "Permission denied" in decode(ramfs), decode(ramfs)
    # It ran before the policy was loaded: the denial is the policy's. (IMA
    # writes no audit record here: a ramfs has no xattrs to appraise.)
    before = b.find("exec", "ramfs-before")
    assert before is not None and before.fields["rc"] == "0", decode(before) if before else b.tail()


def test_selinux_labels_are_found_in_the_loaded_policy_and_their_rules_load(union_boot):
    _, rules, b = union_boot
    complete(b)
    assert "security=selinux" in base64.b64decode(b.find("kernel", "-").fields["cmdline"]).decode()
    # SELinux on, no policy loaded yet: no labels, and the VM's build
    # directory shares the root's tmpfs, so `--appraise exec` is refused.
    unloaded = b.find("gen", "selinux-unloaded")
    assert unloaded is not None and unloaded.fields["rc"] == "2", decode(unloaded) if unloaded else b.tail()
    assert "no policy can appraise exec" in decode(unloaded), decode(unloaded)
    load = b.find("selinux", "load")
    assert load is not None and load.fields["rc"] == "0", decode(load) if load else b.tail()
    # With Gentoo's types loaded: exempted by label, said on stderr.
    gen = b.find("gen", "selinux")
    out = decode(gen)
    assert gen.fields["rc"] == "0", out
    label_rules = [r for r in rules_of(out) if r.startswith("dont_") and "_type=" in r]
    assert label_rules == LABEL_RULES, out
    assert "exemption wider than the build directory: dont_appraise subj_type=portage_sandbox_t" in out, out
    assert "fsmagic=0x1021994" not in out, out
    # The kernel took them (the union's own test checks that every rule did).
    logged = [l for l in b.dmesg if "type=1807" in l]
    for rule in LABEL_RULES:
        action, cond = rule.split(" ", 1)
        assert any(f"action={action} {cond}" in l and "res=1" in l for l in logged), \
            (rule, [l for l in logged if cond in l])


def test_pseudo_filesystem_magic_is_the_kernels(union_boot):
    variants, _, b = union_boot
    complete(b)
    # The generator's table, from its own output (comment line, then the rule).
    table: dict[str, int] = {}
    lines = next(iter(variants.values())).splitlines()
    for comment, rule in zip(lines, lines[1:]):
        m = re.fullmatch(r"dont_appraise fsmagic=0x([0-9a-f]+)", rule)
        if m and comment.startswith("# "):
            table[comment[2:]] = int(m.group(1), 16)
    seen = {r.id: int(r.fields["m"], 16) for r in b.records if r.kind == "magic"}
    mounted = {n: m for n, m in seen.items() if n in PSEUDO_MOUNTS}
    assert len(mounted) >= 8, f"the VM mounted too few pseudo filesystems: {seen}"
    for name, magic in mounted.items():
        assert table.get(name) == magic, f"{name}: kernel says {magic:#x}, policy {table.get(name)}"


def test_only_the_signed_policy_loads_when_policy_check_is_appraised(signed_boot):
    b = signed_boot
    complete(b)
    kernel = b.find("kernel", "-")
    assert "ima_policy=secure_boot" in base64.b64decode(kernel.fields["cmdline"]).decode()
    for gen in ("unsigned", "tampered", "signed"):
        rec = b.find("gen", gen)
        assert rec is not None and rec.fields["rc"] == "0", decode(rec) if rec else b.tail()
    for refused in ("unsigned", "content", "tampered"):
        rec = b.find("load", refused)
        assert rec is not None and rec.fields["rc"] != "0", f"{refused}: {b.tail()}"
    rec = b.find("load", "signed")
    assert rec is not None and rec.fields["rc"] == "0", decode(rec) if rec else b.tail()
    # Exactly one update went through: the signed one.
    completed = [l for l in b.dmesg if "ima: policy update completed" in l]
    assert len(completed) == 1, "\n".join(b.dmesg[-30:])
    # The signed policy is enforced: root may not run an unsigned program,
    # nor may anyone run an unsigned root-owned one (the setuid rule,
    # fowner=0, issue 20); the portage user may run what it built itself
    # (builds, FEATURES=userpriv).
    ids = ("root-unsigned", "root-signed", "portage-unsigned", "portage-own")
    rc = {id: b.find("exec", id) for id in ids}
    assert rc["root-unsigned"] is not None and rc["root-unsigned"].fields["rc"] != "0", b.tail()
    assert rc["root-signed"].fields["rc"] == "0", decode(rc["root-signed"])
    assert rc["portage-unsigned"].fields["rc"] != "0", decode(rc["portage-unsigned"])
    assert rc["portage-own"].fields["rc"] == "0", decode(rc["portage-own"])
    # IMA's own denials, for the very files.
    denials = [l for l in b.dmesg if "type=1800" in l and "res=0" in l]
    assert any("cause=IMA-signature-required" in l and 'name="/mnt/t/unsigned.policy"' in l
               for l in denials), "\n".join(denials)
    assert any("cause=invalid-signature" in l and 'name="/mnt/t/tampered.policy"' in l
               for l in denials), "\n".join(denials)
    assert any("cause=IMA-signature-required" in l and 'name="/mnt/t/busybox.unsigned"' in l
               for l in denials), "\n".join(denials)
