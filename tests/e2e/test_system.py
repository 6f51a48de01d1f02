"""Issue 4's proof: `portage-ima sign` and `portage-ima verify` over installed
packages, read from a vdb that Portage's own emerge wrote.

Packages are merged with the hook disabled (no snippet in bashrc), so every
signature here comes from the whole-system commands; `evmctl ima_verify` is
the judge. One playground per layout (ROOT=DIR, and a prefix) holds every
package, installed once by the module fixture; the tests run in file order on
that shared state and put back what they break.

The command runs the way an admin runs it: root layout with `--root DIR`,
prefix layout with EPREFIX and EROOT in the environment (ROOT unset).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from checks import snapshot

from portage_playground import CATEGORY, LAYOUTS, Playground, ebuild_text, md5
from portage_playground.ima import XATTR, cert_keyid, evmctl_verify, ima_xattr

# A second category, so that one package name is installed in two.
CATEGORY2 = "test-ima2"

# test-ima2/twin must not collide with test-ima/twin's files.
TWIN2_INSTALL = """\
printf '#!/bin/sh\\necho other twin\\n' > "${T}/twin-other" || die
dobin "${T}/twin-other"
insinto "/usr/share/${CATEGORY}-${PN}"
printf 'the other twin\\n' > "${T}/data.txt" || die
doins "${T}/data.txt"
"""

# A package big enough that `sign --all` can be interrupted part way: a few
# large random files (each one in flight is finished after SIGINT) and many
# small ones (each costs an RSA signature). Written straight into ${ED}
# rather than copied there with doins, to halve the disk traffic.
BIG_FILES, BIG_MB, SMALL_FILES = 3, 200, 1000


def big_install(blobs: int, blob_mb: int, small_files: int) -> str:
    """src_install of such a package: /usr/share/big/blobN.bin, many/fN.txt."""
    return f"""\
