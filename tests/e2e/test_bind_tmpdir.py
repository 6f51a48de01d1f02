"""PORTAGE_TMPDIR on a bind mount of ROOT's own filesystem (issue 15, finding
12): the image and ROOT share st_dev, yet rename() between the two mounts
fails with EXDEV, so Portage copies and security.ima set in preinst is lost.
preinst must see it (by mount, not by device), not claim to have signed,
and postinst signs everything. Runs in both layouts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from checks import assert_signed, snapshot

from portage_playground import CATEGORY
from portage_playground.ima import summaries


def test_tmpdir_bind_mounted_from_roots_filesystem(pg):
    pn = "bindtmp"
    atom = pg.add_ebuild(pn)
    # Both directories beside the playground, so on ROOT's filesystem.
    source = Path(tempfile.mkdtemp(prefix="portage-ima-bind-src.", dir=pg.base.parent))
    target = Path(tempfile.mkdtemp(prefix="portage-ima-bind-tmp.", dir=pg.base.parent))
    assert os.stat(source).st_dev == os.stat(pg.live(pg.ed("/"))).st_dev
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
    try:
        assert os.stat(target).st_dev == os.stat(source).st_dev
        before = snapshot(pg)
        r = pg.emerge(atom, env={"PORTAGE_TMPDIR": target}).check()
    finally:
        subprocess.run(["umount", str(target)], check=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(source, ignore_errors=True)
    assert f"{target}/portage/{CATEGORY}/{pn}-1/image" in r.output
    objs = assert_signed(pg, f"{pn}-1", before)
    hook = [line for line in r.output.splitlines() if "portage-ima" in line]
    # preinst does not claim what the merge would undo, and says why.
    assert not [line for line in hook if re.search(r"signed \d+ files? before the merge", line)], (
        "\n".join(hook)
    )
    assert any(
        "not signing before the merge" in line and "another mount of the same filesystem" in line
        for line in hook
    ), "\n".join(hook)
    # postinst signed everything itself.
    post = summaries(r.output, f"{CATEGORY}/{pn}-1")[-1]
    assert (post["before"], post["now"], post["failed"]) == (0, len(objs), 0), r.output
