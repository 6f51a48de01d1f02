"""The proof that matters: a real kernel runs what portage-ima signed and refuses the rest.

One QEMU boot of Debian's cloud kernel with `ima_appraise=enforce` and the
policy

    measure func=BPRM_CHECK fowner=1000
    appraise func=BPRM_CHECK fowner=1000 appraise_type=imasig
    appraise func=FILE_CHECK fowner=1001

covers every combination of hash (sha256, sha512), key (RSA-2048, RSA-4096)
and signer backend (openssl, rustcrypto), and of hash (sha256, sha384,
sha512), ECDSA key (NIST P-256, P-384; Linux 5.13+, the `ecdsa_generic`
module where it is one) and backend, for files from two origins:

- `vm`: copied onto a tmpfs inside the VM and signed there by
  `portage-ima sign --files` (so the tool's own fsetxattr meets the target kernel);
- `ext4`: signed on the host and carried in an ext4 image (`mke2fs -d` keeps
  security.ima) attached as a virtio disk.

For each: a signed copy of a static ELF (busybox) and a signed `#!` script
run; a tampered copy (one byte appended after signing) and a copy signed with
a key that is not on the keyring (for ECDSA also a signature by a key on the
other curve carrying the key id of one on the keyring) are denied with EACCES
*and* the kernel logs
the IMA audit record for that very file; the measurement list (ima-sig) shows
the digest and signature that `portage-ima verify --json` reports. Unsigned
copies are denied too, and a tampered copy outside the policy still runs,
which shows the appended byte alone breaks nothing.

The FILE_CHECK rule (the tcb policy's, for uid 1001) shows why
`config_files` defaults to "executable" and offers "hash": a config file
signed by portage-ima is read but cannot be opened for writing, while one
with a digest-only value is written and the kernel updates its digest.

The boot's serial log is kept in tests/.cache/kernel/last-boot.log.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import kernelvm
from kernelvm import Unavailable, run
from portage_playground import portage_ima_bin
from portage_playground.ima import cert_keyid

HASHES = ("sha256", "sha512")
BITS = (2048, 4096)
BACKENDS = ("openssl", "rustcrypto")
# ECDSA: both curves the kernel's IMA verifies, with each hash.
EC_HASHES = ("sha256", "sha384", "sha512")
CURVES = ("p256", "p384")
OTHER_CURVE = {"p256": "p384", "p384": "p256"}
COMBOS = [f"{h}-rsa{b}-{be}" for h, b, be in itertools.product(HASHES, BITS, BACKENDS)]
COMBOS += [f"{h}-{c}-{be}" for h, c, be in itertools.product(EC_HASHES, CURVES, BACKENDS)]
# The key of a combo, after "ring"/"rogue" in a key's name: 2048, 4096, p256, p384.
KEY_SIZES = tuple(str(b) for b in BITS) + CURVES
ORIGINS = ("vm", "ext4")
FTYPES = ("elf", "script")

# The tcb-like rule for config files: what uid CONFIG_OWNER owns is
# appraised on every open (FILE_CHECK), as `appraise func=FILE_CHECK
# fowner=0` does for root's files, without touching the VM's own tools.
CONFIG_OWNER = 1001
POLICY = (
    "measure func=BPRM_CHECK fowner=1000\n"
    "appraise func=BPRM_CHECK fowner=1000 appraise_type=imasig\n"
    f"appraise func=FILE_CHECK fowner={CONFIG_OWNER}\n"
)
# Config files: signed (the old default) and hashed (config_files = "hash").
CONFIG_TEXT = "setting = 1\n"
CONFIG_APPENDED = "setting = 2\n"
CONFIG_FILES = {"signed": "/mnt/t/signed.conf", "hashed": "/mnt/t/hashed.conf"}
DIRS = {"vm": "/mnt/t", "ext4": "/mnt/ext"}
# IMA's audit causes for each kind of denial.
DENIAL_CAUSE = {
    "unsigned": "IMA-signature-required",
    "tampered": "invalid-signature",
    "wrongkey": "invalid-signature",
    # An ECDSA signature by a key on the other curve, with a key id on the keyring.
    "wrongcurve": "invalid-signature",
}
IMA_HASH_ALGO = {"sha256": 4, "sha384": 5, "sha512": 6}


def _unavailable(reason: str):
    """Skip, or fail when CI is set: there the test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"kernel appraisal test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    key: Path  # PEM private key
    cert_pem: Path
    cert_der: Path
    keyid: str  # last 4 bytes of the SKID, hex