mkdir -p "${{ED}}/usr/share/big/many" || die
for i in $(seq 1 {blobs}); do
\thead -c {blob_mb}M /dev/urandom > "${{ED}}/usr/share/big/blob${{i}}.bin" || die
done
for i in $(seq 1 {small_files}); do
\techo "small file ${{i}}" > "${{ED}}/usr/share/big/many/f${{i}}.txt" || die
done
"""


BIG_INSTALL = big_install(BIG_FILES, BIG_MB, SMALL_FILES)

# (category, PF) installed by the fixture; big-1 comes later (its own test).
INSTALLED = [
    (CATEGORY, "alpha-1"),
    (CATEGORY, "beta-2"),
    (CATEGORY, "gamma-1-r1"),
    (CATEGORY, "twin-1"),
    (CATEGORY, "cfgp-1"),
    (CATEGORY, "tamper-1"),
    (CATEGORY, "links-1"),
    (CATEGORY2, "twin-1"),
]

TOTAL_LINE = re.compile(
    r"^portage-ima: (?P<packages>\d+) packages?(?: in \S+)?: "
    r"signed (?P<signed>\d+), (?P<valid>\d+) already valid, "
    r"(?:(?P<skipped>\d+) skipped, )?(?P<failed>\d+) failed \(of (?P<total>\d+) files?\)$",
    re.M,
)


# ---- running the command ---------------------------------------------------


@dataclasses.dataclass
class Run:
    """One run of the binary: its argv, exit status, stdout, stderr, time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit {self.returncode} after {self.seconds:.2f}s\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )

    def doc(self) -> dict:
        """The document `sign --json` printed."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"sign --json did not print JSON ({e}):\n{self}") from None

    def total(self) -> dict[str, int]:
        """The summary of `sign --json`, with the number of packages."""
        doc = self.doc()
        return {"packages": len(doc.get("packages", {})), **sign_counts(doc["summary"])}

    def packages(self) -> dict[str, dict[str, int]]:
        """The per-package tallies of `sign --json`."""
        return {pkg: sign_counts(t) for pkg, t in self.doc().get("packages", {}).items()}

    def failed(self) -> dict[str, str]:
        """The files `sign --json` reports failed: path -> reason."""
        return {f["path"]: f["detail"] for f in self.doc()["files"] if f["outcome"] == "failed"}


def sign_counts(tally: dict[str, int]) -> dict[str, int]:
    """A tally of `sign --json` under the names these tests use; `total`
    counts the files done (not those an interrupted run never started)."""
    done = [k for k in tally if k != "not-started"]
    return {
        "signed": tally["signed"],
        "valid": tally["already-valid"],
        "skipped": tally["skipped"],
        "failed": tally["failed"],
        "total": sum(tally[k] for k in done),
    }


@dataclasses.dataclass
class System:
    """The playground, the binary under test, and how to call it."""

    pg: Playground
    bin: Path

    def env(self) -> dict[str, str]:
        """No ROOT/EROOT/EPREFIX from the caller; the prefix layout gets its
        EPREFIX and EROOT from the environment, as inside a prefix."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ROOT", "EROOT", "EPREFIX", "PORTAGE_CONFIGROOT", "SYSROOT", "ESYSROOT")
        }
        if self.pg.layout == "prefix":
            env.update(EPREFIX=self.pg.eprefix, EROOT=str(self.pg.eroot))
        return env

    def argv(self, command: str, *args: str) -> list[str]:
        argv = [str(self.bin), "--config", str(self.pg.ima_toml), command, *args]
        if self.pg.layout == "root":
            argv += ["--root", str(self.pg.root)]
        if command == "sign":
            argv += ["--jobs", "2", "--progress", "none"]
        return argv

    def run(self, command: str, *args: str, timeout: float = 600) -> Run:
        argv = self.argv(command, *args)
        start = time.monotonic()
        proc = subprocess.run(
            argv, env=self.env(), capture_output=True, text=True, errors="replace", timeout=timeout
        )
        return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    def shown(self, live: Path | str) -> str:
        """How text shows the live file `live`: inside the root, as CONTENTS
        has it (the root layout's root is named once, in the summary);
        JSON keeps the live path (docs/json.md)."""
        if self.pg.layout != "root":
            return str(live)
        return "/" + str(Path(live).relative_to(self.pg.root))

    def sign(self, *args: str) -> Run:
        """`sign --json`: read it with Run.total(), packages(), failed()."""
        return self.run("sign", "--json", *args)

    def sign_text(self, *args: str) -> Run:
        """`sign` as a person reads it."""
        return self.run("sign", *args)

    def verify(self, *args: str) -> Run:
        return self.run("verify", *args)

    def verify_json(self, *args: str) -> tuple[Run, dict]:
        r = self.run("verify", "--json", *args)
        try:
            return r, json.loads(r.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"verify --json did not print JSON ({e}):\n{r}") from None

    # ---- the installed packages, judged without our code ------------------

    def md5s(self, cat: str, pf: str) -> dict[Path, str]:
        """Live file -> the MD5 CONTENTS records for it."""
        return {self.pg.live(e.path): e.md5 for e in self.pg.contents(cat, pf) if e.kind == "obj"}

    def installed(self) -> list[tuple[str, str]]:
        """(category, PF) of every package in the vdb."""
        vdb = self.pg.eroot / "var" / "db" / "pkg"
        return sorted(
            (d.parent.name, d.name) for d in vdb.glob("*/*") if (d / "CONTENTS").is_file()
        )

    def all_objs(self) -> dict[str, dict[str, Path]]:
        """CAT/PF -> its signable objs (see :meth:`Playground.signable`), for
        every installed package."""
        return {f"{cat}/{pf}": self.pg.signable(cat, pf) for cat, pf in self.installed()}

    def snapshot(self) -> dict[str, bytes]:
        """Every security.ima in the playground outside PORTAGE_TMPDIR."""
        return snapshot(self.pg)

    def ensure_signed(self) -> None:
        """Every installed package signed (a no-op after the first test)."""
        r = self.sign("--all")
        assert r.returncode == 0, str(r)


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def evmctl_rejects(cert_der: Path, paths) -> list[str]:
    """`evmctl ima_verify --key CERT.der` on every path; the ones it rejects,
    with its words. evmctl takes many files per run (exit 1 if any fails), so
    paths go in batches, and a failing batch is re-run file by file."""
    paths = [str(p) for p in paths]
    batches = [paths[i : i + 200] for i in range(0, len(paths), 200)]

    def check(batch: list[str]) -> list[str]:
        proc = subprocess.run(
            ["evmctl", "ima_verify", "--key", str(cert_der), *batch], capture_output=True, text=True
        )
        accepted = (proc.stdout + proc.stderr).count(": verification is OK")
        if proc.returncode == 0 and accepted == len(batch):
            return []
        results = ((p, evmctl_verify(p, cert_der)) for p in batch)
        return [f"{p}: {out}" for p, (ok, out) in results if not ok]

    with ThreadPoolExecutor(max_workers=2) as pool:
        return [bad for found in pool.map(check, batches) for bad in found]


def open_files(pid: int) -> set[str]:
    """The files process ``pid`` has open right now (from /proc/PID/fd)."""
    fd_dir = f"/proc/{pid}/fd"
    found = set()
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return found
    for fd in fds:
        try:
            found.add(os.readlink(f"{fd_dir}/{fd}"))
        except OSError:
            pass  # closed meanwhile
    return found


