"""The default policy against setuid programs, and the observe first boot,
on a real kernel (Debian's 6.12 cloud kernel under QEMU, the initramfs of
test_policy_load.py). Two boots of a few seconds each:

1. `setuid`: the policy `portage-ima policy` writes by default (root-exec)
   is loaded, with one probe rule appended, `audit func=CREDS_CHECK
   euid=0`. An unsigned setuid-root copy of busybox run by uid 250 is
   denied by IMA (type=1800, IMA-signature-required) and the signed original
   runs; a signed setuid-root copy runs too, and the probe records nothing
   for it: the kernel matches CREDS_CHECK before it applies the setuid bit,
   so `euid=0` cannot be the setuid rule (issue 20), `fowner=0` is.
2. `observe`: `portage-ima policy --observe` is loaded; an unsigned program
   run by root and an unsigned setuid-root program run by uid 250 both run
   (nothing is appraised), the kernel records them (type=1805 from the audit
   rules, ima-sig measurements), and `portage-ima audit` inside the VM, on
   that boot's kernel log and measurement list, lists exactly those two as
   what enforcing would refuse; once they are signed, it says there is none.

Serial logs: tests/.cache/kernel/setuid-{setuid,observe}.log.
"""

from __future__ import annotations

import json
import os

import pytest

import kernelvm
from test_policy_load import (SIGN_BUSYBOX, VM_ROOT_SETUP, _unavailable, build_initramfs,
                              complete, decode, env)  # noqa: F401 (env is a fixture)

PIMA = "portage-ima --config /ima/ima.toml"
GEN = f"{PIMA} policy --root /proot"
SIGN_SELF = f"run_step sign self {PIMA} sign --files /usr/bin/portage-ima\n"
AS_PORTAGE = "su -s /bin/sh portage -c"


def setuid_cases() -> str:
    return "\n".join([
        SIGN_BUSYBOX + VM_ROOT_SETUP,
        f"run_step gen policy {GEN} --output /mnt/t/enforce.policy",
        "echo 'audit func=CREDS_CHECK euid=0' >>/mnt/t/enforce.policy",
        "cp /bin/busybox /mnt/t/busybox.setuid-unsigned && chmod 4755 /mnt/t/busybox.setuid-unsigned"
        " || die 'cp setuid'",
        "cp /bin/busybox /mnt/t/busybox.setuid-signed || die 'cp signed'",
        f"run_step sign setuid {PIMA} sign --files /mnt/t/busybox.setuid-signed",
        "chmod 4755 /mnt/t/busybox.setuid-signed",
        "run_step exec before su -s /bin/sh portage -c '/mnt/t/busybox.setuid-unsigned true'",
        "load enforce /mnt/t/enforce.policy",
        f"run_step exec user-setuid-unsigned {AS_PORTAGE} '/mnt/t/busybox.setuid-unsigned true'",
        f"run_step exec user-original {AS_PORTAGE} '/bin/busybox true'",
        f"run_step exec user-setuid-signed {AS_PORTAGE} '/mnt/t/busybox.setuid-signed id -u'",
        "run_step exec root-unsigned /mnt/t/busybox.setuid-unsigned true",
        "sleep 0.5",
    ]) + "\n"


def observe_cases() -> str:
    audit = (f"{PIMA} audit --log /mnt/t/kernel.log --measurements /mnt/t/measurements")
    snapshot = ("dmesg >/mnt/t/kernel.log; "
                "cat /sys/kernel/security/ima/ascii_runtime_measurements >/mnt/t/measurements")
    return "\n".join([
        SIGN_BUSYBOX + SIGN_SELF + VM_ROOT_SETUP,
        "mkdir -p /var/db/pkg",
        f"run_step gen observe {GEN} --observe --output /mnt/t/observe.policy",
        "cp /bin/busybox /mnt/t/busybox.root-prog && chmod 755 /mnt/t/busybox.root-prog || die 'cp'",
        "cp /bin/busybox /mnt/t/busybox.setuid-prog && chmod 4755 /mnt/t/busybox.setuid-prog || die 'cp'",
        "load observe /mnt/t/observe.policy",
        "run_step exec root-unsigned /mnt/t/busybox.root-prog true",
        f"run_step exec user-setuid-unsigned {AS_PORTAGE} '/mnt/t/busybox.setuid-prog true'",
        "run_step exec root-signed /bin/busybox true",
        snapshot,
        "run_step meas list cat /mnt/t/measurements",
        f"run_step audit before {audit}",
        f"run_step audit json {audit} --json",
        f"run_step sign fix {PIMA} sign --files /mnt/t/busybox.root-prog /mnt/t/busybox.setuid-prog",
        "chmod 4755 /mnt/t/busybox.setuid-prog",
        snapshot,
        f"run_step audit after {audit}",
        "sleep 0.5",
    ]) + "\n"


