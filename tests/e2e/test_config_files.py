"""Issue 10's config files, through Portage's own emerge and the real hook:
a package with a config file (/etc/NAME.conf, 0644), an executable
config-protected script (/etc/init.d/NAME.init, 0755) and a program, merged
under each `config_files` mode. Judges: `evmctl ima_verify` for signatures,
`evmctl ima_hash` (run on a copy) for digests, and `portage-ima verify`.

Why the modes exist (a signed file cannot be opened for writing under an
appraise rule, a hashed one can and the kernel updates its digest) is shown
on a real kernel in tests/kernel/test_appraisal.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from portage_playground import CATEGORY
from portage_playground.ima import evmctl_verify, ima_xattr, summaries
from portage_playground.playground import FULL_INSTALL

INSTALL = FULL_INSTALL + """\
printf '#!/bin/sh\\necho init %s\\n' "${PN}" > "${T}/${PN}.init" || die
exeinto /etc/init.d
doexe "${T}/${PN}.init"
"""

# mode (None: no setting, the default) -> xattr kind of the config file, of
# the init script, the hook's postinst counts, and verify's statuses.
MODES = {
    None: ("none", "signature", {"skipped": 1, "hashed": 0}, ("config-unsigned", "ok")),
    "executable": ("none", "signature", {"skipped": 1, "hashed": 0}, ("config-unsigned", "ok")),
    "hash": ("digest", "signature", {"skipped": 0}, ("hashed", "ok")),
    "sign": ("signature", "signature", {"skipped": 0, "hashed": 0}, ("ok", "ok")),
    "skip": ("none", "none", {"skipped": 2, "hashed": 0}, ("config-unsigned", "config-unsigned")),
}


def evmctl_hash_of(path: Path, tmp: Path) -> bytes:
    """What `evmctl ima_hash --hashalgo sha256` writes for path's content."""
    copy = tmp / "evmctl-copy"
    shutil.copyfile(path, copy)
    subprocess.run(["evmctl", "ima_hash", "--hashalgo", "sha256", str(copy)],
                   check=True, capture_output=True)
    value = ima_xattr(copy)
    assert value is not None
    return value


def kind(path: Path, pg, tmp: Path) -> str:
    """none, digest (exactly evmctl ima_hash's) or signature (evmctl accepts it)."""
    value = ima_xattr(path)
    if value is None:
        return "none"
    if value[0] in (0x01, 0x04):
        assert value == evmctl_hash_of(path, tmp), f"{path}: not evmctl ima_hash's digest"
        return "digest"
    ok, out = evmctl_verify(path, pg.cert_der)
    assert ok, f"{path}: evmctl ima_verify rejects it: {out}"
    return "signature"


def command_json(pg, command: str, atom: str) -> tuple[int, dict]:
    """`portage-ima sign|verify --json ATOM` on the playground's vdb, as an
    admin runs it (the prefix layout from EPREFIX/EROOT)."""
    argv = [str(pg.hook), "--config", str(pg.ima_toml), command, "--json", atom]
    env = {k: v for k, v in os.environ.items() if k not in ("ROOT", "EROOT", "EPREFIX")}
    if pg.layout == "root":
        argv += ["--root", str(pg.root)]
    else:
        env.update(EPREFIX=pg.eprefix, EROOT=str(pg.eroot))
    if command == "sign":
        argv += ["--progress", "none"]
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    try:
        return p.returncode, json.loads(p.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"{command} --json printed no JSON:\n{p.stdout}{p.stderr}") from None


def verify_json(pg, atom: str) -> tuple[int, dict]:
    return command_json(pg, "verify", atom)