def interrupt_when(system: System, argv: list[str], ready) -> tuple[Run, float | None, set[str]]:
    """Runs ``argv`` and sends it SIGINT once ``ready(open files)`` holds
    (polled every millisecond): the run, when SIGINT was sent (None when the
    run ended first) and the files it had open then."""
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, env=system.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    signalled, opened = None, set()
    try:
        while proc.poll() is None and signalled is None:
            opened = open_files(proc.pid)
            if ready(opened):
                proc.send_signal(signal.SIGINT)
                signalled = time.monotonic() - start
            else:
                time.sleep(0.001)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Run(argv, proc.returncode, out, err, time.monotonic() - start), signalled, opened


# ---- the playground --------------------------------------------------------


@pytest.fixture(scope="module", params=LAYOUTS)
def system(request, tmp_path_factory, hook_bin) -> System:
    """One playground per layout with every package of :data:`INSTALLED`
    merged by one emerge, the hook disabled. Removed afterwards (the big
    package is a gigabyte) unless PORTAGE_IMA_E2E_KEEP is set."""
    if os.geteuid() != 0:
        pytest.skip("real emerge into a scratch ROOT and security.ima need root")
    base = tmp_path_factory.mktemp(f"system-{request.param}")
    pg = Playground(base, request.param, hook=hook_bin)
    pg.write_bashrc(snippet=False)
    with (pg.repo / "profiles" / "categories").open("a") as f:
        f.write(CATEGORY2 + "\n")
    atoms = [
        pg.add_ebuild("alpha", "1"),
        pg.add_ebuild("beta", "2"),
        pg.add_ebuild("gamma", "1-r1"),
        pg.add_ebuild("twin", "1"),
        pg.add_ebuild("cfgp", "1"),
        pg.add_ebuild("tamper", "1"),
        pg.add_ebuild("links", "1"),
    ]
    twin2 = pg.repo / CATEGORY2 / "twin" / "twin-1.ebuild"
    twin2.parent.mkdir(parents=True, exist_ok=True)
    twin2.write_text(ebuild_text("twin", TWIN2_INSTALL))
    atoms.append(f"={CATEGORY2}/twin-1")
    r = pg.emerge(*atoms, args=("--oneshot", "--jobs=2")).check()
    print(f"[{request.param}] emerge of {len(atoms)} packages: {r.seconds:.1f}s")
    system = System(pg, hook_bin)
    assert not system.snapshot(), "something was signed with the hook disabled"
    yield system
    if not os.environ.get("PORTAGE_IMA_E2E_KEEP"):
        shutil.rmtree(base, ignore_errors=True)


# ---- the tests ---------------------------------------------------------------


def test_sign_all_then_again(system):
    """`sign --all` signs every obj of every package and nothing else; a
    second run finds every signature valid and writes nothing."""
    before = system.snapshot()
    assert not before
    dry = system.sign_text("--all", "--dry-run")
    assert dry.returncode == 0, str(dry)
    assert re.search(
        r"^portage-ima: \d+ packages?(?: in \S+)?: would sign [1-9]\d*, 0 already valid, 0 failed",
        dry.stdout,
        re.M,
    ), str(dry)
    assert not system.snapshot(), "--dry-run wrote a signature"
    first = system.sign("--all")
    assert first.returncode == 0, str(first)
    objs = system.all_objs()
    n = sum(len(o) for o in objs.values())
    assert n >= 7 * 5 + 2
    assert first.total() == {
        "packages": len(INSTALLED), "signed": n, "valid": 0, "skipped": 0, "failed": 0, "total": n,
    }, str(first)  # fmt: skip
    assert not [p for p, t in first.packages().items() if t["failed"]], str(first)
    assert not first.stderr.strip(), str(first)

    live = {p for o in objs.values() for p in o.values()}
    assert not evmctl_rejects(system.pg.cert_der, sorted(live))
    after = system.snapshot()
    assert set(after) == {str(p) for p in live}, "security.ima on something that is not an obj"
    assert sorted(system.installed()) == sorted(INSTALLED)
    not_files = [
        system.pg.live(e.path)
        for cat, pf in INSTALLED
        for e in system.pg.contents(cat, pf)
        if e.kind in ("sym", "dir")
    ]
    assert not_files and not [p for p in not_files if ima_xattr(p) is not None]

    second = system.sign("--all")
    assert second.returncode == 0, str(second)
    assert second.total() == {
        "packages": len(INSTALLED), "signed": 0, "valid": n, "skipped": 0, "failed": 0, "total": n,
    }, str(second)  # fmt: skip
    assert system.snapshot() == after, "the second run rewrote signatures"
    print(f"[{system.pg.layout}] sign --all: {first.seconds:.3f}s, again: {second.seconds:.3f}s")