@pytest.fixture(scope="module")
def boots(env):
    bin, kernel, work, key = env
    out = {}
    for name, cases in (("setuid", setuid_cases()), ("observe", observe_cases())):
        initrd = build_initramfs(work / name, kernel, bin, key, cases, {})
        out[name] = kernelvm.boot(kernel, initrd, timeout=180,
                                  extra_append="audit_backlog_limit=8192",
                                  log=kernelvm.CACHE / f"setuid-{name}.log")
        print(f"\n{name} boot: {out[name].seconds:.1f} s")
    return out


def rc(b: kernelvm.BootResult, kind: str, id: str) -> int:
    rec = b.find(kind, id)
    assert rec is not None, f"no {kind} {id}:\n{b.tail()}"
    return int(rec.fields["rc"])


def test_unsigned_setuid_root_program_is_denied_to_a_user(boots):
    b = boots["setuid"]
    complete(b)
    assert rc(b, "gen", "policy") == 0, decode(b.find("gen", "policy"))
    assert rc(b, "load", "enforce") == 0, decode(b.find("load", "enforce"))
    assert rc(b, "exec", "before") == 0, decode(b.find("exec", "before"))
    # Under the default policy: denied by IMA, for this very file.
    assert rc(b, "exec", "user-setuid-unsigned") != 0
    assert "Permission denied" in decode(b.find("exec", "user-setuid-unsigned"))
    denials = [l for l in b.dmesg if "type=1800" in l and "res=0" in l]
    assert any('name="/mnt/t/busybox.setuid-unsigned"' in l and "IMA-signature-required" in l
               for l in denials), "\n".join(denials)
    # The signed original, and a signed setuid-root copy, run for the user.
    assert rc(b, "exec", "user-original") == 0, decode(b.find("exec", "user-original"))
    assert rc(b, "exec", "user-setuid-signed") == 0, decode(b.find("exec", "user-setuid-signed"))
    assert rc(b, "exec", "root-unsigned") != 0


def test_creds_check_euid_does_not_see_the_setuid_bit(boots):
    b = boots["setuid"]
    complete(b)
    rules = [l for l in b.dmesg if "type=1805" in l]
    # The probe works (root's own execs have euid 0) ...
    assert any('file="/bin/busybox"' in l for l in rules), "\n".join(b.dmesg[-30:])
    # ... but the signed setuid-root copy, run only by uid 250, never matched it.
    assert not any("/mnt/t/busybox.setuid-signed" in l for l in rules), "\n".join(rules)


def test_observe_boot_runs_everything_and_audit_lists_what_enforce_would_refuse(boots):
    b = boots["observe"]
    complete(b)
    assert rc(b, "gen", "observe") == 0, decode(b.find("gen", "observe"))
    assert rc(b, "load", "observe") == 0, decode(b.find("load", "observe"))
    assert not [l for l in b.dmesg if "type=1807" in l and "res=0" in l]
    for id in ("root-unsigned", "user-setuid-unsigned", "root-signed"):
        assert rc(b, "exec", id) == 0, decode(b.find("exec", id))
    assert not [l for l in b.dmesg if "type=1800" in l and "res=0" in l]
    rules = [l for l in b.dmesg if "type=1805" in l]
    for path in ("/mnt/t/busybox.root-prog", "/mnt/t/busybox.setuid-prog", "/bin/busybox"):
        assert any(f'file="{path}"' in l for l in rules), "\n".join(rules)
    # ima-sig entries: the unsigned ones without a signature.
    listed = decode(b.find("meas", "list")).splitlines()
    meas = {l.split()[4]: l.split()[5:] for l in listed if " ima-sig " in l}
    assert meas.get("/mnt/t/busybox.root-prog") == [], meas
    assert meas.get("/bin/busybox"), meas

    text = decode(b.find("audit", "before"))
    assert rc(b, "audit", "before") == 1, text
    refused = sorted(l.split()[2].rstrip(":") for l in text.splitlines()
                     if l.startswith("  would refuse "))
    assert refused == ["/mnt/t/busybox.root-prog", "/mnt/t/busybox.setuid-prog"], text
    assert "enforcing would refuse 2 of the" in text, text
    report = json.loads(decode(b.find("audit", "json")))
    assert sorted(report["enforce_would_refuse"]) == refused, report

    assert rc(b, "sign", "fix") == 0, decode(b.find("sign", "fix"))
    after = decode(b.find("audit", "after"))
    assert "enforcing would refuse none of the" in after, after
