"""The README's "Install on Gentoo" lines, run as written with Portage's own
emaint and emerge: a repos.conf entry whose sync-uri is a git URL of this
repository (here a file:// repository holding the working tree) makes
`emaint sync -r portage-ima` clone the overlay, and emerge resolves
app-portage/portage-ima against a stand-in for ::gentoo (its eclasses empty:
Gentoo's real ones are not on this machine, so dependency calculation and
metadata are what is proven, not a build).

The lines come from README.md, between the `install-begin` and `install-end`
markers; the only changes are the documented substitutions in
:func:`readme_install_script` (paths into the playground, the URL, and
--pretend for --ask)."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from portage_playground import REPO_ROOT

README_URL = "https://github.com/portage-ima/portage-ima.git"
# Stand-ins for what the ebuilds use from ::gentoo.
ECLASSES = ("cargo", "git-r3", "optfeature", "readme.gentoo-r1", "shell-completion", "systemd", "toolchain-funcs")
PACKAGES = {
    "dev-libs/openssl-3.0.15": 'SLOT="0/3"',
    "virtual/pkgconfig-3": 'SLOT="0"',
    "app-crypt/ima-evm-utils-1.5": 'SLOT="0"',
    "sys-apps/keyutils-1.6.3": 'SLOT="0"',
}


def readme_install_lines() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    m = re.search(r"<!-- install-begin -->\n(.*?)<!-- install-end -->", text, re.S)
    assert m, "README.md has no <!-- install-begin --> ... <!-- install-end --> block"
    block = textwrap.dedent(m.group(1)).strip("\n")
    assert block, "the README's install block is empty"
    return block.splitlines()


def readme_install_script(pg, upstream: Path, repos: Path) -> str:
    """The README's lines with the playground's paths: /etc/portage under
    PORTAGE_CONFIGROOT, /var/db/repos under ``repos``, the project URL as a
    file:// URL of ``upstream``, and emerge --ask as emerge --pretend."""
    script = "\n".join(readme_install_lines())
    for old, new in (
        ("/etc/portage/", f"{pg.configroot}/etc/portage/"),
        ("/var/db/repos/", f"{repos}/"),
        (README_URL, upstream.as_uri()),
        ("emerge --ask ", "emerge --pretend "),
    ):
        assert old in script, f"the README's install lines no longer contain {old!r}"
        script = script.replace(old, new)
    return "set -euxo pipefail\n" + script + "\n"


def make_upstream(path: Path) -> Path:
    """A git repository whose one commit is the working tree (tracked and new
    files, not ignored ones): what a clone of the project would get."""
    files = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = REPO_ROOT / name
        if src.is_file() and not src.is_symlink():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, path / name)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "working tree"], check=True)
    return path


def make_gentoo_standin(pg, path: Path) -> None:
    """A master repository named gentoo: the eclasses (empty), the packages
    the ebuilds depend on, one amd64 profile; made the main repository."""
    w = lambda rel, text: (path / rel).parent.mkdir(parents=True, exist_ok=True) or (path / rel).write_text(text)  # noqa: E731
    w("profiles/repo_name", "gentoo\n")
    w("profiles/categories", "".join(sorted({p.split("/")[0] + "\n" for p in PACKAGES})))
    w("profiles/arch.list", "amd64\n")
    w("profiles/profiles.desc", "amd64 default stable\n")
    w("profiles/default/eapi", "8\n")
    w("profiles/default/make.defaults", (pg.repo / "profiles/default/make.defaults").read_text())
    w("metadata/layout.conf", "masters =\nthin-manifests = true\nsign-manifests = false\nprofile-formats = portage-2\n")
    for eclass in ECLASSES:
        w(f"eclass/{eclass}.eclass", f"# stand-in for ::gentoo's {eclass}.eclass: defines nothing\n")
    for cpv, slot in PACKAGES.items():
        cat, pf = cpv.split("/")
        pn = re.sub(r"-[0-9].*", "", pf)
        w(f"{cat}/{pn}/{pf}.ebuild", f'EAPI=8\nDESCRIPTION="stand-in"\nHOMEPAGE="https://example.invalid"\n'
          f'S="${{WORKDIR}}"\nLICENSE="MIT"\n{slot}\nKEYWORDS="amd64"\n')  # fmt: skip
    for etc in {pg.configroot / "etc/portage", pg.broot / "etc/portage"}:
        conf = etc / "repos.conf"
        for old in conf.iterdir():
            old.unlink()
        (conf / "gentoo.conf").write_text(f"[DEFAULT]\nmain-repo = gentoo\n\n[gentoo]\nlocation = {path}\nauto-sync = no\n")
        (etc / "make.profile").unlink()
        (etc / "make.profile").symlink_to(path / "profiles/default")


def test_readme_install_syncs_and_resolves(pg, tmp_path):
    if not shutil.which("git"):
        pytest.fail("git is not installed (scripts/install-deps tests installs it)")
    upstream = make_upstream(tmp_path / "upstream")
    repos = pg.base / "repos"
    repos.mkdir(exist_ok=True)
    make_gentoo_standin(pg, repos / "gentoo")
    script = readme_install_script(pg, upstream, repos)
    proc = subprocess.run(["bash", "-c", script], env=pg.env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the README's install lines failed:\n{script}\n{out}"

    synced = repos / "portage-ima"
    assert (synced / ".git").is_dir(), f"emaint sync made no git clone at {synced}:\n{out}"
    assert (synced / "profiles/repo_name").read_text().strip() == "portage-ima"
    # emerge --pretend chose the release, from the synced overlay, with its
    # openssl dependencies from the master repository.
    # (~: the release is keyworded ~amd64, accepted by the README's line.)
    assert re.search(r"\[ebuild +N +~\] app-portage/portage-ima-[0-9][0-9.]* .*USE=\"openssl -test\"", out), out
    for dep in ("dev-libs/openssl", "virtual/pkgconfig"):
        assert re.search(rf"\[ebuild +N +\] {dep}-", out), f"{dep} not pulled in:\n{out}"
