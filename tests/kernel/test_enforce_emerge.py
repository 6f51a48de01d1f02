"""The proof the project promises: real emerges on a machine that enforces IMA appraisal.

One QEMU boot of Debian's cloud kernel with `ima_appraise=enforce
ima_template=ima-sig` on a root filesystem whose every file portage-ima
signed on the host (portagevm.py). Inside (portagevm-init.sh): the test
certificate goes on the `_ima` keyring, `portage-ima policy --measure`
writes /etc/ima/ima-policy for the VM's layout and the init loads it, as the
README tells users to. Then Portage, with the hook sourced from
/etc/portage/bashrc and FEATURES=userpriv, emerges in three merge modes:

1. PORTAGE_TMPDIR on the root filesystem (the merge renames): a new install
   of an executable with its shared library, vimlike (whose pkg_postinst and
   the old version's pkg_postrm run the freshly merged binary, like vim's help
   tags), a source build that compiles with tcc and runs the result in
   src_compile and src_test, then an upgrade of vimlike and of portage-ima
   itself, whose postinst runs the new portage-ima;
2. /var/tmp/portage on a tmpfs without FEATURES=xattr (fail-safe merges,
   issue 20): a new build of bash, the shell Portage runs its phases with,
   is stopped in preinst; nothing is merged and bash still runs;
3. the same tmpfs with FEATURES=xattr (the merge copies, with
   security.ima): the same bash upgrade, then vimlike, run by the new bash;
4. the tmpfs without FEATURES=xattr and allow_unsigned_window = true: doctor,
   `portage-ima policy` and the hook in preinst warn, and the old version's
   pkg_postrm that runs the new, still unsigned binary is denied; postinst
   signs it. portage-ima upgrades itself in this mode: the postinst hook
   runs the signed copy preinst kept in the build directory, signs the new binary, and the
   next emerge is signed by it.

Between 3 and 4, with `[keylime]` (issue 25): rollback-1 then rollback-2,
and version 1's binary with its signature copied back over version 2; the
measurement list and the policies the hook kept go to the host, where
Keylime's own code judges them.

The short boots of the same image (ima_appraise=log and fix, and the
binary package of issue 14) are in test_enforce_modes.py: under
tests/run-all's two workers they run beside this long one.

In modes 1 to 3 the kernel logs no IMA denial; after them an unsigned and
a one-byte-changed copy of a merged executable are denied (exit 126 and
IMA's audit record), so the policy really was enforcing.

The serial log is kept in tests/.cache/portagevm/last-boot.log, the emerge
timings in tests/.cache/portagevm/last-timings.txt.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess

import pytest

import kernelvm
import portagevm
from kernelvm import Unavailable
from portage_playground import portage_ima_bin
from portage_playground.venv import ensure_keylime_venv

KEYLIME_VALIDATE = kernelvm.REPO / "tests" / "e2e" / "keylime_validate.py"
#: The whole boot, on a loaded 2-core machine: well over twice a quiet run.
#: The fail-safe phases (issue 20) added three emerges: 1445 s were seen
#: under a load of 13 on 2 cores; the keylime phase (issue 25) about 260 s more.
BOOT_TIMEOUT = 2700
AUDIT_DENIAL = re.compile(r'type=1800 .*cause=(?P<cause>[\w-]+) .*name="(?P<name>[^"]*)".* res=0')


def _unavailable(reason: str):
    """Skip, or fail when CI is set: there the test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"the enforce-mode emerge test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


