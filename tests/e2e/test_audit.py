"""Issue 11: `portage-ima audit` on a root that real emerges wrote, fed a
kernel log that denies its files (dmesg as a VM's serial console prints it,
CR LF line ends included). Each file is classified against the vdb Portage
wrote; `--fix` signs only the file whose content is what the package
installed, and evmctl (not our code) is the judge of that signature.
"""

from __future__ import annotations

import json

from test_system import System

from portage_playground import CATEGORY
from portage_playground.ima import evmctl_verify, ima_xattr


def denial(serial: int, cause: str, path: str) -> str:
    name = path.encode().hex().upper() if " " in path else f'"{path}"'
    return (
        f"[   15.{serial:06d}] audit: type=1800 audit(1795976846.{serial:03d}:{serial}): pid=340 "
        "uid=0 auid=4294967295 ses=4294967295 subj=unconfined op=appraise_data "
        f'cause={cause} comm="sh" name={name} dev="vda" ino=4 res=0 errno=0'
    )


def test_audit_classifies_denials_and_fix_signs_pristine_files(pg, hook_bin, tmp_path):
    pg.write_bashrc(snippet=False)  # merged unsigned: what enforce mode then denies
    pg.emerge(pg.add_ebuild("audpkg")).check()
    system = System(pg, hook_bin)
    pristine = pg.ed("/usr/bin/audpkg")
    spaced = pg.ed("/usr/share/audpkg/file with space.txt")
    modified = pg.ed("/usr/share/audpkg/data.txt")
    gone = pg.ed("/usr/share/audpkg/stable.txt")
    local = pg.ed("/usr/local/bin/local-script.sh")
    pg.live(modified).write_bytes(b"changed since the merge\n")
    gone_bytes = pg.live(gone).read_bytes()
    pg.live(gone).unlink()
    pg.live(local).parent.mkdir(parents=True, exist_ok=True)
    pg.live(local).write_text("#!/bin/sh\necho local\n")
    log = tmp_path / "console.log"
    lines = [
        denial(1, "IMA-signature-required", pristine),
        denial(2, "IMA-signature-required", spaced),
        denial(3, "invalid-hash", modified),
        denial(4, "IMA-signature-required", gone),
        denial(5, "IMA-signature-required", local),
        denial(6, "IMA-signature-required", pristine),
    ]
    log.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    try:
        r = system.run("audit", "--log", str(log), "--json")
        assert r.returncode == 1, str(r)
        doc = json.loads(r.stdout)
        got = {f["path"]: (f["class"], f.get("package")) for f in doc["files"]}
        pkg = f"{CATEGORY}/audpkg-1"
        assert got == {
            pristine: ("unsigned-pristine", pkg),
            spaced: ("unsigned-pristine", pkg),
            modified: ("modified", pkg),
            gone: ("gone", pkg),
            local: ("not-owned", None),
        }, str(r)
        assert next(f for f in doc["files"] if f["path"] == pristine)["denials"] == 2
        assert doc["unreadable_lines"] == []
        assert ima_xattr(pg.live(pristine)) is None, "audit without --fix writes nothing"

        text = system.run("audit", "--log", str(log))
        assert f"portage-ima sign ={pkg}" in text.stdout, str(text)

        fixed = system.run("audit", "--log", str(log), "--fix", "--json")
        doc = json.loads(fixed.stdout)
        got = {f["path"]: (f["class"], f.get("fixed")) for f in doc["files"]}
        assert got[pristine] == ("valid", "signed") and got[spaced] == ("valid", "signed"), str(fixed)
        for path in (pristine, spaced):
            ok, out = evmctl_verify(pg.live(path), pg.cert_der)
            assert ok, f"{path}: {out}"
        assert ima_xattr(pg.live(modified)) is None, "a modified file is never signed"
        assert ima_xattr(pg.live(local)) is None, "a file no package owns is never signed"
        assert got[modified][0] == "modified" and got[local][0] == "not-owned"
    finally:
        pg.live(gone).write_bytes(gone_bytes)
        pg.live(local).unlink()