def test_verify_all_ok(system):
    """Everything signed: `verify --all --json` says ok for every package and
    file, exit 0, and its fields are real; the text names the packages, and
    the files only with -v."""
    system.ensure_signed()
    objs = system.all_objs()
    n = sum(len(o) for o in objs.values())
    known = {str(p) for o in objs.values() for p in o.values()}

    r, doc = system.verify_json("--all")
    assert r.returncode == 0, str(r)
    assert doc["summary"] == {"ok": n}
    assert doc["packages"] == {pkg: {"ok": len(o)} for pkg, o in objs.items()}
    assert {f["path"] for f in doc["files"]} == known
    keyid = cert_keyid(system.pg.cert)
    # An ok file has every field but `detail` (absent when there is none).
    fields = {"path", "package", "status", "algo", "keyid", "digest", "signature"}
    for f in doc["files"]:
        assert set(f) == fields, f
        live = Path(f["path"])
        pkg = next(pkg for pkg, o in objs.items() if live in o.values())
        assert (f["package"], f["status"], f["algo"]) == (pkg, "ok", "sha256"), f
        assert f["keyid"].lower().endswith(keyid), (f, keyid)
        assert f["digest"] == sha256(live), f
        assert f["signature"] and f["signature"].lower() in ima_xattr(live).hex(), f

    # The text for people: one line per package, files only with -v.
    r = system.verify("--all")
    assert r.returncode == 0, str(r)
    alpha = f"{CATEGORY}/alpha-1"
    assert f"ok   {alpha}: {len(objs[alpha])} ok" in r.stdout.splitlines(), str(r)
    assert not [p for p in known if f" {system.shown(p)}" in r.stdout], f"files listed without -v:\n{r}"
    r = system.verify("--all", "-v")
    assert r.returncode == 0, str(r)
    missing = {f"ok {system.shown(p)}" for p in known} - set(r.stdout.splitlines())
    assert not missing, f"-v does not list {sorted(missing)}:\n{r}"


def test_tampered_unsigned_missing(system):
    """One file with a byte appended, one without its security.ima, one
    deleted: verify names exactly those (modified, unsigned, missing) in its
    JSON and its text, exit 1; `sign --all` re-signs the unsigned one,
    never the tampered one, and says so, exit 1. A reinstall repairs it."""
    system.ensure_signed()
    pg = system.pg
    pkg = f"{CATEGORY}/tamper-1"
    tampered = pg.live(pg.ed("/usr/share/tamper/data.txt"))
    unsigned = pg.live(pg.ed("/usr/share/tamper/stable.txt"))
    missing = pg.live(pg.ed("/usr/share/tamper/file with space.txt"))
    objs = system.all_objs()
    n = sum(len(o) for o in objs.values())
    known = {str(p) for o in objs.values() for p in o.values()}
    stale_sig = ima_xattr(tampered)

    with tampered.open("ab") as f:
        f.write(b"x")
    subprocess.run(["setfattr", "-x", XATTR, str(unsigned)], check=True)
    missing.unlink()
    expected = {str(tampered): "modified", str(unsigned): "unsigned", str(missing): "missing"}

    r, doc = system.verify_json("--all")
    assert r.returncode == 1, str(r)
    statuses = {f["path"]: f["status"] for f in doc["files"]}
    assert set(statuses) == known, doc
    assert {p: s for p, s in statuses.items() if s != "ok"} == expected, doc
    tamper_counts = {"modified": 1, "unsigned": 1, "missing": 1, "ok": len(objs[pkg]) - 3}
    assert doc["packages"] == {
        p: tamper_counts if p == pkg else {"ok": len(o)} for p, o in objs.items()
    }, doc
    assert doc["summary"] == {"modified": 1, "unsigned": 1, "missing": 1, "ok": n - 3}, doc
    for f in doc["files"]:
        if f["path"] in expected:
            assert f["package"] == pkg and f["detail"], f

    # Only this package, by atom: the same three.
    r, doc = system.verify_json("tamper")
    assert r.returncode == 1, str(r)
    assert (doc["packages"], doc["summary"]) == ({pkg: tamper_counts}, tamper_counts), doc
    assert {f["path"]: f["status"] for f in doc["files"] if f["status"] != "ok"} == expected

    # The text for people: each file with its status, the package's verdict.
    r = system.verify("--all")
    assert r.returncode == 1, str(r)
    lines = r.stdout.splitlines()
    for path, status in expected.items():
        said = f"{status} {system.shown(path)}"
        assert any(line == said or line.startswith(f"{said} (") for line in lines), str(r)
    line = f"FAIL {pkg}: 1 missing, 1 modified, {len(objs[pkg]) - 3} ok, 1 unsigned"
    assert line in lines, str(r)

    # sign --all: the unsigned file is signed again; the tampered one is
    # reported and keeps its (now stale) xattr; the missing one is reported.
    s = system.sign("--all")
    assert s.returncode == 1, str(s)
    assert {p: t for p, t in s.packages().items() if t["failed"]} == {
        pkg: {
            "signed": 1,
            "valid": len(objs[pkg]) - 3,
            "skipped": 0,
            "failed": 2,
            "total": len(objs[pkg]),
        }
    }, f"exactly one package has failures:\n{s}"
    assert s.total() == {
        "packages": len(objs), "signed": 1, "valid": n - 3, "skipped": 0, "failed": 2, "total": n,
    }, str(s)  # fmt: skip
    assert set(s.failed()) == {str(tampered), str(missing)}, str(s)
    assert ima_xattr(tampered) == stale_sig, "the tampered file's xattr was rewritten"
    assert not evmctl_verify(tampered, pg.cert_der)[0]
    assert evmctl_verify(unsigned, pg.cert_der)[0]
    assert not missing.exists()

    # Reinstall (hook still disabled) and sign the package: all ok again.
    pg.emerge(f"={pkg}").check()
    s = system.sign(f"{pkg}")
    assert s.returncode == 0, str(s)
    r = system.verify("--all")
    assert r.returncode == 0, str(r)