def make_key(dir: Path, name: str, size: int | str) -> Key:
    """An RSA key of `size` bits, or an ECDSA key on curve `size` ("p256",
    "p384") in the SEC1 form `openssl ecparam -genkey` writes; with a certificate."""
    key, pem, der = dir / f"{name}.key.pem", dir / f"{name}.crt.pem", dir / f"{name}.crt.der"
    newkey = (["-newkey", f"rsa:{size}"] if isinstance(size, int) else
              ["-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:P-{size.removeprefix('p')}"])
    run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key,
         "-out", pem, "-days", "7", "-subj", f"/CN=portage-ima kernel test {name}",
         "-addext", "subjectKeyIdentifier=hash", "-addext", "keyUsage=critical,digitalSignature",
         "-addext", "basicConstraints=critical,CA:FALSE"])
    if not isinstance(size, int):
        run(["openssl", "ec", "-in", key, "-out", key])  # PKCS#8 -> EC PRIVATE KEY
    os.chmod(key, 0o600)
    run(["openssl", "x509", "-in", pem, "-outform", "DER", "-out", der])
    return Key(name, key, pem, der, cert_keyid(pem))


def ring_keys(keys: dict[str, Key]) -> list[Key]:
    """The keys whose certificates are on the `_ima` keyring."""
    return [k for n, k in keys.items() if n.startswith("ring")]


# --------------------------------------------------------------------------
# The plan: every file the VM will execute, and what must happen to it
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    origin: str  # vm | ext4
    combo: str | None  # sha256-rsa2048-openssl, sha384-p256-rustcrypto..., None for unsigned/control
    kind: str  # signed | tampered | wrongkey | wrongcurve | unsigned | unappraised
    ftype: str  # elf | script

    @property
    def id(self) -> str:
        return "-".join(x for x in (self.origin, self.combo, self.kind, self.ftype) if x)

    @property
    def filename(self) -> str:
        # busybox picks its applet from argv[0] unless the name starts with "busybox".
        return f"busybox.{self.id}" if self.ftype == "elf" else f"{self.id}.sh"

    @property
    def vm_path(self) -> str:
        return f"{DIRS[self.origin]}/{self.filename}"

    @property
    def expect_output(self) -> str:
        return f"ran {self.id}"

    @property
    def argv(self) -> list[str]:
        return [self.vm_path, "echo", self.expect_output] if self.ftype == "elf" else [self.vm_path]

    @property
    def denied(self) -> bool:
        return self.kind in DENIAL_CAUSE

    def combo_parts(self) -> tuple[str, str, str]:
        """hash, key size (as in KEY_SIZES), backend."""
        h, k, be = self.combo.split("-")
        return h, k.removeprefix("rsa"), be


def script_text(case: Case) -> str:
    return f"#!/bin/sh\necho '{case.expect_output}'\n"


def all_cases() -> list[Case]:
    cases = []
    for origin in ORIGINS:
        for combo in COMBOS:
            ec = combo.split("-")[1] in CURVES
            for kind in ("signed", "tampered", "wrongkey") + (("wrongcurve",) if ec else ()):
                for ftype in FTYPES:
                    cases.append(Case(origin, combo, kind, ftype))
        for ftype in FTYPES:
            cases.append(Case(origin, None, "unsigned", ftype))
    # Outside the policy (owned by root): the appended byte alone breaks nothing.
    cases.append(Case("vm", None, "unappraised", "elf"))
    return cases


CASES = all_cases()


def sign_argv(bin: str, key: Key, hash: str, backend: str, files: list[str],
              keyid: str | None = None) -> list[str]:
    return [bin, "sign", "--key", str(key.key), "--cert", str(key.cert_pem), "--hash", hash,
            "--backend", backend, *(["--keyid", keyid] if keyid else []), "--files", *files]


