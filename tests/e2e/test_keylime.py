"""Issue 11: `portage-ima export keylime` on a root that real emerges wrote,
judged by Keylime's own code (keylime 7.14.3 from PyPI, in a venv of its
own): the policy validates against Keylime's runtime-policy schema, its
digests are the SHA-256 of the installed files (computed here with hashlib,
not our code), a file changed since the merge is left out and reported,
`--exclude` patterns are carried, and Keylime's IMA signature code verifies
the hook's signatures with the policy's verification keys.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from test_system import System

from portage_playground import CATEGORY
from portage_playground.ima import cert_keyid, ima_xattr
from portage_playground.venv import ensure_keylime_venv

JUDGE = Path(__file__).with_name("keylime_judge.py")


def test_export_keylime_policy_is_valid_for_keylime(pg, hook_bin, tmp_path):
    pg.emerge(pg.add_ebuild("klpol")).check()
    objs = {e.path: pg.live(e.path) for e in pg.contents(CATEGORY, "klpol-1") if e.kind == "obj"}
    changed_path = pg.ed("/usr/share/klpol/data.txt")
    changed = objs[changed_path]
    original = changed.read_bytes()
    changed.write_bytes(b"changed since the merge\n")
    try:
        system = System(pg, hook_bin)
        out = tmp_path / "policy.json"
        r = system.run(
            "export", "keylime", "--output", str(out), "--exclude", "^/var/tmp/",
            "--cert", str(pg.cert),
        )  # fmt: skip
        assert r.returncode == 0, str(r)
        policy = json.loads(out.read_text())

        # Every unchanged file, with its SHA-256; the changed one left out and said.
        for path, live in objs.items():
            if path == changed_path:
                assert path not in policy["digests"], policy["digests"].keys()
                continue
            assert policy["digests"].get(path) == [hashlib.sha256(live.read_bytes()).hexdigest()], path
        assert f"left out: {changed_path} ({CATEGORY}/klpol-1): modified since install" in r.stderr, str(r)
        assert policy["excludes"] == ["^/var/tmp/"]

        # Keylime's schema, and its signature check with the policy's keys.
        bin_path = pg.ed("/usr/bin/klpol")
        binary = objs[bin_path]
        signature = ima_xattr(binary)
        assert signature, "the hook signed the package's files"
        digest = hashlib.sha256(binary.read_bytes()).hexdigest()
        venv = ensure_keylime_venv()
        judge = subprocess.run(
            [str(venv / "bin" / "python"), str(JUDGE), str(out), bin_path, signature.hex(), digest],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
        assert judge.returncode == 0, judge.stderr
        verdict = json.loads(judge.stdout)
        assert verdict["keyids"] == [int(cert_keyid(pg.cert), 16)]
        assert verdict["verified"] == {bin_path: True}, verdict

        # And a signature over other content does not verify.
        judge = subprocess.run(
            [str(venv / "bin" / "python"), str(JUDGE), str(out), bin_path, signature.hex(),
             hashlib.sha256(b"other").hexdigest()],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
        assert json.loads(judge.stdout)["verified"] == {bin_path: False}, judge.stdout
    finally:
        changed.write_bytes(original)