class Run:
    """What the VM reported, read from its serial console."""

    def __init__(self, boot: kernelvm.BootResult):
        self.boot = boot
        self.outputs: dict[str, list[str]] = {}
        self.cases: list[str] = []
        for raw in boot.serial.splitlines():
            line = raw.rstrip("\r")
            if line.startswith("@@out "):
                _, id, *rest = line.split(" ", 2)
                self.outputs.setdefault(id, []).append(rest[0] if rest else "")
            elif line.startswith("@@case "):
                self.cases.append(line[len("@@case "):])
        # dmesg split at the init's `@@phase NAME` markers.
        self.phases: dict[str, list[str]] = {"boot": []}
        current = "boot"
        for line in boot.dmesg:
            m = re.search(r"\] @@phase (\S+)$", line)
            if m:
                current = m.group(1)
                self.phases[current] = []
            else:
                self.phases[current].append(line)

    def record(self, kind: str, id: str) -> kernelvm.Record:
        rec = self.boot.find(kind, id)
        assert rec is not None, f"the VM printed no `{kind} {id}` line:\n{self.boot.tail()}"
        return rec

    def output(self, id: str) -> str:
        return "\n".join(self.outputs.get(id, []))

    def exec_out(self, kind: str, id: str) -> str:
        """The output of a `run_step KIND ID` line."""
        return base64.b64decode(self.record(kind, id).fields.get("out", "")).decode(errors="replace")

    def exec(self, id: str) -> tuple[int, str]:
        rec = self.record("exec", id)
        return int(rec.fields["rc"]), base64.b64decode(rec.fields.get("out", "")).decode(errors="replace")

    def case(self, pf: str, phase: str) -> str:
        """The line the ebuild's phase logged (rc=N out=...)."""
        found = [c for c in self.cases if c.startswith(f"test-ima/{pf} {phase} ")]
        assert len(found) == 1, f"expected one {phase} line of {pf}, got {found}:\n" + "\n".join(self.cases)
        return found[0]

    def denials(self, phase: str) -> list[tuple[str, str]]:
        """(file, cause) of every IMA denial the kernel logged in `phase`."""
        return [(m["name"], m["cause"]) for line in self.phases.get(phase, [])
                if (m := AUDIT_DENIAL.search(line))]

    def emerge_seconds(self) -> dict[str, float]:
        return {r.id: float(r.fields["end"]) - float(r.fields["start"])
                for r in self.boot.records if r.kind == "emerge"}


APPEND = "root=/dev/nvme0n1 rootfstype=ext4 rw init=/sbin/portage-vm-init ima_template=ima-sig"


def boot_vm(extra_append: str = "", log_name: str = "last-boot.log") -> Run:
    """Build (or reuse) the signed image and boot it once; fails on a boot
    that did not run to its end."""
    if os.geteuid() != 0:
        _unavailable("building the signed root filesystem needs root (security.ima, ownership)")
    bin = portage_ima_bin()
    if not os.access(bin, os.X_OK):
        pytest.fail(f"{bin} does not exist: run `cargo build --all-features` first", pytrace=False)
    try:
        kernelvm.ensure_host_tools()
        kernel = kernelvm.prepare_kernel()
        image, _ = portagevm.build_image(bin)
    except Unavailable as e:
        _unavailable(str(e))
    boot = kernelvm.boot(kernel, None, nvme_root=image, smp=2, timeout=BOOT_TIMEOUT,
                         extra_append=f"{APPEND} {extra_append}".strip(),
                         log=portagevm.CACHE / log_name)
    assert not boot.timed_out, f"the VM did not finish in {BOOT_TIMEOUT} s:\n{boot.tail()}"
    fatal = boot.find("fatal", "-")
    assert fatal is None, (f"the VM's init stopped: "
                           f"{base64.b64decode(fatal.fields['reason']).decode(errors='replace')}\n{boot.tail()}")
    assert boot.completed(), f"the VM stopped before the end:\n{boot.tail()}"
    return Run(boot)


@pytest.fixture(scope="module")
def vm() -> Run:
    run = boot_vm()
    timings = run.emerge_seconds()
    (portagevm.CACHE / "last-timings.txt").write_text(
        "".join(f"{id} {s:.1f}\n" for id, s in timings.items())
        + f"boot-to-poweroff {run.boot.seconds:.1f}\n")
    return run


def test_policy_generated_in_the_vm_is_loaded(vm: Run):
    text = base64.b64decode(vm.record("policy-text", "-").fields["text"]).decode()
    assert "appraise func=BPRM_CHECK uid=0 appraise_type=imasig" in text, text
    assert "appraise func=BPRM_CHECK fowner=0 appraise_type=imasig" in text, text
    assert "ima_appraise=enforce" in base64.b64decode(vm.record("kernel", "-").fields["cmdline"]).decode()
    vm.record("policy", "-")


@pytest.mark.parametrize("id", ["rootfs-install", "rootfs-upgrade", "tmpfs-xattr", "tmpfs-noxattr",
                                "after-self-upgrade"])
def test_emerge_succeeds(vm: Run, id: str):
    rec = vm.record("emerge", id)
    assert rec.fields["rc"] == "0", f"emerge {id} failed:\n{vm.output(id)}"