def test_verify_statuses_and_resign(system):
    """A digest-only xattr (`evmctl ima_hash`) and a corrupted signature are
    reported as such; with another certificate every file is unknown-key.
    `sign` replaces the two bad values and keeps the valid ones."""
    system.ensure_signed()
    pg = system.pg
    pkg = f"{CATEGORY}/beta-2"
    binary = pg.live(pg.ed("/usr/bin/beta"))
    data = pg.live(pg.ed("/usr/share/beta/data.txt"))
    objs = system.pg.signable(CATEGORY, "beta-2")
    subprocess.run(
        ["evmctl", "ima_hash", "--hashalgo", "sha256", str(binary)], check=True, capture_output=True
    )
    assert ima_xattr(binary)[:2] == b"\x04\x04", "evmctl did not write an ima-ng sha256 digest"
    value = bytearray(ima_xattr(data))
    value[-1] ^= 0xFF
    os.setxattr(data, XATTR, bytes(value))
    kept = {p: ima_xattr(p) for p in objs.values() if p not in (binary, data)}

    r, doc = system.verify_json(pkg)
    assert r.returncode == 1, str(r)
    statuses = {f["path"]: f["status"] for f in doc["files"]}
    assert {p: s for p, s in statuses.items() if s != "ok"} == {
        str(binary): "digest-only",
        str(data): "bad-signature",
    }, doc

    other = pg.base / "other-cert"
    other.mkdir(exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(other / "key.pem"), "-out", str(other / "cert.pem"), "-days", "30",
         "-subj", "/CN=another key", "-addext", "subjectKeyIdentifier=hash"],
        check=True, capture_output=True,
    )  # fmt: skip
    r, doc = system.verify_json("--cert", str(other / "cert.pem"), pkg)
    assert r.returncode == 1, str(r)
    statuses = {f["path"]: f["status"] for f in doc["files"]}
    assert statuses.pop(str(binary)) == "digest-only"
    assert set(statuses.values()) == {"unknown-key"}, doc
    # Both certificates: ours is found again.
    r, doc = system.verify_json("--cert", str(other / "cert.pem"), "--cert", str(pg.cert), pkg)
    assert doc["summary"] == {"ok": len(objs) - 2, "digest-only": 1, "bad-signature": 1}, doc

    s = system.sign(pkg)
    assert s.returncode == 0, str(s)
    assert s.packages()[pkg] == {
        "signed": 2, "valid": len(objs) - 2, "skipped": 0, "failed": 0, "total": len(objs),
    }, str(s)  # fmt: skip
    assert not evmctl_rejects(pg.cert_der, objs.values())
    assert {p: ima_xattr(p) for p in kept} == kept, "valid signatures were rewritten"