def verify_argv(bin: str, certs: list[Key], files: list[str]) -> list[str]:
    argv = [bin, "verify", "--json"]
    for k in certs:
        argv += ["--cert", str(k.cert_pem)]
    return argv + ["--files", *files]


# --------------------------------------------------------------------------
# Building the two worlds: the host-signed ext4 image and the VM's script
# --------------------------------------------------------------------------


def signing_key(keys: dict[str, Key], case: Case) -> Key:
    _, size, _ = case.combo_parts()
    if case.kind == "wrongcurve":
        return keys[f"rogue{OTHER_CURVE[size]}"]
    return keys[f"rogue{size}" if case.kind == "wrongkey" else f"ring{size}"]


def forged_keyid(keys: dict[str, Key], case: Case) -> str | None:
    """The key id to write instead of the signer's: a wrong-curve signature
    claims the ring key of the combo's curve, so the kernel tries that key."""
    _, size, _ = case.combo_parts()
    return keys[f"ring{size}"].keyid if case.kind == "wrongcurve" else None


def sign_groups(cases: list[Case]):
    """(combo, key kind, [cases]) for one signer call each."""
    groups: dict[tuple[str, str], list[Case]] = {}
    for c in cases:
        if c.combo:
            keykind = {"wrongkey": "rogue", "wrongcurve": "wrongcurve"}.get(c.kind, "ring")
            groups.setdefault((c.combo, keykind), []).append(c)
    return groups.items()


def verify_report(text: str) -> dict | None:
    """basename -> entry of a `portage-ima verify --json` document, None if unusable."""
    try:
        return {Path(f["path"]).name: f for f in json.loads(text)["files"]}
    except (ValueError, KeyError, TypeError):
        return None


def build_ext4(work: Path, bin: Path, keys: dict[str, Key]) -> tuple[Path, dict, dict | None]:
    """Sign the ext4 cases on the host and pack them with mke2fs -d.

    Returns the image, `verify --json` of the signed files, and `verify --json`
    of every file after the tampering (what the tool thinks of each case).
    """
    tree = work / "ext4-tree"
    tree.mkdir()
    cases = [c for c in CASES if c.origin == "ext4"]
    for c in cases:
        p = tree / c.filename
        if c.ftype == "elf":
            shutil.copyfile(kernelvm.BUSYBOX, p)
        else:
            p.write_text(script_text(c))
        os.chown(p, 1000, 1000)
        os.chmod(p, 0o755)
    for (combo, _), group in sign_groups(cases):
        h, _, be = group[0].combo_parts()
        key = signing_key(keys, group[0])
        p = subprocess.run(sign_argv(bin, key, h, be, [str(tree / c.filename) for c in group],
                                     forged_keyid(keys, group[0])),
                           capture_output=True, text=True)
        assert p.returncode == 0, (
            f"portage-ima sign on the host failed for {combo} (exit {p.returncode}):\n{p.stderr}\n"
            "(both backends must be compiled in: cargo build --all-features)")
    signed = [c for c in cases if c.kind == "signed"]
    p = subprocess.run(verify_argv(bin, ring_keys(keys),
                                   [str(tree / c.filename) for c in signed]),
                       capture_output=True, text=True)
    assert p.returncode == 0, f"portage-ima verify on the host failed (exit {p.returncode}):\n{p.stdout}{p.stderr}"
    report = verify_report(p.stdout)
    assert report is not None, f"portage-ima verify --json printed no usable JSON:\n{p.stdout!r}\n{p.stderr}"
    for c in cases:
        if c.kind == "tampered":
            with open(tree / c.filename, "ab") as f:
                f.write(b"\n")
    p = subprocess.run(verify_argv(bin, ring_keys(keys),
                                   [str(tree / c.filename) for c in cases]),
                       capture_output=True, text=True)
    after = verify_report(p.stdout)
    size_mb = sum(f.stat().st_size for f in tree.iterdir()) // 2**20 * 2 + 16
    image = work / "signed.ext4"
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-I", "256", "-L", "imatest", "-d", tree,
         image, f"{size_mb}M"])
    return image, report, after