@pytest.mark.parametrize("phase", ["boot", "rootfs", "tmpfs-stop", "tmpfs-xattr", "keylime", "after-self-upgrade"])
def test_no_ima_denial_while_the_merge_keeps_signatures(vm: Run, phase: str):
    assert vm.denials(phase) == [], "\n".join(vm.phases[phase])


def test_new_install_executable_and_its_library_run(vm: Run):
    assert vm.exec("hello-1") == (0, "hello from libhello")
    # Both files were signed before the merge (preinst) and found valid after it.
    out = vm.output("rootfs-install")
    assert "test-ima/hellolib-1: signed 2 files before the merge" in out, out
    assert "test-ima/hellolib-1: signed 0 before the merge, 0 now, 2 already valid" in out, out


@pytest.mark.parametrize("old,new", [("vimlike-1", "vimlike-2"), ("vimlike-2", "vimlike-3")])
def test_upgrade_old_postrm_and_new_postinst_run_the_new_binary(vm: Run, old: str, new: str):
    """vim's case: the old version's pkg_postrm runs after the new files are
    merged and before the postinst hook; with the signature made in preinst
    (and kept by rename, or by FEATURES=xattr) the new binary runs there."""
    assert vm.case(old, "postrm").startswith(f"test-ima/{old} postrm rc=0 out=vimlike ran: postrm")
    assert vm.case(new, "postinst").startswith(f"test-ima/{new} postinst rc=0 out=vimlike ran: postinst")


def test_source_build_runs_what_it_compiled(vm: Run):
    out = vm.output("rootfs-install")
    assert "srcbuild self-test passed (uid 250)" in out, out  # src_test, as the portage user
    assert vm.exec("generated") == (
        0, "generated by a program compiled in the work directory, run by uid 250")  # src_compile
    assert vm.exec("gen")[0] == 0  # the installed program, run by root: signed by the hook


def test_portage_ima_upgrades_itself(vm: Run):
    """The hook at the start of postinst runs the portage-ima just merged
    (signed in preinst), and so does the package's own pkg_postinst."""
    out = vm.output("rootfs-upgrade")
    assert "test-ima/portage-ima-1: signed 1 file before the merge" in out, out
    assert re.search(r"test-ima/portage-ima-1: signed 0 before the merge, 0 now, 1 already valid", out), out
    assert vm.case("portage-ima-1", "postinst").startswith("test-ima/portage-ima-1 postinst rc=0 out=portage-ima ")
    assert vm.exec("portage-ima-1")[0] == 0


def test_doctor_passes_where_signatures_survive_the_merge(vm: Run):
    for id in ("rootfs", "tmpfs-xattr"):
        assert vm.record("doctor", id).fields["rc"] == "0", vm.output(f"doctor-{id}")
        assert not re.search(r"^(warn|fail) +premerge:", vm.output(f"doctor-{id}"), re.M), id


def test_failsafe_stops_a_new_bash_before_the_merge(vm: Run):
    """Without FEATURES=xattr the merge would leave the new bash live and
    unsigned: every later phase, and root's login shell, refused. The hook
    stops it in preinst and names the fix; nothing is merged."""
    rec = vm.record("emerge", "tmpfs-stop")
    out = vm.output("tmpfs-stop")
    assert rec.fields["rc"] != "0", out
    assert "stopping the merge of test-ima/bash-1 before any file goes live" in out, out
    assert "Portage copies and drops security.ima (FEATURES lacks xattr" in out, out
    assert "appraise func=BPRM_CHECK uid=0 appraise_type=imasig` appraises the programs root runs" in out, out
    assert 'FEATURES="${FEATURES} xattr"' in out, out
    assert re.search(r'PORTAGE_XATTR_EXCLUDE="[^"]*security\.evm[^"]*"', out), out
    assert not re.search(r'PORTAGE_XATTR_EXCLUDE="[^"]*security\.ima', out), out
    assert "portage-ima: the merge of test-ima/bash-1 is stopped before any file goes live" in out, out
    before = vm.exec_out("sha256", "bash-before")
    assert vm.exec_out("sha256", "bash-after") == before
    assert "No such file" in vm.exec_out("vdb", "bash-after")
    assert vm.exec("bash-after-stop") == (0, "bash runs")
    assert vm.exec("root-shell") == (0, "root shell runs")