def test_symlinks_not_followed(system):
    """A packaged file replaced by a symlink to a copy of itself elsewhere:
    not followed, not signed, reported. In the root layout, a directory
    replaced by an absolute symlink resolves inside ROOT, never on the host,
    even where the host path holds files with the very MD5s CONTENTS records."""
    system.ensure_signed()
    pg = system.pg
    pkg = f"{CATEGORY}/links-1"
    share = pg.live(pg.ed("/usr/share/links"))
    data = share / "data.txt"
    outside = pg.base / "outside-links" / "data.txt"
    outside.parent.mkdir(exist_ok=True)
    shutil.copyfile(data, outside)
    moved = data.with_name("data.txt.moved")
    data.rename(moved)
    data.symlink_to(outside)
    try:
        s = system.sign(pkg)
        assert s.returncode == 1, str(s)
        assert s.packages()[pkg]["failed"] == 1, str(s)
        assert list(s.failed()) == [str(data)], str(s)
        s = system.sign_text(pkg)
        assert f"portage-ima: {system.shown(data)}: " in s.stderr, str(s)
        assert ima_xattr(outside) is None and ima_xattr(data) is None
        r, doc = system.verify_json(pkg)
        assert r.returncode == 1, str(r)
        bad = {f["path"]: f["status"] for f in doc["files"] if f["status"] != "ok"}
        assert set(bad) == {str(data)}, doc
        print(f"[{pg.layout}] a symlink in place of a file: verify says {bad[str(data)]}")
    finally:
        data.unlink()
        moved.rename(data)

    if pg.layout == "root":
        host = pg.base / "host-links"
        real = share.with_name("links.real")
        shutil.copytree(share, host, copy_function=shutil.copyfile)
        share.rename(real)
        share.symlink_to(host)  # absolute: means ROOT/<host> inside ROOT
        try:
            s = system.sign(pkg)
            assert s.returncode == 1, str(s)
            files = [p for p in host.rglob("*") if p.is_file()]
            assert files and not [p for p in files if ima_xattr(p) is not None], (
                "signed on the host"
            )
            failed = s.failed()
            for p in files:
                assert str(share / p.relative_to(host)) in failed, str(s)
            r, doc = system.verify_json(pkg)
            assert r.returncode == 1, str(r)
            bad = {f["path"]: f["status"] for f in doc["files"] if f["status"] != "ok"}
            assert bad == {str(share / p.relative_to(host)): "missing" for p in files}, doc
        finally:
            share.unlink()
            real.rename(share)

    r = system.verify(pkg)
    assert r.returncode == 0, str(r)


def selected(system, *atoms: str) -> set[str]:
    """The packages `verify ATOM...` checks (exit 0 expected)."""
    r, doc = system.verify_json(*atoms)
    assert r.returncode == 0, str(r)
    assert {f["package"] for f in doc["files"]} == set(doc["packages"]), doc
    return set(doc["packages"])


def test_atoms_select(system):
    """cat/pkg, cat/pkg-VER, =cat/pkg-VER-rN and a bare name select exactly
    the installed package meant, for verify and for sign."""
    system.ensure_signed()
    objs = system.all_objs()
    alpha, gamma = f"{CATEGORY}/alpha-1", f"{CATEGORY}/gamma-1-r1"
    assert selected(system, f"{CATEGORY}/alpha") == {alpha}
    assert selected(system, f"{CATEGORY}/alpha-1") == {alpha}
    assert selected(system, f"={CATEGORY}/alpha-1") == {alpha}
    assert selected(system, "alpha") == {alpha}
    assert selected(system, f"={CATEGORY}/gamma-1-r1") == {gamma}
    assert selected(system, f"{CATEGORY}/gamma-1-r1") == {gamma}
    assert selected(system, "gamma") == {gamma}
    assert selected(system, f"{CATEGORY}/twin") == {f"{CATEGORY}/twin-1"}
    assert selected(system, f"{CATEGORY2}/twin") == {f"{CATEGORY2}/twin-1"}
    assert selected(system, "alpha", f"{CATEGORY}/beta") == {alpha, f"{CATEGORY}/beta-2"}

    # sign by atom: one package line per package named, even with nothing to do.
    s = system.sign("alpha", f"={CATEGORY}/gamma-1-r1")
    assert s.returncode == 0, str(s)
    assert set(s.packages()) == {alpha, gamma}, str(s)
    assert s.packages()[alpha]["valid"] == len(objs[alpha])
    assert s.total()["packages"] == 2


@pytest.mark.parametrize("command", ["verify", "sign"])
def test_atom_ambiguous(system, command):
    """A name installed in two categories: exit 2, both listed, nothing done."""
    before = system.snapshot()
    r = system.run(command, "twin")
    assert r.returncode == 2, str(r)
    assert not r.stdout.strip(), f"exit 2, yet a result was printed:\n{r}"
    assert f"{CATEGORY}/twin" in r.stderr and f"{CATEGORY2}/twin" in r.stderr, str(r)
    assert not TOTAL_LINE.search(r.stdout), str(r)
    assert system.snapshot() == before


