"""Issue 25: the Keylime runtime policy the hook keeps current, pushed to a
real Keylime verifier (keylime 7.14.3 from PyPI, on loopback with its own
TLS; tests/e2e/keylime_verifier.py), through real emerges: an install, an
upgrade, an unmerge, a binary-package merge. After each, the policy the
verifier holds (fetched back through its API) equals the policy file, its
digests equal `export keylime` on the same root, and Keylime's own
attestation code (keylime_validate.py) accepts a measurement list built from
the root's current files (sha256 by hashlib here) and rejects the replaced
version's binary. Faults: the verifier down during an emerge, a hook killed
mid-update, parallel merges.
"""

from __future__ import annotations

import hashlib
import json
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest
from test_system import System

from keylime_verifier import KeylimeVerifier, free_port
from portage_playground import CATEGORY
from portage_playground.playground import md5, parse_contents
from portage_playground.venv import ensure_keylime_venv

VALIDATE = Path(__file__).with_name("keylime_validate.py")
EXCLUDE = "^/var/tmp/"


@pytest.fixture(scope="module")
def verifier(tmp_path_factory):
    v = KeylimeVerifier(tmp_path_factory.mktemp("keylime-verifier")).start()
    yield v
    v.stop()


def configure(pg, verifier: KeylimeVerifier, url: str | None = None, mode: str = "digests") -> str:
    """ima.toml with a [keylime] table; returns the policy's name on the verifier."""
    name = f"pg-{pg.layout}"
    pg.write_ima_toml()
    with open(pg.ima_toml, "a") as f:
        f.write(
            f'\n[keylime]\nmode = "{mode}"\nexclude = ["{EXCLUDE}"]\n'
            f'verifier = "{url or verifier.url}"\nca = "{verifier.ca}"\n'
            f'client_cert = "{verifier.client_cert}"\nclient_key = "{verifier.client_key}"\n'
            f'policy_name = "{name}"\n'
        )
    return name


def policy_file(pg) -> Path:
    return pg.eroot / "var/lib/portage-ima/keylime-policy.json"


def installed_objects(pg) -> dict[str, Path]:
    """Every obj of every installed package whose live file is as merged."""
    found = {}
    for contents in (pg.eroot / "var/db/pkg").glob("*/*/CONTENTS"):
        for e in parse_contents(contents.read_text()):
            live = pg.live(e.path)
            if e.kind == "obj" and live.is_file() and md5(live) == e.md5:
                found[e.path] = live
    return found


def ima_ng_line(path: str, digest: str) -> str:
    """An ascii_runtime_measurements line as the kernel writes it for ima-ng:
    the template hash is SHA-1 over the template data (length-prefixed
    "sha256:\\0" + digest, then the path with its NUL)."""
    d = b"sha256:\0" + bytes.fromhex(digest)
    n = path.encode() + b"\0"
    data = struct.pack("<I", len(d)) + d + struct.pack("<I", len(n)) + n
    return f"10 {hashlib.sha1(data).hexdigest()} ima-ng sha256:{digest} {path}"