@pytest.mark.parametrize("mode", list(MODES), ids=lambda m: m or "default")
def test_config_files_mode(pg, mode, tmp_path):
    """Each mode: the config file carries nothing, a digest or a signature;
    the executable config file is signed in every mode but skip; everything
    else is signed; the hook's counts and verify agree, and nothing fails."""
    conf_kind, script_kind, counts, statuses = MODES[mode]
    pg.write_ima_toml(config_files=mode)
    pn = f"cfgm-{mode or 'default'}"
    atom = pg.add_ebuild(pn, "1", install=INSTALL)
    r = pg.emerge(atom).check()
    conf = pg.live(pg.ed(f"/etc/{pn}.conf"))
    script = pg.live(pg.ed(f"/etc/init.d/{pn}.init"))
    assert os.access(script, os.X_OK)
    assert (kind(conf, pg, tmp_path), kind(script, pg, tmp_path)) == (conf_kind, script_kind)
    others = [pg.live(p) for p in pg.signable(CATEGORY, f"{pn}-1")
              if not p.startswith(pg.ed("/etc/"))]
    assert others and all(kind(p, pg, tmp_path) == "signature" for p in others)

    found = summaries(r.output, f"{CATEGORY}/{pn}-1")
    assert found, r.output
    s = found[-1]
    assert s["failed"] == 0 and all(s[k] == v for k, v in counts.items()), (s, r.output)
    if mode == "hash":
        # Hashed before the merge (same filesystem), found valid in postinst.
        assert f"{CATEGORY}/{pn}-1: signed" in r.output and "hashed 1 config file" in r.output

    code, doc = verify_json(pg, f"{CATEGORY}/{pn}")
    by_path = {f["path"]: f["status"] for f in doc["files"]}
    assert code == 0, doc
    assert (by_path[str(conf)], by_path[str(script)]) == statuses, doc
    assert {st for p, st in by_path.items() if p not in (str(conf), str(script))} == {"ok"}

    # `sign ATOM` applies the same rules to the installed package: with
    # every security.ima removed, it puts back what the hook wrote.
    files = [pg.live(p) for p in pg.signable(CATEGORY, f"{pn}-1")]
    before = {f: ima_xattr(f) for f in files}
    for f in files:
        subprocess.run(["setfattr", "-x", "security.ima", str(f)], capture_output=True)
    code, doc = command_json(pg, "sign", f"{CATEGORY}/{pn}")
    assert code == 0 and doc["summary"]["failed"] == 0, doc
    assert doc["summary"]["hashed"] == (1 if mode == "hash" else 0), doc
    assert doc["summary"]["skipped"] == counts["skipped"], doc
    after = {f: ima_xattr(f) for f in files}
    # Digests and RSA signatures are deterministic: byte for byte the same.
    assert after == before


def test_hash_mode_upgrade_with_an_edited_config_file(pg, tmp_path):
    """config_files = "hash": the admin edits the config file, the upgrade
    lands as ._cfg0000_NAME.conf and gets the digest of its content; the
    admin's file is left as it is and verify reports it config-changed."""
    pg.write_ima_toml(config_files="hash")
    pn = "cfgm-upg"
    pg.add_ebuild(pn, "1", install=INSTALL)
    a2 = pg.add_ebuild(pn, "2", install=INSTALL)
    pg.emerge(f"={CATEGORY}/{pn}-1").check()
    conf = pg.live(pg.ed(f"/etc/{pn}.conf"))
    assert kind(conf, pg, tmp_path) == "digest"
    with conf.open("a") as f:
        f.write("# changed by the admin\n")
    stale = ima_xattr(conf)
    pg.emerge(a2).check()
    cfg = conf.parent / f"._cfg0000_{pn}.conf"
    assert cfg.is_file(), "Portage did not protect the changed config file"
    assert kind(cfg, pg, tmp_path) == "digest"
    assert ima_xattr(conf) == stale, "the admin's file was rewritten"
    code, doc = verify_json(pg, f"{CATEGORY}/{pn}")
    by_path = {f["path"]: f["status"] for f in doc["files"]}
    assert code == 0, doc
    assert by_path[str(cfg)] == "hashed" and by_path[str(conf)] == "config-changed", doc
