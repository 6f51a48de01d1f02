"""Keylime's own code judges a runtime policy: run with the Keylime venv's
Python (tests/.cache/keylime-venv), not pytest's.

    keylime_judge.py POLICY.json [FILE SIGNATURE-HEX DIGEST-HEX]...

Validates POLICY against Keylime's RUNTIME_POLICY_SCHEMA (read from
keylime/ima/ima.py's source: importing that module needs the gpg bindings,
which are not on PyPI) and its verification-keys against
IMA_KEYRING_JSON_SCHEMA through keylime.ima.file_signatures, as
keylime.ima.ima.validate_runtime_policy does; then checks each FILE's
security.ima signature over DIGEST with the policy's keys, the way Keylime's
verifier checks an ima-sig measurement. Prints a JSON verdict.
"""

from __future__ import annotations

import ast
import enum
import json
import sys
from pathlib import Path

import jsonschema
import keylime
from keylime.ima import file_signatures


def runtime_policy_schema() -> dict:
    """RUNTIME_POLICY_SCHEMA and the enum it uses, evaluated from ima.py."""
    source = (Path(keylime.__file__).parent / "ima" / "ima.py").read_text()
    wanted = {"RUNTIME_POLICY_GENERATOR", "RUNTIME_POLICY_SCHEMA"}
    nodes = [
        node
        for node in ast.parse(source).body
        if (isinstance(node, ast.ClassDef) and node.name in wanted)
        or (isinstance(node, ast.Assign) and {getattr(t, "id", None) for t in node.targets} & wanted)
    ]
    namespace = {"enum": enum}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), "keylime/ima/ima.py", "exec"), namespace)
    return namespace["RUNTIME_POLICY_SCHEMA"]


def main() -> None:
    policy = json.loads(Path(sys.argv[1]).read_text())
    jsonschema.validate(instance=policy, schema=runtime_policy_schema())
    keys = json.loads(policy["verification-keys"])
    jsonschema.validate(instance=keys, schema=file_signatures.IMA_KEYRING_JSON_SCHEMA)
    ring = file_signatures.ImaKeyring.from_string(policy["verification-keys"])
    assert ring is not None, "Keylime cannot load the verification keys"
    rings = file_signatures.ImaKeyrings()
    rings.set_tenant_keyring(ring)
    verified = {}
    args = sys.argv[2:]
    for path, signature, digest in zip(args[::3], args[1::3], args[2::3]):
        verified[path] = rings.integrity_digsig_verify(
            bytes.fromhex(signature), bytes.fromhex(digest), "sha256"
        )
    print(json.dumps({"schema": "valid", "keyids": keys["keyids"], "verified": verified}))


if __name__ == "__main__":
    main()