def test_bash_upgrade_with_xattr_runs_the_next_phases(vm: Run):
    """The next emerge, with FEATURES=xattr: the same bash upgrade goes
    through signed, and the new bash runs its own postinst and vimlike's
    phases with no IMA denial (test_no_ima_denial_while_the_merge_keeps_signatures)."""
    out = vm.output("tmpfs-xattr")
    assert "test-ima/bash-1: signed 1 file before the merge" in out, out
    assert "Emerging (1 of 2) test-ima/bash-1" in out, out
    # The program running bash-1's pkg_postinst is the new bash.
    assert vm.case("bash-1", "postinst") == "test-ima/bash-1 postinst rc=0 out=portage-ima test bash-1"
    assert vm.exec("new-bash") == (0, "portage-ima test bash-1")


def test_tmpfs_without_xattr_was_warned_and_denies_the_old_postrm(vm: Run):
    """Without FEATURES=xattr the copying merge drops the preinst signature:
    doctor, `portage-ima policy` and the hook said so beforehand, and the old
    version's pkg_postrm that runs the new binary is denied by the kernel.
    The postinst hook then signs it, and the new postinst runs it."""
    doctor = vm.output("doctor-tmpfs-noxattr")
    assert re.search(r"warn +premerge: signing before the merge cannot work .*pkg_postrm that runs "
                     r"them is denied; an upgrade of portage-ima itself", doctor), doctor
    policy = vm.output("policy-tmpfs-noxattr")
    assert "WARNING: PORTAGE_TMPDIR is on another filesystem" in policy, policy
    out = vm.output("tmpfs-noxattr")
    assert "merging test-ima/vimlike-4 anyway (allow_unsigned_window = true)" in out, out
    assert "portage-ima: not signing before the merge: " in out, out
    assert "Portage copies and drops security.ima (FEATURES lacks xattr" in out, out
    assert vm.case("vimlike-3", "postrm").startswith("test-ima/vimlike-3 postrm rc=126 "), vm.cases
    # vimlike is merged first; portage-ima's denials follow (see below).
    assert out.index("Emerging (1 of 2) test-ima/vimlike-4") < out.index("(2 of 2) test-ima/portage-ima-2")
    assert vm.denials("tmpfs-noxattr")[0] == ("/usr/bin/vimlike", "IMA-signature-required")
    assert vm.case("vimlike-4", "postinst").startswith("test-ima/vimlike-4 postinst rc=0 ")
    assert re.search(r"test-ima/vimlike-4: signed 0 before the merge, 1 now", out), out
    assert vm.exec("vimlike-4") == (0, "vimlike ran: after-the-emerge")


def test_policy_was_enforcing(vm: Run):
    """Unsigned and one-byte-changed copies of a merged program are refused
    with IMA's own audit record; the changed copy, owned by root, is refused
    to the portage user too: the default policy appraises root's programs
    whoever runs them (fowner=0, which covers setuid-root ones; issue 20)."""
    assert vm.exec("unsigned")[0] == 126
    assert vm.exec("changed")[0] == 126
    rc, out = vm.exec("changed-as-user")
    assert rc != 0 and "Permission denied" in out, out
    assert vm.denials("enforcing") == [
        ("/usr/local/bin/hello-unsigned", "IMA-signature-required"),
        ("/usr/local/bin/hello-changed", "invalid-signature"),
        ("/usr/local/bin/hello-changed", "invalid-signature"),
    ]
    # root-exec appraises programs, not the libraries they map.
    assert vm.exec("changed-lib") == (0, "hello from libhello")
    verify = vm.record("verify", "merged")
    assert verify.fields["rc"] == "0", base64.b64decode(verify.fields["out"]).decode()


