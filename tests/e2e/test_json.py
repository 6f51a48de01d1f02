"""Every command's `--json` against the JSON Schema kept in docs/json/
(docs/json.md says the conventions): `sign`, `verify`, `audit`,
`policy --check` and `doctor`, on a root a real emerge wrote, with files in
several states so that optional fields appear and disappear. The schemas
forbid unknown fields and `null`; the conventions every document shares
(a `version` first, kebab-case status names, a `summary` object) are
checked here once more over all of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
from test_system import System

from portage_playground import CATEGORY

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "json"
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def validate(name: str, text: str) -> dict:
    """The document `text`, checked against docs/json/NAME.schema.json and
    the shared conventions; returns it."""
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = json.loads(text)
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert next(iter(doc)) == "version" and doc["version"] == 1, (name, list(doc)[:3])
    assert isinstance(doc.get("summary"), dict), name

    def walk(value, where):
        assert value is not None, f"{name}: null at {where}"
        if isinstance(value, dict):
            for k, v in value.items():
                if k in ("status", "outcome", "class"):
                    assert KEBAB.match(v), f"{name}: {where}.{k} = {v!r}"
                walk(v, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(doc, "$")
    return doc


def test_every_command_json_matches_its_schema(pg, hook_bin, tmp_path):
    pg.write_bashrc(snippet=False)  # merged unsigned, then signed by `sign`
    atom = pg.add_ebuild("jsonpkg")
    pg.emerge(atom).check()
    system = System(pg, hook_bin)
    pkg = f"{CATEGORY}/jsonpkg-1"
    program = pg.ed("/usr/bin/jsonpkg")
    data = pg.ed("/usr/share/jsonpkg/data.txt")

    dry = system.run("sign", "--json", "--dry-run", pkg)
    doc = validate("sign", dry.stdout)
    assert doc["summary"]["would-sign"] > 0 and pkg in doc["packages"], dry
    signed = system.run("sign", "--json", pkg)
    doc = validate("sign", signed.stdout)
    assert doc["summary"]["signed"] > 0 and doc["summary"]["failed"] == 0, signed
    again = system.run("sign", "--json", "--files", str(pg.live(program)))
    doc = validate("sign", again.stdout)
    assert doc["summary"]["already-valid"] == 1 and "packages" not in doc, again

    pg.live(data).write_text("changed since the merge\n")
    r = system.run("verify", "--json", pkg)
    doc = validate("verify", r.stdout)
    statuses = {f["path"]: f for f in doc["files"]}  # live paths
    changed, signed_program = statuses[str(pg.live(data))], statuses[str(pg.live(program))]
    assert changed["status"] == "modified" and changed["detail"], doc
    assert signed_program["status"] == "ok" and signed_program["keyid"], doc
    assert doc["packages"][pkg]["modified"] == 1, doc
    unsigned = tmp_path / "unsigned"
    unsigned.write_text("no security.ima\n")
    r = system.run("verify", "--json", "--files", str(pg.live(program)), str(unsigned))
    doc = validate("verify", r.stdout)
    assert "packages" not in doc and doc["summary"] == {"ok": 1, "unsigned": 1}, r
    bare = next(f for f in doc["files"] if f["status"] == "unsigned")
    assert not {"keyid", "signature", "package"} & set(bare), bare

    log = tmp_path / "kmsg.log"
    local = pg.live(pg.ed("/usr/local/bin/json-local"))
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text("#!/bin/sh\n")
    local.chmod(0o755)
    log.write_text(
        "".join(
            f"audit: type=1800 audit(1795976846.{n:03d}:{n}): pid=1 uid=0 auid=0 ses=1 "
            f'subj=unconfined op=appraise_data cause=IMA-signature-required comm="sh" '
            f'name="{path}" dev="vda" ino=4 res=0 errno=0\n'
            for n, path in enumerate([program, data, pg.ed("/usr/local/bin/json-local")], 1)
        )
        + "this is not an audit line\n"
    )
    r = system.run("audit", "--log", str(log), "--json")
    doc = validate("audit", r.stdout)
    classes = {f["path"]: f for f in doc["files"]}
    assert classes[program]["class"] == "valid" and classes[program]["package"] == pkg, doc
    assert "package" not in classes[pg.ed("/usr/local/bin/json-local")], doc

    # The prefix layout has no root of its own: the check would read all of /.
    if pg.layout == "root":
        policy = tmp_path / "ima-policy"
        policy.write_text("appraise func=BPRM_CHECK appraise_type=imasig\n")
        r = system.run("policy", "--check", str(policy), "--json")
        doc = validate("policy-check", r.stdout)
        assert doc["summary"]["denied"] == len(doc["denied"]), doc
        refused = {d["path"]: d for d in doc["denied"]}
        assert program not in refused, doc
        local_script = refused[pg.ed("/usr/local/bin/json-local")]
        assert local_script["status"] == "unsigned" and "package" not in local_script, doc
        owned = [d for d in doc["denied"] if "package" in d]
        assert all(d["package"] for d in owned), doc

    r = system.run("doctor", "--json")
    doc = validate("doctor", r.stdout)
    assert sum(doc["summary"].values()) == len(doc["checks"]), doc
    assert all("fix" in c for c in doc["checks"] if c["status"] in ("warn", "fail")), doc


def test_setup_plan_json_matches_its_schema(hook_bin, tmp_path):
    """`setup --json` on two scratch roots: every step kind, blocked and
    manual steps, the boots with and without Secure Boot."""
    import subprocess

    def root(name: str, systemd: bool, config: str, secure_boot: bool) -> list[str]:
        r = tmp_path / name
        for d in ("etc/portage", "var/tmp", "sbin", "usr/lib/systemd", "etc/default"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "etc/portage/make.conf").write_text(f'PORTAGE_TMPDIR="{r}/var/tmp"\nFEATURES="userpriv"\n')
        (r / ("usr/lib/systemd/systemd" if systemd else "sbin/openrc-run")).write_text("")
        (r / "etc/default/grub").write_text('GRUB_CMDLINE_LINUX="quiet"\n')
        for cpv, use in (("sys-kernel/gentoo-kernel-6.12.5", "strip"), ("sys-kernel/dracut-105", "")):
            (r / "var/db/pkg" / cpv).mkdir(parents=True)
            (r / "var/db/pkg" / cpv / "USE").write_text(use)
        (r / "kconfig").write_text(config)
        efivars = r / "efivars"
        efivars.mkdir()
        if secure_boot:
            (efivars / "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c").write_bytes(b"\x06\0\0\0\x01")
        return ["--root", str(r), "--kernel-config", str(r / "kconfig"), "--efivars", str(efivars),
                "--proc-keys", "/dev/null"]

    kinds = set()
    for args in (
        root("openrc", False, "CONFIG_IMA=y\nCONFIG_INTEGRITY_TRUSTED_KEYRING=y\n", True),
        root("systemd", True, "CONFIG_IMA=y\nCONFIG_CRYPTO_ECDSA=y\n", False),
    ):
        r = subprocess.run([str(hook_bin), "setup", "--json", *args], capture_output=True,
                           text=True, env={"PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr
        doc = validate("setup", r.stdout)
        kinds |= {s["kind"] for s in doc["steps"]}
        assert doc["summary"]["steps"] == len(doc["steps"]), doc["summary"]
    assert {"key", "settings", "hook", "policy", "keyring", "kernel", "boot", "sign"} <= kinds, kinds