def exec_order(keys: dict[str, Key]) -> list[Case]:
    """CASES, one wrong-key case per rogue key first: the kernel's "Request
    for unknown key" line is rate limited (10 per 5 s, not the
    printk_ratelimit sysctl), and each rogue key's id must reach dmesg."""
    first: dict[str, Case] = {}
    for c in CASES:
        if c.kind == "wrongkey":
            first.setdefault(signing_key(keys, c).name, c)
    return list(first.values()) + [c for c in CASES if c not in first.values()]


def cases_script(keys: dict[str, Key], expect_audit: int) -> str:
    """The /cases.sh the VM's /init sources: sign, tamper, verify, execute."""
    q = shlex.join
    lines = [f"EXPECT_AUDIT={expect_audit}", "", "# Copies on the tmpfs, owned by uid 1000."]
    vm_cases = [c for c in CASES if c.origin == "vm"]
    for c in vm_cases:
        if c.ftype == "elf":
            lines.append(q(["cp", "/bin/busybox", c.vm_path]) + " || die cp")
        else:
            lines.append(f"printf '%s' {shlex.quote(script_text(c))} >{c.vm_path} || die printf")
    lines.append(q(["own", *(c.vm_path for c in vm_cases)]))
    lines += [q(["chown", "0:0", c.vm_path]) for c in vm_cases if c.kind == "unappraised"]
    lines += ["", "# Sign inside the VM: the tool's fsetxattr against this kernel."]
    for (combo, keykind), group in sign_groups(vm_cases):
        h, _, be = group[0].combo_parts()
        k = signing_key(keys, group[0])
        vkey = dataclasses.replace(k, key=Path(f"/ima/keys/{k.key.name}"),
                                   cert_pem=Path(f"/ima/keys/{k.cert_pem.name}"))
        lines.append(q(["run_step", "sign", f"{combo}-{keykind}",
                        *sign_argv("portage-ima", vkey, h, be, [c.vm_path for c in group],
                                   forged_keyid(keys, group[0]))]))
    lines += ["", "# What the tool itself says about the signed files."]
    certs = [dataclasses.replace(k, cert_pem=Path(f"/ima/keys/{k.cert_pem.name}"))
             for k in ring_keys(keys)]
    signed = [c.vm_path for c in vm_cases if c.kind == "signed"]
    lines.append(q(["run_step", "verify", "vm", *verify_argv("portage-ima", certs, signed)]))
    lines += ["", "# Tamper after signing."]
    for c in CASES:
        if c.origin == "vm" and c.kind in ("tampered", "unappraised"):
            lines.append(q(["tamper", c.vm_path]))
    lines += ["", "# What the tool thinks of every file now."]
    lines.append(q(["run_step", "verify", "vm-after",
                    *verify_argv("portage-ima", certs, [c.vm_path for c in vm_cases])]))
    lines += ["", "# Execute everything."]
    for c in exec_order(keys):
        lines.append(q(["run_step", "exec", c.id, *c.argv]))
    lines += config_lines(keys)
    return "\n".join(lines) + "\n"


def config_lines(keys: dict[str, Key]) -> list[str]:
    """Config files under the FILE_CHECK rule: one signed, one hashed by
    portage-ima while root owns them (outside the rule, or the unsigned file
    could not even be opened to sign it), then given to CONFIG_OWNER; each
    is opened for writing (appended to) and read."""
    q = shlex.join
    k = keys["ring2048"]
    key, cert = f"/ima/keys/{k.key.name}", f"/ima/keys/{k.cert_pem.name}"
    lines = ["", "# Config files under the FILE_CHECK rule."]
    for kind, path in CONFIG_FILES.items():
        lines.append(f"printf '%s' {shlex.quote(CONFIG_TEXT)} >{path} || die printf")
        how = (["--key", key, "--cert", cert] if kind == "signed" else ["--digest-only"])
        lines.append(q(["run_step", "cfgmark", kind, "portage-ima", "sign", *how,
                        "--hash", "sha256", "--progress", "none", "--files", path]))
        lines.append(q(["chown", f"{CONFIG_OWNER}:{CONFIG_OWNER}", path]) + " || die chown")
        lines.append(q(["chmod", "0644", path]) + " || die chmod")
    for kind, path in CONFIG_FILES.items():
        lines.append(q(["run_step", "cfgread", kind, "cat", path]))
        append = f"printf '%s' {shlex.quote(CONFIG_APPENDED)} >>{path}"
        lines.append(q(["run_step", "cfgwrite", kind, "sh", "-c", append]))
        lines.append(q(["run_step", "cfgreread", kind, "cat", path]))
        lines.append(q(["run_step", "cfgverify", kind,
                        *verify_argv("portage-ima", [dataclasses.replace(k, cert_pem=Path(cert))],
                                     [path])]))
    # The control: given back to root (outside the rule), the signed file
    # opens for writing, so the refusal above was the appraise rule's.
    signed = CONFIG_FILES["signed"]
    lines.append(q(["chown", "0:0", signed]) + " || die chown")
    lines.append(q(["run_step", "cfgwrite", "signed-outside-rule", "sh", "-c",
                    f"printf '%s' {shlex.quote(CONFIG_APPENDED)} >>{signed}"]))
    return lines


