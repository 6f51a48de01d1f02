"""Short boots of the enforce-mode image (portagevm.py), each on its own.

They were in test_enforce_emerge.py; in a file of their own tests/run-all's
two pytest-xdist workers (`--dist loadfile`, tests/conftest.py) run them
beside that file's long emerge boot instead of after it.

- `ima_appraise=log` and `ima_appraise=fix` (`portagevm.case=appraise-mode`):
  the README's way into enforce mode and out of trouble. Serial logs:
  tests/.cache/portagevm/last-boot-{log,fix}.log.
- `portagevm.case=binpkg` (issue 14), enforcing: a binary package built and
  signed on the host installs and runs in a VM with no key. Serial log:
  tests/.cache/portagevm/last-boot-binpkg.log.
"""

from __future__ import annotations

import base64
import re

import pytest

from test_enforce_emerge import boot_vm


@pytest.mark.parametrize("mode", ["log", "fix"])
def test_log_and_fix_modes_run_unsigned_programs_and_log_them(mode: str):
    """The README's way into enforce mode and out of trouble: booted with
    ima_appraise=log or fix (and the same policy), an unsigned program runs,
    and the kernel logs the denial enforce mode would make, so the admin
    sees what to sign. fix also writes a digest (not a signature) into the
    file's security.ima, which a signature rule never accepts: the second
    run is logged again."""
    run = boot_vm(f"ima_appraise={mode} portagevm.case=appraise-mode", f"last-boot-{mode}.log")
    assert run.exec("unsigned")[0] == 0
    assert run.exec("unsigned-again")[0] == 0
    xattr = base64.b64decode(run.record("xattr", "unsigned").fields["out"]).decode()
    denials = run.denials("appraise-mode")
    if mode == "log":
        assert "security.ima=" not in xattr, xattr
    else:
        assert re.search(r"security\.ima=0x0404[0-9a-f]{64}", xattr), xattr  # ima-ng, sha256
    # Both runs: fix's digest is no signature either.
    assert denials == [("/usr/local/bin/true-unsigned", "IMA-signature-required")] * 2, denials


def test_binary_package_signed_on_the_host_installs_and_runs_without_a_key():
    """Issue 14 on an enforcing kernel: a gpkg built and signed on the host
    (portagevm._add_binpkg) is installed with `emerge --usepkgonly` by a VM
    that has the certificate only (mode = "verify", the key file removed).
    No IMA denial while Portage and the hook run, the executable carries the
    host's signature, root runs it, and `portage-ima verify` says ok."""
    run = boot_vm("portagevm.case=binpkg", "last-boot-binpkg.log")
    assert "ima_appraise=enforce" in base64.b64decode(run.record("kernel", "-").fields["cmdline"]).decode()
    run.record("policy", "-")
    keys = base64.b64decode(run.record("keys", "-").fields["out"]).decode().split()
    # Certificates only (the audit boot's second key is in the image too).
    assert "ima.cert.pem" in keys and not [k for k in keys if k.endswith(".key.pem")], keys
    out = run.output("binpkg")
    assert run.record("emerge", "binpkg").fields["rc"] == "0", out
    assert ">>> Emerging binary (1 of 1) test-ima/binhello-1" in out, out
    assert run.denials("binpkg") == [], "\n".join(run.phases["binpkg"])
    assert run.exec("binhello") == (0, "binhello from the binary host")
    assert run.denials("binpkg-run") == [], "\n".join(run.phases["binpkg-run"])
    live = base64.b64decode(run.record("xattr", "binhello").fields["out"]).decode()
    host = base64.b64decode(run.record("xattr", "host").fields["out"]).decode().strip()
    assert re.fullmatch(r"[0-9a-f]{100,}", host), host
    assert f"security.ima=0x{host}" in live, (live, host)
    # The hook applied the package's IMA_SIGNATURES in preinst (gpkg keeps no
    # xattrs) and found it intact after the merge; the key is the host's.
    key_id = host[6:14]  # signature v2: type, version, hash algorithm, key id
    assert (f"binhello-1: before the merge: 0 carried signatures kept, 1 applied from "
            f"IMA_SIGNATURES (key id {key_id}: 1), 0 without a trusted signature") in out, out
    assert "binhello-1: merged: 1 carried signatures kept, 0 applied" in out, out
    assert "binhello-1: merged: " in out and out.count(", 0 without a trusted signature") == 2, out
    verify = run.record("verify", "binhello")
    verify_out = base64.b64decode(verify.fields["out"]).decode()
    assert verify.fields["rc"] == "0", verify_out
    assert re.search(r"^ok +/usr/bin/binhello", verify_out, re.M), verify_out
