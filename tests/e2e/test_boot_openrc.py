"""The shipped boot integration run for real (boot/, docs/boot.md): the
OpenRC service `boot/openrc/portage-ima.initd` under Debian's own
`openrc-run`, and the loader it runs (`boot/load`) against this kernel's
keyrings.

Each test runs in a fresh session keyring (`keyctl session -`), so nothing
reaches the host's keyrings, and openrc-run in a mount namespace with its
own /run/openrc (so the host's OpenRC state is untouched). The policy goes
to a scratch stand-in of securityfs: the test shows what the service writes
there and that nothing is written when a certificate did not load. The
kernel's `.ima` keyring on a kernel with CONFIG_INTEGRITY_TRUSTED_KEYRING
accepts only certificates signed by a trusted key
(restrict_link_by_signature); a keyring restricted with keyctl's
`key_or_keyring:<CA keyring>:chain` runs that same check in this kernel, so
it stands in for `.ima` here: a certificate our CA signed goes on, the
README's self-signed one is refused (ENOKEY) and the service fails loudly
without loading the policy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INITD = REPO / "boot" / "openrc" / "portage-ima.initd"
LOADER = REPO / "boot" / "load"

# openrc-run in its own mount namespace, with a fresh /run/openrc as a booted
# OpenRC has it (without `softlevel` openrc-run refuses to start anything).
RUN_OPENRC = r"""
set -e
mount -t tmpfs tmpfs /run/openrc
for d in daemons exclusive failed hotplugged inactive options scheduled started starting \
    stopping tmp wasinactive; do
    mkdir /run/openrc/$d
done
echo boot > /run/openrc/softlevel
set +e
openrc-run "$@"
"""


def require(*tools: str) -> None:
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        message = f"needs {', '.join(missing)} (scripts/install-deps tests: openrc, keyutils, openssl)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    probe = subprocess.run(["keyctl", "session", "-", "keyctl", "show", "@s"], capture_output=True, text=True)
    if probe.returncode != 0:
        message = f"no kernel keyrings here: {probe.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    """A CA (CA:TRUE, keyCertSign), an IMA certificate it signed (CA:FALSE,
    digitalSignature, SKID and AKID: what setup makes) and the README's
    self-signed certificate, all DER."""
    require("openssl")
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", "/CN=test IMA CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            "-addext", "subjectKeyIdentifier=hash", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    openssl("x509", "-in", str(d / "ca.pem"), "-outform", "DER", "-out", str(d / "ca.der"))
    (d / "ima.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                               "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test IMA key",
            "-keyout", str(d / "ima.key"), "-out", str(d / "ima.csr"))
    openssl("x509", "-req", "-in", str(d / "ima.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "3", "-extfile", str(d / "ima.ext"), "-outform", "DER",
            "-out", str(d / "ca_signed.der"))
    # README.md's certificate, word for word but for the size.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-sha256",
            "-subj", "/CN=host IMA signing key", "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "keyUsage=digitalSignature", "-addext", "subjectKeyIdentifier=hash",
            "-keyout", str(d / "self.key"), "-outform", "DER", "-out", str(d / "self_signed.der"))
    return {p.stem: p for p in d.glob("*.der")}


class Scratch:
    """A scratch init.d/conf.d pair holding the shipped service, a policy
    file and a stand-in securityfs (ima/policy, empty)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "init.d").mkdir()
        (root / "conf.d").mkdir()
        self.service = root / "init.d" / "portage-ima"
        shutil.copy2(INITD, self.service)
        self.policy = root / "ima-policy"
        self.policy.write_text("appraise func=BPRM_CHECK appraise_type=imasig\n")
        self.securityfs = root / "securityfs"
        (self.securityfs / "ima").mkdir(parents=True)
        self.policy_file = self.securityfs / "ima" / "policy"
        self.policy_file.write_text("")

    def configure(self, certs: list[Path], keyring: str) -> None:
        (self.root / "conf.d" / "portage-ima").write_text(
            f'IMA_CERTS="{" ".join(map(str, certs))}"\n'
            f'IMA_POLICY="{self.policy}"\n'
            f'IMA_KEYRING="{keyring}"\n'
            f'IMA_LOADER="{LOADER}"\n'
            f'IMA_SECURITYFS="{self.securityfs}"\n'
        )

    def start(self, setup: str) -> subprocess.CompletedProcess:
        """Runs `setup` (bash, in a new session keyring), then the service's
        start under openrc-run in the same session, then prints
        `KEYRING <serial> <type> <description>` for each key on the keyring
        named `target`."""
        Path("/run/openrc").mkdir(exist_ok=True)
        script = f"""
set -e
{setup}
set +e
unshare --mount sh -c '{RUN_OPENRC}' sh {self.service} start
rc=$?
for k in $(keyctl rlist %keyring:target); do
    echo "KEYRING $k $(keyctl describe $k)"
done
exit $rc
"""
        return subprocess.run(["keyctl", "session", "-", "bash", "-c", script],
                              capture_output=True, text=True, timeout=120)