def build_initramfs(work: Path, kernel: kernelvm.Kernel, bin: Path, keys: dict[str, Key],
                    has_disk: bool) -> Path:
    ir = kernelvm.Initramfs(work / "initramfs")
    ir.add_file(Path(__file__).with_name("init.sh"), "/init", 0o755)
    ir.add_file(kernelvm.BUSYBOX, "/bin/busybox", 0o755)
    keyctl = shutil.which("keyctl")
    if keyctl is None:
        raise Unavailable("keyctl not found: apt-get install keyutils")
    ir.add_binary(Path(keyctl), "/usr/bin/keyctl")
    ir.add_binary(bin, "/usr/bin/portage-ima")

    # Whatever of these the kernel built as modules (sha512 is one on 6.1; ecdsa may be).
    wanted = ["sha512_generic", "ecdsa_generic"] + (
        ["virtio_pci", "virtio_blk", "ext4"] if has_disk else [])
    try:
        mods = kernelvm.resolve_modules(kernel.moddir, wanted)
    except RuntimeError as e:
        if "ecdsa_generic" not in str(e):
            raise
        pytest.fail(f"{kernel.package} has no ECDSA (CONFIG_CRYPTO_ECDSA is not set, as in "
                    "Debian's 6.1 cloud kernels), which the ECDSA cases need: boot a kernel "
                    f"that has it (the default, newest one does): {e}", pytrace=False)
    for name, data in mods:
        ir.add_bytes(data, f"/lib/modules/{name}.ko")
    ir.add_bytes("".join(f"{n}\n" for n, _ in mods).encode(), "/modules.list")

    for name, k in keys.items():
        if name.startswith("ring"):
            ir.add_file(k.cert_der, f"/ima/certs/{k.name}.der", 0o644)
        ir.add_file(k.key, f"/ima/keys/{k.key.name}", 0o600)
        ir.add_file(k.cert_pem, f"/ima/keys/{k.cert_pem.name}", 0o644)
    ir.add_bytes(POLICY.encode(), "/ima/policy")
    if has_disk:
        ir.add_bytes(b"", "/ima/has-disk")
    expect_audit = sum(1 for c in CASES if c.denied)
    ir.add_bytes(cases_script(keys, expect_audit).encode(), "/cases.sh", 0o755)
    return ir.pack(work / "initramfs.cpio")


# --------------------------------------------------------------------------
# The boot (once per module)
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    boot: kernelvm.BootResult
    kernel: kernelvm.Kernel
    keys: dict[str, Key]
    host_verify: dict  # basename -> verify --json entry for ext4 files
    vm_verify: dict | None  # same, from inside the VM
    host_after: dict | None  # verify --json of every ext4 file after tampering
    vm_after: dict | None  # same, inside the VM

    def relevant(self, *needles: str) -> str:
        """Serial and dmesg lines mentioning any needle, for failure messages."""
        lines = [l for l in self.boot.serial.splitlines() if any(n in l for n in needles)]
        return "\n".join(lines[-30:]) or "(no line mentions " + ", ".join(needles) + ")"


