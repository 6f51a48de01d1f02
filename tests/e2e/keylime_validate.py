"""Keylime's own attestation code judges a measurement list against a
runtime policy: run with the Keylime venv's Python (tests/.cache/keylime-venv).

    keylime_validate.py POLICY.json MEASUREMENTS

The policy is loaded and validated as the verifier does when it is pushed
(keylime.ima.ima.deserialize_runtime_policy, validate_runtime_policy); the
key ring is built from its verification-keys as
cloud_verifier_common.process_quote_response does; the list goes through
keylime.ima.ima.process_measurement_list, the verifier's IMA check. There is
no TPM here, so no PCR value is compared, and the list's own boot_aggregate
is taken as the one the TPM would confirm. Each line is also judged alone
to name the files that fail. Prints a JSON verdict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from keylime.common.algorithms import Hash
from keylime.ima import file_signatures, ima


def keyrings(policy: dict) -> file_signatures.ImaKeyrings:
    rings = file_signatures.ImaKeyrings()
    rings.set_tenant_keyring(file_signatures.ImaKeyring.from_string(policy["verification-keys"]))
    return rings


def main() -> None:
    text = Path(sys.argv[1]).read_text()
    policy = ima.deserialize_runtime_policy(text)
    ima.validate_runtime_policy(policy)
    lines = Path(sys.argv[2]).read_text().splitlines()
    boot = {}
    for line in lines:
        fields = line.split(" ")
        if len(fields) >= 5 and fields[4] == "boot_aggregate":
            alg, value = fields[3].split(":", 1) if ":" in fields[3] else ("sha1", fields[3])
            boot.setdefault(alg, []).append(value)

    def judge(some: list[str]):
        _, failure = ima.process_measurement_list(
            None,
            some,
            ima.deserialize_runtime_policy(text),
            ima_keyrings=keyrings(policy),
            boot_aggregates=boot,
            hash_alg=Hash.SHA1,
        )
        return failure

    overall = judge(lines)
    failing = {}
    for line in lines:
        if line.strip() and judge([line]):
            fields = line.split(" ")
            # ima-sig: the path is everything but the last field (the signature).
            path = " ".join(fields[4:-1]) if fields[2] == "ima-sig" else " ".join(fields[4:])
            failing[path] = [e.event_id for e in judge([line]).events]
    print(json.dumps({"accepted": not overall, "entries": len([l for l in lines if l.strip()]), "failing": failing}))


if __name__ == "__main__":
    main()
