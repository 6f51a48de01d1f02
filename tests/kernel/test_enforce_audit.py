"""Issue #11's proof: `policy --check` and `audit` against the kernel's own denials.

One short boot of the enforce-mode VM (test_enforce_emerge.py's image and
kernel, `portagevm.case=audit`): under the policy `portage-ima policy`
generated, Portage installs test-ima/auditcase-1 (three scripts, signed by
the hook), and the init then spoils them the ways an admin meets:

- audit-unsigned: its security.ima removed (content as installed);
- audit-modified: a line appended, the old signature kept;
- audit-foreign: signed with a second key whose certificate is not on the
  `_ima` keyring;
- /usr/local/bin/audit-local: a script no package installed.

`policy --check` (before any of them runs) must list exactly these four,
and the kernel must deny exactly these four when root runs them (exit 126
and IMA's type=1800 record). `audit` on the VM's own kernel log and vdb
classifies each, `audit --fix` signs only the unsigned one, which then
runs; the others stay denied. Serial log: tests/.cache/portagevm/last-boot-audit.log.
"""

from __future__ import annotations

import base64
import json

import pytest

from test_enforce_emerge import Run, boot_vm

SPOILT = {
    "/usr/bin/audit-unsigned": "unsigned-pristine",
    "/usr/bin/audit-modified": "modified",
    "/usr/bin/audit-foreign": "foreign-key",
    "/usr/local/bin/audit-local": "not-owned",
}
NAME = {path: path.rsplit("/", 1)[1] for path in SPOILT}


@pytest.fixture(scope="module")
def vm() -> Run:
    return boot_vm("portagevm.case=audit", "last-boot-audit.log")


def json_output(vm: Run, kind: str, id: str) -> tuple[int, dict]:
    rec = vm.record(kind, id)
    out = base64.b64decode(rec.fields["out"]).decode()
    err = base64.b64decode(rec.fields.get("err", "")).decode(errors="replace")
    try:
        return int(rec.fields["rc"]), json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"`{kind} {id}` printed no JSON (exit {rec.fields['rc']}):\n{out}\n{err}")


def test_the_package_was_installed(vm: Run):
    rec = vm.record("emerge", "audit-install")
    assert rec.fields["rc"] == "0", vm.output("audit-install")


def test_kernel_denies_each_spoilt_file(vm: Run):
    for path in SPOILT:
        rc, out = vm.exec(NAME[path])
        assert rc == 126, (path, rc, out)
    assert sorted(vm.denials("audit-denials")) == sorted([
        ("/usr/bin/audit-unsigned", "IMA-signature-required"),
        ("/usr/bin/audit-modified", "invalid-signature"),
        ("/usr/bin/audit-foreign", "invalid-signature"),
        ("/usr/local/bin/audit-local", "IMA-signature-required"),
    ]), "\n".join(vm.phases["audit-denials"])
    # Nothing else was denied in this boot (the emerge included).
    assert vm.denials("boot") == [] and vm.denials("audit-install") == []


def test_policy_check_lists_exactly_what_the_kernel_denies(vm: Run):
    rc, report = json_output(vm, "check", "before")
    assert rc == 1 and report["safe"] is False, report
    denied = {d["path"]: d for d in report["denied"]}
    assert set(denied) == {name for name, _ in vm.denials("audit-denials")}, report
    assert all(d["certain"] for d in denied.values()), report
    assert {p: d["status"] for p, d in denied.items()} == {
        "/usr/bin/audit-unsigned": "unsigned",
        "/usr/bin/audit-modified": "bad-signature",
        "/usr/bin/audit-foreign": "unknown-key",
        "/usr/local/bin/audit-local": "unsigned",
    }, report
    owners = {d["path"]: d.get("package") for d in report["denied"]}
    assert owners == {p: (None if p.startswith("/usr/local/") else "test-ima/auditcase-1") for p in SPOILT}
    # Everything else it covers ran or would run: the emerge (bash, python,
    # Portage's helpers, the hook) executed as root under this policy.
    assert report["summary"]["covered"] > 100, report


def test_audit_classifies_each_denial_from_the_kernel_log(vm: Run):
    rc, report = json_output(vm, "audit", "report")
    assert rc == 1, report
    assert report["keyring"] == "_ima", report  # the kernel's keyring was read
    findings = {f["path"]: f for f in report["files"]}
    assert {p: f["class"] for p, f in findings.items()} == SPOILT, report
    for path in SPOILT:
        assert findings[path]["denials"] == 1, findings[path]
        assert "fixed" not in findings[path], findings[path]
    for path in ("/usr/bin/audit-unsigned", "/usr/bin/audit-modified", "/usr/bin/audit-foreign"):
        assert findings[path]["package"] == "test-ima/auditcase-1", findings[path]
    assert "package" not in findings["/usr/local/bin/audit-local"]


def test_audit_fix_signs_only_the_pristine_file(vm: Run):
    rc, report = json_output(vm, "audit", "fix")
    findings = {f["path"]: f for f in report["files"]}
    assert findings["/usr/bin/audit-unsigned"]["class"] == "valid", report
    assert findings["/usr/bin/audit-unsigned"]["fixed"] == "signed", report
    for path in ("/usr/bin/audit-modified", "/usr/bin/audit-foreign", "/usr/local/bin/audit-local"):
        assert findings[path]["class"] == SPOILT[path] and "fixed" not in findings[path], findings[path]
    assert rc == 1, report  # the other three still need the admin


def test_after_the_fix_only_the_signed_file_runs(vm: Run):
    assert vm.exec("audit-unsigned-again") == (0, "audit-unsigned ran")
    for path in ("/usr/bin/audit-modified", "/usr/bin/audit-foreign", "/usr/local/bin/audit-local"):
        assert vm.exec(NAME[path] + "-again")[0] == 126, path
    assert sorted(name for name, _ in vm.denials("audit-after")) == [
        "/usr/bin/audit-foreign", "/usr/bin/audit-modified", "/usr/local/bin/audit-local"]
    rc, report = json_output(vm, "check", "after")
    assert sorted(d["path"] for d in report["denied"]) == [
        "/usr/bin/audit-foreign", "/usr/bin/audit-modified", "/usr/local/bin/audit-local"], report
