"""`portage-ima doctor` over a root real emerges signed (issues 11 and 12):
`signature-keys` warns while installed files carry signatures by a key the
kernel does not accept (here: no IMA keyring in a fresh keyring session,
so the configured certificate stands in) and is ok once `sign --all
--rotate` re-signed them; `policy-coverage` warns about an installed
program the policy covers but that carries no signature, naming
`scope = "policy"` when that is set.

Judged without our code: the key ids and the execute bits are read from
the files with Python."""

from __future__ import annotations

import json
import os
import subprocess

from test_ecdsa import make_ec_key
from test_rotation import keyid_of
from test_system import System

from portage_playground.ima import cert_keyid, ima_xattr


def doctor(system: System, *args: str) -> dict[str, dict]:
    """`doctor --json` in a fresh keyring session; check name -> check."""
    argv = ["keyctl", "session", "-", str(system.bin), "doctor", "--json", "--root",
            str(system.pg.configroot), *args]  # fmt: skip
    proc = subprocess.run(argv, env=system.env(), capture_output=True, text=True)
    report = json.loads(proc.stdout)
    return {c["check"]: c for c in report["checks"]}


def test_doctor_follows_a_rotation_and_the_policy(pg, hook_bin, tmp_path):
    pg.emerge(pg.add_ebuild("docsig")).check()
    system = System(pg, hook_bin)
    old_id = cert_keyid(pg.cert)
    # CONTENTS path -> the live file.
    named = {n: p for files in system.all_objs().values() for n, p in files.items()}
    objs = list(named.values())
    signed = [p for p in objs if keyid_of(p) is not None]
    assert signed and all(keyid_of(p) == old_id for p in signed)

    checks = doctor(system)
    assert checks["signature-keys"]["status"] == "ok", checks["signature-keys"]
    assert f"{len(signed)} of {len(objs)} installed files are signed" in checks["signature-keys"]["finding"]

    # The configuration moves to a new key: the old signatures remain.
    new_key, new_pem, _ = make_ec_key(tmp_path, "prime256v1", "sec1")
    pg.write_ima_toml(key=str(new_key), cert=str(new_pem))
    keys = doctor(system)["signature-keys"]
    assert keys["status"] == "warn", keys
    assert f"key {old_id}: {len(signed)} files" in keys["finding"], keys
    assert "portage-ima sign --all --rotate" in keys["fix"], keys

    rotated = system.sign("--all", "--rotate")
    assert rotated.returncode == 0, str(rotated)
    new_id = cert_keyid(new_pem)
    assert all(keyid_of(p) == new_id for p in signed)
    assert doctor(system)["signature-keys"]["status"] == "ok"

    # A policy appraising programs; one installed program loses its signature.
    policy = tmp_path / "policy"
    policy.write_text("appraise func=BPRM_CHECK appraise_type=imasig\n")
    programs = sorted(n for n, p in named.items() if p in signed and os.stat(p).st_mode & 0o111)
    assert programs, named
    coverage = doctor(system, "--policy", str(policy))["policy-coverage"]
    assert coverage["status"] == "ok", coverage
    os.removexattr(named[programs[0]], "security.ima")
    assert ima_xattr(named[programs[0]]) is None
    pg.write_ima_toml(key=str(new_key), cert=str(new_pem), scope="policy")
    coverage = doctor(system, "--policy", str(policy))["policy-coverage"]
    assert coverage["status"] == "warn", coverage
    assert 'covers 1 installed files that scope = "policy" skipped' in coverage["finding"], coverage
    assert f"e.g. {programs[0]})" in coverage["finding"], coverage
