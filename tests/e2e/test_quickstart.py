"""A newcomer's path through the README: the "Quick start on Gentoo" lines,
taken from README.md between the `quickstart-begin` and `quickstart-end`
markers, run as written on a scratch Portage tree that already has a
package merged unsigned. Only the documented substitutions of
:func:`quickstart_script` are made (paths into the playground). They must
end with `verify --all` all ok; then the next emerge, through the hook
the lines installed, is signed too, as evmctl (not our code) judges.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

from test_system import System

from portage_playground import REPO_ROOT, SNIPPET
from portage_playground.ima import evmctl_verify

SNIPPET_PATH = "/usr/share/portage-ima/portage-ima.bashrc"


def quickstart_lines() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    m = re.search(r"<!-- quickstart-begin -->\n(.*?)<!-- quickstart-end -->", text, re.S)
    assert m, "README.md has no <!-- quickstart-begin --> ... <!-- quickstart-end --> block"
    block = textwrap.dedent(m.group(1)).strip("\n")
    assert block, "the README's quick start is empty"
    return block.splitlines()


def quickstart_script(pg, keys: Path) -> str:
    """The README's lines with /etc/keys under ``keys``, /etc/portage under
    PORTAGE_CONFIGROOT and the installed snippet's path as this tree's."""
    script = "\n".join(quickstart_lines())
    for old, new in (
        ("/etc/keys", str(keys)),
        ("/etc/portage/", f"{pg.configroot}/etc/portage/"),
        (SNIPPET_PATH, str(SNIPPET)),
    ):
        assert old in script, f"the README's quick start no longer contains {old!r}"
        script = script.replace(old, new)
    # Each line runs (doctor reports what this machine lacks, exit 1, and the
    # reader goes on); the script's status is the last line's, verify's.
    return "set -x\n" + script + "\n"


def test_readme_quickstart_signs_and_verifies(pg, hook_bin, tmp_path):
    pg.write_bashrc(snippet=False)
    pg.ima_toml.write_text("")  # what the ebuild installs: all commented out
    pg.emerge(pg.add_ebuild("qsbefore")).check()  # installed before portage-ima

    keys = tmp_path / "etc-keys"
    env = pg.env(extra={"PATH": f"{Path(hook_bin).parent}:{pg.env()['PATH']}"})
    if pg.layout == "prefix":
        env["EROOT"] = str(pg.eroot)
    script = quickstart_script(pg, keys)
    proc = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    out = f"$ {script}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, out
    # verify names a root other than / once, in its summary ("verified in ROOT:").
    verified = [x for x in proc.stdout.splitlines() if x.startswith("portage-ima: verified")]
    all_ok = r"portage-ima: verified( in \S+)?: (\d+ config-unsigned, )?\d+ ok"
    assert verified and re.fullmatch(all_ok, verified[-1]), out
    assert "FAIL  key" not in proc.stdout and "FAIL  cert" not in proc.stdout, out

    # The hook the quick start added signs the next emerge.
    assert str(SNIPPET) in pg.bashrc.read_text()
    r = pg.emerge(pg.add_ebuild("qsafter")).check()
    program = pg.live(pg.ed("/usr/bin/qsafter"))
    accepted, why = evmctl_verify(program, keys / "x509_ima.der")
    assert accepted, f"{why}\n{r.output}"
    system = System(pg, hook_bin)
    r = system.verify("--all")
    assert r.returncode == 0, str(r)