@pytest.mark.parametrize("command", ["verify", "sign"])
def test_atom_unknown(system, command):
    """An unknown name: exit 2, naming it and the installed names close to it;
    one bad atom among good ones means nothing is done."""
    system.ensure_signed()
    before = system.snapshot()
    for typo in ("alpa", "alph", f"{CATEGORY}/alpa"):
        r = system.run(command, typo)
        assert r.returncode == 2, str(r)
        assert typo in r.stderr and f"{CATEGORY}/alpha" in r.stderr, f"no suggestion:\n{r}"
    r = system.run(command, f"{CATEGORY}/no-such-package")
    assert r.returncode == 2 and "no-such-package" in r.stderr, str(r)
    r = system.run(command, "alpha", f"{CATEGORY}/no-such-package")
    assert r.returncode == 2 and not TOTAL_LINE.search(r.stdout), str(r)
    assert not r.stdout.strip(), f"exit 2, yet a result was printed:\n{r}"
    assert system.snapshot() == before


@pytest.mark.parametrize("command", ["verify", "sign"])
def test_atom_version_not_installed(system, command):
    """A version that is not installed: exit 2, the installed one named."""
    system.ensure_signed()
    before = system.snapshot()
    for atom, pf in (
        (f"={CATEGORY}/alpha-2", "alpha-1"),
        (f"{CATEGORY}/beta-1", "beta-2"),
        (f"={CATEGORY}/gamma-1-r2", "gamma-1-r1"),
        # = without a revision means -r0, as in Portage.
        (f"={CATEGORY}/gamma-1", "gamma-1-r1"),
    ):
        r = system.run(command, atom)
        assert r.returncode == 2, str(r)
        assert f"{CATEGORY}/{pf}" in r.stderr, f"the installed version is not named:\n{r}"
    assert system.snapshot() == before


def test_usage_errors(system):
    """Neither atoms nor --all, or both: exit 2 with a hint, nothing done."""
    before = system.snapshot()
    for args in (("sign",), ("verify",), ("sign", "--all", "alpha"), ("verify", "--all", "alpha")):
        r = system.run(*args)
        assert r.returncode == 2, str(r)
        assert r.stderr.strip() and not r.stdout.strip(), str(r)
    r = system.run("sign")
    assert "--all" in r.stderr, str(r)
    assert system.snapshot() == before


def test_config_protect(system):
    """The admin changed /etc/cfgp.conf, cfgp-2 arrives as ._cfg0000_cfgp.conf
    (hook disabled): `sign` signs the sibling, leaves the admin's file alone,
    and verify reports the sibling ok and the admin's file as changed (a
    failure only when it is executable)."""
    system.ensure_signed()
    pg = system.pg
    conf = pg.live(pg.ed("/etc/cfgp.conf"))
    with conf.open("a") as f:
        f.write("# changed by the admin\n")
    admin_text, admin_sig = conf.read_bytes(), ima_xattr(conf)
    assert admin_sig is not None

    pg.add_ebuild("cfgp", "2")
    pg.emerge(f"={CATEGORY}/cfgp-2").check()
    cfg = conf.parent / "._cfg0000_cfgp.conf"
    assert cfg.is_file(), "Portage did not protect the changed config file"
    assert ima_xattr(cfg) is None
    pkg = f"{CATEGORY}/cfgp-2"
    objs = system.pg.signable(CATEGORY, "cfgp-2")
    assert objs[pg.ed("/etc/cfgp.conf")] == cfg
    n = len(objs)

    r = system.verify("cfgp")
    assert r.returncode == 1, str(r)

    s = system.sign(f"{CATEGORY}/cfgp")
    assert s.returncode == 0, str(s)
    stats = s.packages()[pkg]
    # Unchanged files (stable.txt, the keepdir) kept cfgp-1's signatures.
    assert stats["failed"] == 0 and stats["total"] == n and stats["signed"] >= 3, str(s)
    assert evmctl_verify(cfg, pg.cert_der)[0]
    assert not evmctl_rejects(pg.cert_der, objs.values())
    assert conf.read_bytes() == admin_text
    assert ima_xattr(conf) == admin_sig, "the admin's file was re-signed"

    # The update is ok, and the live file, the one in use, is reported too
    # (issue 15, finding 4): changed and no longer validly signed, but not
    # executable, so reported without failing the run.
    r, doc = system.verify_json("cfgp")
    assert r.returncode == 0, str(r)
    assert doc["packages"] == {pkg: {"ok": n, "config-changed": 1}}
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path[str(cfg)]["status"] == "ok", doc
    live = by_path[str(conf)]
    assert live["status"] == "config-changed", doc
    assert "signature: bad-signature" in live["detail"], live
    assert "update pending: ._cfg0000_cfgp.conf" in live["detail"], live

    r = system.verify("-v", "cfgp")
    assert r.returncode == 0, str(r)
    lines = r.stdout.splitlines()
    assert f"ok {system.shown(cfg)}" in lines, str(r)
    assert any(line.startswith(f"config-changed {system.shown(conf)} (") for line in lines), str(r)
    assert f"ok   {pkg}: 1 config-changed, {n} ok" in lines, str(r)

    # The same change to an executable config file (an init script): IMA
    # appraisal would refuse to run it, so verify fails, --all included.
    mode = conf.stat().st_mode
    conf.chmod(0o755)
    try:
        r, doc = system.verify_json("cfgp")
        assert r.returncode == 1, str(r)
        live = {f["path"]: f for f in doc["files"]}[str(conf)]
        assert live["status"] == "modified", live
        assert "would refuse to run it" in live["detail"], live
        r, doc = system.verify_json("--all")
        assert r.returncode == 1, str(r)
        assert doc["packages"][pkg] == {"ok": n, "modified": 1}, doc
        assert {f["path"]: f["status"] for f in doc["files"] if f["status"] != "ok"} == {
            str(conf): "modified"
        }, doc
    finally:
        conf.chmod(mode)