@pytest.fixture(scope="module")
def vm(tmp_path_factory) -> Run:
    if os.geteuid() != 0:
        _unavailable("needs root: files are chowned to uid 1000 and get security.ima xattrs")
    bin = portage_ima_bin()
    if not os.access(bin, os.X_OK):
        _unavailable(f"{bin} not found: build it with `cargo build --all-features` "
                     "(or point PORTAGE_IMA_BIN at it)")
    try:
        kernelvm.ensure_host_tools()
        kernel = kernelvm.prepare_kernel()
        for tool in ("mke2fs", "openssl", "ldd"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} not found")
    except Unavailable as e:
        _unavailable(str(e))

    work = tmp_path_factory.mktemp("kernel")
    keydir = work / "keys"
    keydir.mkdir()
    keys = {f"{role}{bits}": make_key(keydir, f"{role}{bits}", bits)
            for role in ("ring", "rogue") for bits in BITS}
    keys |= {f"{role}{c}": make_key(keydir, f"{role}{c}", c)
             for role in ("ring", "rogue") for c in CURVES}
    image, host_verify, host_after = build_ext4(work, bin, keys)
    initrd = build_initramfs(work, kernel, bin, keys, has_disk=True)
    result = kernelvm.boot(kernel, initrd, [image], log=kernelvm.CACHE / "last-boot.log")
    print(f"\nkernel {kernel.package} {kernel.version}: boot took {result.seconds:.1f} s")

    rec = result.find("verify", "vm")
    vm_verify = verify_report(decode_out(rec)) if rec is not None else None
    rec = result.find("verify", "vm-after")
    vm_after = verify_report(decode_out(rec)) if rec is not None else None
    return Run(result, kernel, keys, host_verify, vm_verify, host_after, vm_after)


def decode_out(rec: kernelvm.Record) -> str:
    return base64.b64decode(rec.fields.get("out", "")).decode(errors="replace").strip()


def require_complete(vm: Run) -> None:
    b = vm.boot
    fatal = next((r for r in b.records if r.kind == "fatal"), None)
    if fatal is not None:
        reason = base64.b64decode(fatal.fields.get("reason", "")).decode(errors="replace")
        pytest.fail(f"the VM's /init gave up: {reason}\n"
                    f"--- serial tail ---\n{b.tail()}", pytrace=False)
    if b.timed_out or not b.completed():
        pytest.fail(f"the VM did not finish (timed out: {b.timed_out}, exit {b.returncode}, "
                    f"{b.seconds:.0f} s); the t= fields show where the time went\n"
                    f"--- serial tail ---\n{b.tail()}", pytrace=False)


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_vm_boots_and_loads_keys_and_policy(vm: Run):
    require_complete(vm)
    loaded = {r.id for r in vm.boot.records if r.kind == "key"}
    assert loaded == {f"ring{s}.der" for s in KEY_SIZES}, vm.relevant("@@ima-test key", "fatal")
    policy = vm.boot.find("policy", "-")
    assert policy is not None, vm.relevant("policy")
    # The kernel took the three rules and nothing else.
    rules = [l for l in vm.boot.dmesg if "type=1807" in l]
    assert len(rules) == 3 and all(
        ("fowner=1000" in l or f"fowner={CONFIG_OWNER}" in l) and "res=1" in l for l in rules
    ), "\n".join(rules)
    assert any("ima: policy update completed" in l for l in vm.boot.dmesg), vm.relevant("policy")


@pytest.mark.parametrize("signer", sorted({f"{c.combo}-{k}" for c in CASES if c.combo
                                           for k in ("ring", "rogue", "wrongcurve")
                                           if k != "wrongcurve" or c.kind == "wrongcurve"}))
def test_signing_inside_the_vm_succeeds(vm: Run, signer: str):
    require_complete(vm)
    rec = vm.boot.find("sign", signer)
    assert rec is not None, f"no sign result for {signer} in the serial output"
    assert rec.fields.get("rc") == "0", f"portage-ima sign in the VM failed (exit {rec.fields.get('rc')}):\n{decode_out(rec)}"


@pytest.mark.parametrize("case", [c for c in CASES if not c.denied], ids=lambda c: c.id)
def test_signed_file_executes(vm: Run, case: Case):
    require_complete(vm)
    rec = vm.boot.find("exec", case.id)
    assert rec is not None, f"no exec result for {case.id} in the serial output"
    out = decode_out(rec)
    assert rec.fields.get("rc") == "0" and out == case.expect_output, (
        f"{case.vm_path} should run (exit {rec.fields.get('rc')}, output {out!r})\n"
        f"--- kernel lines about it ---\n{vm.relevant(case.filename)}")