def test_self_upgrade_without_xattr_keeps_signing(vm: Run):
    """portage-ima upgraded through a copying merge that drops security.ima
    (allowed by allow_unsigned_window): its new binary is unsigned after the
    merge, so preinst kept a signed copy in the build directory (not ${T},
    which userpriv hands to the portage user), and the postinst hook runs
    that copy, which signs the new binary. Every merged file verifies, and
    the next emerge is signed by the new portage-ima."""
    out = vm.output("tmpfs-noxattr")
    assert ("this merge replaces /usr/bin/portage-ima and drops its signature: the postinst hook "
            "runs the new one from /var/tmp/portage/test-ima/portage-ima-2/portage-ima.self "
            "(signed) instead") in out, out
    assert re.search(r"test-ima/portage-ima-2: signed 0 before the merge, 1 now", out), out
    assert vm.case("portage-ima-2", "postinst").startswith("test-ima/portage-ima-2 postinst rc=0 out=portage-ima ")
    assert vm.exec("portage-ima-2")[0] == 0
    # Only the old vimlike's pkg_postrm (the window the admin allowed).
    assert vm.denials("tmpfs-noxattr") == [("/usr/bin/vimlike", "IMA-signature-required")]
    after = vm.output("after-self-upgrade")
    assert vm.record("emerge", "after-self-upgrade").fields["rc"] == "0", after
    assert re.search(r"test-ima/hellolib-2: signed 0 before the merge, 2 now", after), after
    assert vm.exec("hello-2") == (0, "hello from libhello")
    verify = vm.record("verify", "self-upgrade")
    assert verify.fields["rc"] == "0", base64.b64decode(verify.fields["out"]).decode()


def _gunzipped(run: Run, kind: str, id: str) -> str:
    return gzip.decompress(base64.b64decode(run.record(kind, id).fields["data"])).decode()


def _keylime_verdict(policy: str, lines: list[str], tmp_path) -> dict:
    """Keylime's own attestation code (tests/e2e/keylime_validate.py, in the
    Keylime venv) on a measurement list and a policy."""
    (tmp_path / "policy.json").write_text(policy)
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    venv = ensure_keylime_venv()
    r = subprocess.run([str(venv / "bin" / "python"), str(KEYLIME_VALIDATE), str(tmp_path / "policy.json"),
                        str(tmp_path / "list.txt")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_keylime_catches_the_rollback_that_appraisal_accepts(vm: Run, tmp_path):
    """Issue 25, on the enforcing kernel with ima_template=ima-sig: the hook
    keeps the Keylime policy through rollback-1 and rollback-2; rollback-1's
    binary, with its valid signature, copied back over rollback-2 runs
    (appraisal accepts it, no denial). Keylime's validation of the VM's real
    measurement list against the policy the hook kept (digests mode) rejects
    that entry and names the file; with keys mode's policy it is accepted,
    which is why digests is the default."""
    for id in ("keylime-v1", "keylime-v2"):
        assert vm.record("emerge", id).fields["rc"] == "0", vm.output(id)
    assert "keylime policy /var/lib/portage-ima/keylime-policy.json" in vm.output("keylime-v2")
    assert vm.exec("rollback-2") == (0, "rollback ran")
    assert vm.exec("rollback-1-back") == (0, "rollback ran")
    assert vm.denials("keylime") == [], "\n".join(vm.phases["keylime"])

    measured = _gunzipped(vm, "keylime-list", "-").splitlines()
    rollback = [line for line in measured if line.split(" ")[4:5] == ["/usr/bin/rollback"]]
    assert len(rollback) == 2 and all(line.split(" ")[2] == "ima-sig" for line in rollback), rollback
    newer, older = rollback  # measured in this order: version 2 ran, then version 1
    digests = _gunzipped(vm, "keylime-policy", "digests")
    keys = _gunzipped(vm, "keylime-policy", "keys")
    assert json.loads(digests)["verification-keys"] == ""
    assert json.loads(keys)["digests"] == {} and json.loads(keys)["verification-keys"]

    assert _keylime_verdict(digests, [newer], tmp_path)["accepted"]
    verdict = _keylime_verdict(digests, [older], tmp_path)
    assert not verdict["accepted"]
    assert verdict["failing"] == {"/usr/bin/rollback": ["ima.validation.ima-ng.runtime_policy_hash"]}, verdict
    # The whole real list: the rollback is among what Keylime rejects.
    whole = _keylime_verdict(digests, measured, tmp_path)
    assert "/usr/bin/rollback" in whole["failing"], whole
    # keys mode: the signature is valid, so Keylime accepts the old binary.
    assert _keylime_verdict(keys, [newer, older], tmp_path) == {"accepted": True, "entries": 2, "failing": {}}
    assert "/usr/bin/rollback" not in _keylime_verdict(keys, measured, tmp_path)["failing"]

    # `portage-ima keylime check` in the VM names it, with its package.
    check = vm.record("keylime", "check")
    rc, out = int(check.fields["rc"]), base64.b64decode(check.fields["out"]).decode()
    assert rc == 1, out
    assert re.search(r"^portage-ima: /usr/bin/rollback: \(test-ima/rollback-2\) digest not in the policy", out, re.M), out