@pytest.fixture
def scratch(tmp_path) -> Scratch:
    require("openrc-run", "keyctl", "unshare")
    return Scratch(tmp_path)


def keys_on_target(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("KEYRING ")]


def test_service_loads_the_certificate_then_the_policy(scratch, certs):
    scratch.configure([certs["ca_signed"]], "%keyring:target")
    r = scratch.start("keyctl newring target @s > /dev/null")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Loading the IMA certificates and policy" in out
    keys = keys_on_target(out)
    assert len(keys) == 1 and "asymmetric" in keys[0] and "test IMA key" in keys[0], out
    # The policy is loaded by path: the kernel reads (and may appraise) it.
    assert scratch.policy_file.read_text() == f"{scratch.policy}\n"


# A keyring restricted to certificates signed by a key on the CA keyring:
# the kernel's restrict_link_by_signature, as on .ima.
RESTRICTED = """
ca=$(keyctl newring ca @s)
keyctl padd asymmetric "" "$ca" < {ca} > /dev/null
target=$(keyctl newring target @s)
keyctl restrict_keyring "$target" asymmetric "key_or_keyring:$ca:chain"
"""


def test_service_puts_a_ca_signed_certificate_on_a_restricted_keyring(scratch, certs):
    scratch.configure([certs["ca_signed"]], "%keyring:target")
    r = scratch.start(RESTRICTED.format(ca=certs["ca"]))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert len(keys_on_target(out)) == 1, out
    assert scratch.policy_file.read_text() == f"{scratch.policy}\n"


def test_service_refuses_the_self_signed_certificate_loudly_and_loads_no_policy(scratch, certs):
    # The good certificate first: it loads, the second is refused, and the
    # policy still does not load (never a policy whose keys did not load).
    scratch.configure([certs["ca_signed"], certs["self_signed"]], "%keyring:target")
    r = scratch.start(RESTRICTED.format(ca=certs["ca"]))
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"certificate {certs['self_signed']} not loaded on %keyring:target" in out
    assert "signed by a key the kernel trusts" in out
    assert "Required key not available" in out
    assert "the policy is not loaded" in out
    # openrc-run's eerror line from eend.
    assert "* The IMA certificates or policy did not load" in out
    assert scratch.policy_file.read_text() == ""


def test_service_with_a_missing_certificate_loads_nothing(scratch, certs, tmp_path):
    missing = tmp_path / "nowhere.der"
    scratch.configure([certs["ca_signed"], missing], "%keyring:target")
    r = scratch.start("keyctl newring target @s > /dev/null")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"certificate {missing}: not a readable file" in out
    # Checked before anything is loaded: not even the good certificate.
    assert keys_on_target(out) == [], out
    assert scratch.policy_file.read_text() == ""