def test_interrupt_and_resume(system):
    """SIGINT while `sign --all` works through a gigabyte: exit 130, every
    file signed or untouched and none changed; the rerun finishes the job."""
    system.ensure_signed()
    pg = system.pg
    pg.add_ebuild("big", "1", install=BIG_INSTALL)
    r = pg.emerge(f"={CATEGORY}/big-1").check()
    print(f"[{pg.layout}] emerge of big-1: {r.seconds:.1f}s")
    md5s = system.md5s(CATEGORY, "big-1")
    assert len(md5s) == BIG_FILES + SMALL_FILES
    assert not [p for p in md5s if ima_xattr(p) is not None]
    others = system.snapshot()

    argv = system.argv("sign", "--json", "--all")
    # SIGINT once something is signed and a large file is being read (one of
    # the process's open descriptors): that file must still end signed or
    # untouched, never half-done.
    blobs = {str(p) for p in md5s if p.name.startswith("blob")}
    first, signalled, opened = interrupt_when(
        system,
        argv,
        lambda opened: bool(blobs & opened) and any(ima_xattr(p) is not None for p in md5s),
    )
    if signalled is None:
        pytest.fail(
            f"sign finished before it could be interrupted: make the big package bigger\n{first}"
        )
    print(f"[{pg.layout}] SIGINT after {signalled:.3f}s; the run ended after {first.seconds:.3f}s")
    in_flight = Path(sorted(blobs & opened)[0])

    assert first.returncode == 130, str(first)
    signed = [p for p in md5s if ima_xattr(p) is not None]
    untouched = [p for p in md5s if ima_xattr(p) is None]
    large = len(blobs & {str(p) for p in signed})
    print(
        f"[{pg.layout}] interrupted run: {len(signed)} signed ({large} of the large files), "
        f"{len(untouched)} untouched; "
        f"{in_flight.name} was being read at SIGINT and ended "
        f"{'signed' if in_flight in signed else 'untouched'}"
    )
    assert signed and untouched
    assert not evmctl_rejects(pg.cert_der, signed), "a file was left half-signed"
    assert {p: md5(p) for p in md5s} == md5s, "a file's content changed"
    # The summary counts what was done; the rest is reported as not processed.
    m = re.search(r"interrupted: (\d+) files? not processed", first.stderr)
    assert m, str(first)
    done = first.total()
    assert done["signed"] == len(signed) and done["failed"] == 0, str(first)
    everything = sum(len(o) for o in system.all_objs().values())
    assert done["total"] + int(m[1]) == everything, str(first)
    assert system.snapshot().items() >= others.items(), "signatures of other packages changed"

    again = system.sign("--all")
    assert again.returncode == 0, str(again)
    total = again.total()
    assert (total["signed"], total["failed"], total["packages"]) == (
        len(untouched),
        0,
        len(system.installed()),
    ), str(again)
    print(f"[{pg.layout}] rerun: {again.seconds:.3f}s")
    assert not evmctl_rejects(pg.cert_der, md5s)
    assert {p: md5(p) for p in md5s} == md5s
    r = system.verify(f"{CATEGORY}/big")
    assert r.returncode == 0, str(r)