@pytest.mark.parametrize("case", [c for c in CASES if c.denied], ids=lambda c: c.id)
def test_bad_file_is_denied_by_ima(vm: Run, case: Case):
    require_complete(vm)
    rec = vm.boot.find("exec", case.id)
    assert rec is not None, f"no exec result for {case.id} in the serial output"
    out = decode_out(rec)
    assert rec.fields.get("rc") == "126" and "Permission denied" in out, (
        f"{case.vm_path} should be denied (exit {rec.fields.get('rc')}, output {out!r})\n"
        f"--- kernel lines about it ---\n{vm.relevant(case.filename)}")
    # The denial must be IMA's: its audit record for this very file and cause.
    audits = [l for l in vm.boot.dmesg if "type=1800" in l and f'name="{case.vm_path}"' in l]
    cause = DENIAL_CAUSE[case.kind]
    assert any(f"cause={cause}" in l and "op=appraise_data" in l for l in audits), (
        f"no IMA audit record (type=1800 cause={cause}) for {case.vm_path}; records for it:\n"
        + ("\n".join(audits) or "(none)"))
    if case.kind == "wrongkey":
        rogue = signing_key(vm.keys, case)
        assert any(f"id:{rogue.keyid}" in l for l in vm.boot.dmesg), (
            f"the kernel did not report the unknown key id:{rogue.keyid}\n{vm.relevant('unknown key')}")


def parse_measurement(line: str) -> dict:
    """An ascii_runtime_measurements line of the ima-sig template."""
    parts = line.split(" ")
    # pcr template-hash template d-ng path [sig]; the path may contain no spaces here.
    if len(parts) < 5 or parts[2] != "ima-sig":
        return {}
    algo, digest = parts[3].split(":", 1)
    return {"algo": algo, "digest": digest, "path": parts[4], "sig": parts[5] if len(parts) > 5 else ""}


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "signed"], ids=lambda c: c.id)
def test_measurement_list_matches_verify(vm: Run, case: Case):
    require_complete(vm)
    report = vm.host_verify if case.origin == "ext4" else vm.vm_verify
    assert report is not None, (f"no usable `portage-ima verify --json` output from the VM:\n"
                                f"{decode_out(vm.boot.find('verify', 'vm')) if vm.boot.find('verify', 'vm') else '(no line)'}")
    entry = report.get(case.filename)
    assert entry is not None, f"verify --json has no entry for {case.filename}"
    assert entry["status"] == "ok", f"verify says {entry['status']} for {case.filename}: {entry.get('detail')}"
    hash, size, _ = case.combo_parts()
    assert entry["algo"] == hash
    assert entry["keyid"].lower() == vm.keys[f"ring{size}"].keyid

    meas = [m for m in map(parse_measurement, vm.boot.measurements) if m.get("path") == case.vm_path]
    assert len(meas) == 1, f"expected one ima-sig measurement of {case.vm_path}, found:\n{meas}"
    m = meas[0]
    assert (m["algo"], m["digest"]) == (entry["algo"], entry["digest"].lower()), (
        f"kernel measured {m['algo']}:{m['digest']}, portage-ima verify reports "
        f"{entry['algo']}:{entry['digest']}")
    sig = bytes.fromhex(m["sig"])
    expected = bytes.fromhex(entry["signature"])
    # security.ima as the kernel found it: type 3, version 2, algo, key id, length (BE), signature.
    assert sig[:3] == bytes([3, 2, IMA_HASH_ALGO[hash]]), f"kernel's signature header {sig[:9].hex()}"
    assert sig[3:7].hex() == entry["keyid"].lower()
    if size in CURVES:
        # A DER ECDSA-Sig-Value (a SEQUENCE), its length varying with r and s.
        assert int.from_bytes(sig[7:9], "big") == len(expected) and expected[0] == 0x30
    else:
        assert int.from_bytes(sig[7:9], "big") == len(expected) == int(size) // 8
    assert sig[9:] == expected, "the kernel's signature bytes differ from portage-ima verify's"