def test_service_with_a_missing_policy_loads_nothing(scratch, certs):
    scratch.configure([certs["ca_signed"]], "%keyring:target")
    scratch.policy.unlink()
    r = scratch.start("keyctl newring target @s > /dev/null")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert f"policy {scratch.policy}: not a readable file" in out
    assert keys_on_target(out) == [], out


# The loader's own choice of keyring, without --keyring: no `.ima` in this
# kernel (Debian's and this machine's lack CONFIG_INTEGRITY_TRUSTED_KEYRING),
# so `_ima` on the user keyring, made once and then reused. Run as a user of
# its own, whose user keyring is not root's; cleared afterwards.
LOADER_UID = 64917


def run_loader_as_user(*args: str) -> subprocess.CompletedProcess:
    """Runs `args` as LOADER_UID in a session keyring of its own that links
    its user keyring, as a login (pam_keyinit) or boot (the user session
    keyring) does: what the user keyring holds is then possessed."""
    return subprocess.run(
        ["setpriv", f"--reuid={LOADER_UID}", f"--regid={LOADER_UID}", "--clear-groups",
         "keyctl", "session", "-", "sh", "-c", 'keyctl link @u @s && exec "$@"', "sh", *args],
        capture_output=True, text=True, timeout=60)


@pytest.fixture
def user_keyring():
    require("keyctl", "setpriv")
    clear = ["keyctl", "clear", "@u"]
    run_loader_as_user(*clear)
    yield
    run_loader_as_user(*clear)


def test_loader_makes_ima_on_the_user_keyring_once(user_keyring, certs):
    # Everything in a directory of that user's own under /tmp (pytest's
    # tmp_path sits below a root-only directory).
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="bootint-") as d:
        loader_as_user(Path(d), certs)


def loader_as_user(d: Path, certs: dict[str, Path]) -> None:
    securityfs = d / "securityfs"
    (securityfs / "ima").mkdir(parents=True)
    policy_file = securityfs / "ima" / "policy"
    policy_file.write_text("")
    policy = d / "ima-policy"
    policy.write_text("measure func=BPRM_CHECK\n")
    cert = d / "cert.der"
    shutil.copy(certs["ca_signed"], cert)
    loader = d / "load"
    shutil.copy2(LOADER, loader)
    for p in (d, securityfs, securityfs / "ima", policy_file, policy, cert, loader):
        os.chown(p, LOADER_UID, LOADER_UID)
    load = [str(loader), "--securityfs", str(securityfs), "--policy", str(policy), str(cert)]

    first = run_loader_as_user(*load)
    assert first.returncode == 0, first.stderr
    assert "on _ima" in first.stderr
    assert policy_file.read_text() == f"{policy}\n"
    ring = run_loader_as_user("keyctl", "search", "@u", "keyring", "_ima")
    assert ring.returncode == 0, ring.stderr

    # A second start (the kernel took the policy and removed its file):
    # the same _ima, not a new one displacing it, and no error.
    policy_file.unlink()
    second = run_loader_as_user(*load)
    assert second.returncode == 0, second.stderr
    assert "a policy was already loaded this boot" in second.stderr
    again = run_loader_as_user("keyctl", "search", "@u", "keyring", "_ima")
    assert again.stdout == ring.stdout
    members = run_loader_as_user("keyctl", "rlist", ring.stdout.strip())
    assert len(members.stdout.split()) == 1, members


def test_loader_refuses_a_pem_certificate(tmp_path, certs):
    require("keyctl")
    pem = tmp_path / "cert.pem"
    subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(certs["ca_signed"]), "-out", str(pem)],
                   check=True)
    policy = tmp_path / "p"
    policy.write_text("")
    r = subprocess.run([str(LOADER), "--keyring", "@s", "--no-policy", str(pem)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "PEM, the kernel takes DER" in r.stderr