def validate(policy: Path, lines: list[str], tmp_path: Path) -> dict:
    ml = tmp_path / "measurements.txt"
    ml.write_text("\n".join(lines) + "\n")
    venv = ensure_keylime_venv()
    r = subprocess.run(
        [str(venv / "bin" / "python"), str(VALIDATE), str(policy), str(ml)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_pushed(verifier: KeylimeVerifier, name: str, pg, timeout: float = 30) -> dict:
    """The policy the verifier holds, once it equals the policy file (the
    pusher sends it after the emerge has ended)."""
    local = json.loads(policy_file(pg).read_text())
    deadline = time.monotonic() + timeout
    held = None
    while time.monotonic() < deadline:
        held = verifier.policy(name)
        if held == local:
            return held
        time.sleep(0.3)
    pytest.fail(f"the verifier does not hold the current policy: {held and held['digests']} != {local['digests']}")


def check_state(pg, hook_bin, verifier, name, tmp_path) -> dict:
    """The four things every step must show; returns the policy."""
    held = wait_pushed(verifier, name, pg)
    r = System(pg, hook_bin).run("export", "keylime", "--exclude", EXCLUDE)
    assert r.returncode == 0, str(r)
    exported = json.loads(r.stdout)
    assert held["digests"] == exported["digests"]
    assert held["excludes"] == [EXCLUDE]
    assert held["verification-keys"] == "", "digests mode carries no keys"
    objs = installed_objects(pg)
    lines = [ima_ng_line(p, hashlib.sha256(f.read_bytes()).hexdigest()) for p, f in sorted(objs.items())]
    verdict = validate(policy_file(pg), lines, tmp_path)
    assert verdict == {"accepted": True, "entries": len(lines), "failing": {}}, verdict
    return held


def test_policy_follows_emerges_on_a_real_verifier(pg, hook_bin, verifier, tmp_path):
    name = configure(pg, verifier)
    pn = "klive"
    bin_path = pg.ed(f"/usr/bin/{pn}")

    # Install.
    pg.emerge(pg.add_ebuild(pn, "1")).check()
    held = check_state(pg, hook_bin, verifier, name, tmp_path)
    v1 = hashlib.sha256(pg.live(bin_path).read_bytes()).hexdigest()
    assert held["digests"][bin_path] == [v1]

    # Upgrade: version 1's digests out (its postrm), version 2's in.
    pg.emerge(pg.add_ebuild(pn, "2")).check()
    held = check_state(pg, hook_bin, verifier, name, tmp_path)
    v2 = hashlib.sha256(pg.live(bin_path).read_bytes()).hexdigest()
    assert held["digests"][bin_path] == [v2] and v1 != v2
    # Version 1's binary back under its name: Keylime rejects it and names it.
    verdict = validate(policy_file(pg), [ima_ng_line(bin_path, v1)], tmp_path)
    assert verdict["failing"] == {bin_path: ["ima.validation.ima-ng.runtime_policy_hash"]}, verdict
    # And `keylime check` says the same, with the package.
    ml = tmp_path / "rollback.txt"
    ml.write_text(ima_ng_line(bin_path, v1) + "\n")
    r = System(pg, hook_bin).run("keylime", "check", "--measurements", str(ml))
    assert r.returncode == 1, str(r)
    assert f"{bin_path}: ({CATEGORY}/{pn}-2) digest not in the policy: measured {v1}" in r.stderr, str(r)

    # Unmerge: its digests leave (postrm).
    pg.emerge(f"{CATEGORY}/{pn}", args=("--unmerge",)).check()
    held = check_state(pg, hook_bin, verifier, name, tmp_path)
    assert bin_path not in held["digests"]

    # A binary package: built here, unmerged, merged again from PKGDIR.
    bpn = "klivebin"
    atom = pg.add_ebuild(bpn, "1")
    pg.emerge(atom, env={"FEATURES": "buildpkg"}).check()
    pg.emerge(f"{CATEGORY}/{bpn}", args=("--unmerge",)).check()
    assert pg.ed(f"/usr/bin/{bpn}") not in wait_pushed(verifier, name, pg)["digests"]
    r = pg.emerge(atom, args=("--oneshot", "--usepkgonly")).check()
    assert "Emerging binary" in r.output, r.output
    held = check_state(pg, hook_bin, verifier, name, tmp_path)
    assert pg.ed(f"/usr/bin/{bpn}") in held["digests"]
    # Its config file is in the policy under its real name.
    assert pg.ed(f"/etc/{bpn}.conf") in held["digests"]


def test_verifier_down_never_fails_the_merge_and_the_next_push_catches_up(pg, hook_bin, verifier, tmp_path):
    closed = f"https://127.0.0.1:{free_port()}"
    name = configure(pg, verifier, url=closed)
    pg.emerge(pg.add_ebuild("kldown", "1")).check()
    local = json.loads(policy_file(pg).read_text())
    assert pg.ed("/usr/bin/kldown") in local["digests"], "the policy file follows even so"
    # The pusher ran after the emerge and failed; it says so.
    log = Path(str(policy_file(pg)) + ".push.log")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "cannot reach the verifier" not in log.read_text():
        time.sleep(0.2)
    assert "cannot reach the verifier" in log.read_text()
    assert verifier.policy(name) is None or pg.ed("/usr/bin/kldown") not in verifier.policy(name)["digests"]
    if pg.layout == "root":  # doctor's --root is the config root and EROOT
        assert doctor(pg, hook_bin)["keylime-verifier"]["status"] == "warn"
    # The verifier is back: the next emerge's push sends everything.
    configure(pg, verifier)
    pg.emerge(pg.add_ebuild("kldown2", "1")).check()
    held = check_state(pg, hook_bin, verifier, name, tmp_path)
    assert pg.ed("/usr/bin/kldown") in held["digests"]
    assert pg.ed("/usr/bin/kldown2") in held["digests"]
    if pg.layout == "root":
        checks = doctor(pg, hook_bin)
        assert checks["keylime-policy"]["status"] == "ok", checks["keylime-policy"]
        assert checks["keylime-verifier"]["status"] == "ok", checks["keylime-verifier"]
        # A package the policy does not know (its hook never ran): doctor says so.
        # (One file per package in <policy>.state; the index's package count
        # no longer matches, so the next update would rebuild.)
        (Path(str(policy_file(pg)) + ".state") / f"{CATEGORY}:kldown2-1").unlink()
        checks = doctor(pg, hook_bin)
        assert checks["keylime-policy"]["status"] == "fail", checks["keylime-policy"]
        assert f"{CATEGORY}/kldown2-1" in checks["keylime-policy"]["finding"]


def doctor(pg, hook_bin) -> dict:
    r = System(pg, hook_bin).run("doctor", "--json")
    return {c["check"]: c for c in json.loads(r.stdout)["checks"]}


MANY_FILES = """\
mkdir -p "${T}/many" || die
for i in $(seq 1 1500); do printf 'file %s of %s\\n' "${i}" "${PV}" > "${T}/many/f${i}" || die; done
insinto "/usr/share/${PN}"
doins -r "${T}/many"
printf '#!/bin/sh\\necho "%s %s"\\n' "${PN}" "${PV}" > "${T}/${PN}" || die
dobin "${T}/${PN}"
"""


def test_killed_update_leaves_valid_json_and_is_caught_up(pg, hook_bin, verifier, tmp_path):
    name = configure(pg, verifier)
    pg.emerge(pg.add_ebuild("klmany", "1", install=MANY_FILES)).check()
    wait_pushed(verifier, name, pg)
    system = System(pg, hook_bin)
    policy = policy_file(pg)
    state = Path(str(policy) + ".state")
    # Kill at fractions of what a whole sync takes here and now (a fixed
    # delay missed every sync on a quiet machine: they ended within 20 ms).
    started = time.monotonic()
    subprocess.run(system.argv("keylime", "sync"), env=system.env(), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    whole = time.monotonic() - started
    killed = 0
    for delay in (whole * f for f in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7)):
        proc = subprocess.Popen(system.argv("keylime", "sync"), env=system.env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait() == -signal.SIGKILL
        json.loads(policy.read_text())  # never torn
        for package in state.iterdir():  # each package file whole (temporary ones start with .)
            assert package.name.startswith(".") or package.read_bytes().startswith(b"portage-ima keylime package 1\n")
    assert killed >= 3, "the kills landed after the sync had ended: make it longer"
    # A killed update in the middle of an emerge: the next merge catches up.
    # A state that lost everything (and no index: what a kill leaves).
    for package in state.iterdir():
        package.unlink()
    Path(str(policy) + ".index").unlink(missing_ok=True)
    pg.emerge(pg.add_ebuild("klafter", "1")).check()
    held = check_state(pg, hook_bin, verifier, name, tmp_path)
    assert pg.ed("/usr/share/klmany/many/f1500") in held["digests"]


def test_parallel_merges_lose_no_update(pg, hook_bin, verifier, tmp_path):
    name = configure(pg, verifier)
    atoms = [pg.add_ebuild(f"klpar{i}", "1") for i in range(4)]
    pg.emerge(*atoms, args=("--oneshot", "--jobs", "4")).check()
    held = check_state(pg, hook_bin, verifier, name, tmp_path)
    for i in range(4):
        assert pg.ed(f"/usr/bin/klpar{i}") in held["digests"]
    # Updates racing on one policy and its state, as `emerge --jobs` lets
    # the hooks do: one at a time under the lock, each whole.
    system = System(pg, hook_bin)
    procs = [
        subprocess.Popen(system.argv("keylime", "sync"), env=system.env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for _ in range(4)
    ]
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    r = system.run("export", "keylime", "--exclude", EXCLUDE)
    assert json.loads(policy_file(pg).read_text())["digests"] == json.loads(r.stdout)["digests"]