# What `portage-ima verify` must say about each case: it agrees with the kernel.
VERIFY_STATUS = {"signed": "ok", "tampered": "bad-signature", "wrongkey": "unknown-key",
                 "wrongcurve": "bad-signature",
                 "unsigned": "unsigned", "unappraised": "unsigned"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_verify_agrees_with_the_kernel(vm: Run, case: Case):
    require_complete(vm)
    report = vm.host_after if case.origin == "ext4" else vm.vm_after
    assert report is not None, f"no usable `portage-ima verify --json` output for the {case.origin} files"
    entry = report.get(case.filename)
    assert entry is not None, f"verify --json has no entry for {case.filename}"
    assert entry["status"] == VERIFY_STATUS[case.kind], (
        f"portage-ima verify says {entry['status']} ({entry.get('detail')}) for {case.filename}, "
        f"the kernel {'denied' if case.denied else 'ran'} it")


# --------------------------------------------------------------------------
# Config files: why config_files defaults to "executable" and offers "hash"
# --------------------------------------------------------------------------


def config_step(vm: Run, step: str, kind: str) -> tuple[int, str]:
    rec = vm.boot.find(step, kind)
    assert rec is not None, vm.relevant(f"@@ima-test {step} {kind}", "fatal")
    return int(rec.fields["rc"]), decode_out(rec)


def test_signed_config_file_is_readable_but_cannot_be_opened_for_writing(vm: Run):
    """Under a FILE_CHECK appraise rule a file whose security.ima is a
    signature is read fine, and opening it for writing is refused (EACCES),
    so a signed /etc file could not be edited: the old default's flaw."""
    require_complete(vm)
    assert config_step(vm, "cfgmark", "signed")[0] == 0, vm.relevant("cfgmark")
    assert config_step(vm, "cfgread", "signed") == (0, CONFIG_TEXT.strip())
    rc, out = config_step(vm, "cfgwrite", "signed")
    assert rc != 0 and "Permission denied" in out, (rc, out)
    assert config_step(vm, "cfgreread", "signed") == (0, CONFIG_TEXT.strip())
    rc, out = config_step(vm, "cfgverify", "signed")
    doc = verify_report(out)
    assert rc == 0 and doc and doc["signed.conf"]["status"] == "ok", out
    # IMA refuses the write without an audit record (ima_main.c returns
    # EACCES for IMA_DIGSIG and MAY_WRITE, no integrity_audit_msg), so the
    # proof that the rule refused it is the control: outside the rule
    # (owned by root again) the same file opens for writing.
    assert not [l for l in vm.boot.dmesg if "type=1800" in l and "signed.conf" in l]
    assert config_step(vm, "cfgwrite", "signed-outside-rule") == (0, "")


def test_hashed_config_file_is_writable_and_the_kernel_updates_its_digest(vm: Run):
    """A digest-only security.ima (what config_files = "hash" writes) is
    appraised on open and accepted; the file can be opened for writing,
    written and read back, and on close the kernel stored the digest of the
    new content: portage-ima verify finds it matching, and it is the digest
    the host computes of that content."""
    require_complete(vm)
    assert config_step(vm, "cfgmark", "hashed")[0] == 0, vm.relevant("cfgmark")
    assert config_step(vm, "cfgread", "hashed") == (0, CONFIG_TEXT.strip())
    assert config_step(vm, "cfgwrite", "hashed") == (0, "")
    assert config_step(vm, "cfgreread", "hashed") == (0, (CONFIG_TEXT + CONFIG_APPENDED).strip())
    rc, out = config_step(vm, "cfgverify", "hashed")
    entry = (verify_report(out) or {}).get("hashed.conf")
    assert entry is not None, out
    # Outside a package a digest is reported digest-only (a failure), and
    # "matches" says the stored digest is the content's.
    assert rc == 1 and entry["status"] == "digest-only", entry
    assert "matches the content" in entry["detail"], entry
    new = hashlib.sha256((CONFIG_TEXT + CONFIG_APPENDED).encode()).hexdigest()
    assert (entry["algo"], entry["digest"]) == ("sha256", new), entry
    # No IMA denial for it.
    assert not [l for l in vm.boot.dmesg if "type=1800" in l and "hashed.conf" in l]
