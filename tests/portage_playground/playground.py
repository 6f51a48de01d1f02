"""A throwaway Portage installation driven by Portage's own, unmodified emerge.

Two layouts, the two ways Portage places files relative to CONTENTS:

- ``root``: ``ROOT=DIR/root`` (also PORTAGE_CONFIGROOT and EROOT), ``EPREFIX``
  exported empty and ``PORTAGE_OVERRIDE_EPREFIX=DIR/broot`` (the build root),
  like ``ROOT=/mnt/gentoo emerge``;
- ``prefix``: ``EPREFIX = EROOT = PORTAGE_CONFIGROOT = DIR/eprefix``, ROOT
  unset; CONTENTS paths then carry the EPREFIX.

Either way the file CONTENTS names ``path`` is on disk at ``${ROOT%/}${path}``:
:meth:`Playground.live` does that join.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

from .venv import ensure_venv

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SNIPPET = REPO_ROOT / "bashrc.d" / "portage-ima.bashrc"
DEFAULT_HOOK = REPO_ROOT / "target" / "debug" / "portage-ima"
CATEGORY = "test-ima"
REPO_NAME = "ima_test"

LAYOUTS = ("root", "prefix")

MAKE_DEFAULTS = """\
ARCH="amd64"
ACCEPT_KEYWORDS="amd64"
CHOST="x86_64-pc-linux-gnu"
ELIBC="glibc"
KERNEL="linux"
USERLAND="GNU"
USE_EXPAND="ELIBC KERNEL USERLAND"
USE_EXPAND_UNPREFIXED="ARCH"
USE_EXPAND_IMPLICIT="ARCH ELIBC KERNEL USERLAND"
USE_EXPAND_VALUES_ARCH="amd64"
USE_EXPAND_VALUES_ELIBC="glibc"
USE_EXPAND_VALUES_KERNEL="linux"
USE_EXPAND_VALUES_USERLAND="GNU"
"""

# The body of src_install for the usual test package: an executable, data
# files (one that changes with the version, one that never does), a name with
# a space, a config-protected file under /etc, a relative symlink, a keepdir.
FULL_INSTALL = """\
printf '#!/bin/sh\\necho "%s %s"\\n' "${PN}" "${PV}" > "${T}/${PN}" || die
dobin "${T}/${PN}"
dosym "${PN}" "/usr/bin/${PN}-link"
insinto "/usr/share/${PN}"
printf 'version %s\\n' "${PV}" > "${T}/data.txt" || die
printf 'same in every version\\n' > "${T}/stable.txt" || die
printf 'spaces in %s\\n' "${PV}" > "${T}/file with space.txt" || die
doins "${T}/data.txt" "${T}/stable.txt" "${T}/file with space.txt"
insinto /etc
printf 'setting = %s\\n' "${PV}" > "${T}/${PN}.conf" || die
doins "${T}/${PN}.conf"
keepdir "/var/lib/${PN}"
"""

EBUILD_TEMPLATE = """\
# Written by tests/portage_playground: a portage-ima test package.
EAPI=8

DESCRIPTION="portage-ima test package {pn}"
HOMEPAGE="https://example.invalid/portage-ima"
S="${{WORKDIR}}"
LICENSE="MIT"
SLOT="0"
KEYWORDS="amd64"
RESTRICT="test"

src_install() {{
{install}
}}
{phases}"""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One CONTENTS line: ``kind`` is obj, sym, dir, dev or fif."""

    kind: str
    path: str
    md5: str | None = None
    mtime: int | None = None
    target: str | None = None


@dataclasses.dataclass
class EmergeResult:
    """What one emerge run gave: exit status, stdout+stderr, its build log."""

    returncode: int
    output: str
    log: Path | None
    seconds: float

    @property
    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def check(self) -> "EmergeResult":
        """Raise with the whole output if emerge failed."""
        if self.returncode != 0:
            raise AssertionError(
                f"emerge failed with exit {self.returncode}:\n{self.output}"
            )
        return self


def parse_contents(text: str) -> list[Entry]:
    """Parse a vdb CONTENTS file.

    Fields are separated by single spaces and nothing is escaped, so paths
    with spaces are taken apart from the right (obj: md5 and mtime last) or at
    `` -> `` (sym).
    """
    entries = []
    for line in text.splitlines():
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind == "obj":
            path, md5, mtime = rest.rsplit(" ", 2)
            entries.append(Entry(kind, path, md5=md5, mtime=int(mtime)))
        elif kind == "sym":
            path, _, rest = rest.partition(" -> ")
            target, mtime = rest.rsplit(" ", 1)
            entries.append(Entry(kind, path, target=target, mtime=int(mtime)))
        else:
            entries.append(Entry(kind, rest))
    return entries


def portage_ima_bin() -> Path:
    """The binary under test: ``$PORTAGE_IMA_BIN`` (made absolute: emerge and
    the VM builder run elsewhere), or target/debug/portage-ima of this
    checkout."""
    env = os.environ.get("PORTAGE_IMA_BIN")
    return Path(env).resolve() if env else DEFAULT_HOOK


def md5(path: Path | str) -> str | None:
    """The hex MD5 of a file's content, as CONTENTS records it (a symlink is
    followed, as Portage does), or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "md5").hexdigest()
    except OSError:
        return None


def config_update(live: Path, md5sum: str) -> Path | None:
    """Where config protection put the package's version of ``live``: the
    newest ``._cfgNNNN_NAME`` sibling whose content has ``md5sum`` (Portage
    numbers them from 0000 up; CONTENTS records the package's MD5 under the
    live name), or None when there is none."""
    siblings = sorted(live.parent.glob(f"._cfg[0-9][0-9][0-9][0-9]_{live.name}"))
    matching = [c for c in siblings if md5(c) == md5sum]
    return matching[-1] if matching else None


def ebuild_text(pn: str, install: str = FULL_INSTALL, **phases: str) -> str:
    """An EAPI 8 ebuild; ``phases`` maps phase function names (e.g.
    ``pkg_postrm``) to their bodies."""
    body = textwrap.indent(textwrap.dedent(install).strip("\n"), "\t")
    funcs = "".join(
        f"\n{name}() {{\n{textwrap.indent(textwrap.dedent(code).strip(chr(10)), chr(9))}\n}}\n"
        for name, code in phases.items()
    )
    return EBUILD_TEMPLATE.format(pn=pn, install=body, phases=funcs)


def _write(path: Path, text: str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


class Playground:
    """A scratch Portage tree under ``base`` in one of :data:`LAYOUTS`.

    Nothing is shared with the host's /etc/portage or /var/db/pkg; emerge runs
    as root with ROOT/EPREFIX inside ``base``.
    """

    def __init__(self, base: Path, layout: str = "root", hook: Path | None = None):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
        self.base = Path(base).resolve()
        self.layout = layout
        self.venv = ensure_venv()
        self.hook = Path(hook) if hook else DEFAULT_HOOK
        if layout == "root":
            self.root = self.base / "root"
            self.eprefix = ""
            self.broot = self.base / "broot"
            self.eroot = self.root
        else:
            self.root = Path("/")
            self.eprefix = str(self.base / "eprefix")
            self.broot = Path(self.eprefix)
            self.eroot = Path(self.eprefix)
        self.configroot = self.eroot
        self.repo = self.base / "repo"
        self.tmpdir = self.base / "tmp"
        self.logdir = self.base / "log"
        self.keys = self.base / "keys"
        self.bin = self.base / "bin"
        self.key = self.keys / "ima.key.pem"
        self.cert = self.keys / "ima.cert.pem"
        self.cert_der = self.keys / "ima.cert.der"
        self._setup()

    # ---- construction -------------------------------------------------

    def _setup(self) -> None:
        for d in (self.tmpdir, self.logdir, self.base / "distfiles", self.base / "pkgdir"):
            d.mkdir(parents=True, exist_ok=True)
        share = self.venv / "share" / "portage" / "config"
        for eroot in {self.eroot, self.broot}:
            for sub in ("var/db/pkg", "var/cache/edb", "var/lib/portage", "etc/portage"):
                (eroot / sub).mkdir(parents=True, exist_ok=True)
            _write(eroot / "var/lib/portage/world", "")
        cfg = self.broot / "share" / "portage" / "config"
        (cfg / "sets").mkdir(parents=True, exist_ok=True)
        shutil.copy(share / "make.globals", cfg / "make.globals")
        shutil.copy(share / "sets" / "portage.conf", cfg / "sets" / "portage.conf")
        self._setup_repo()
        self._setup_config()
        self._setup_shims()
        self._setup_keys()
        self._install_snippet()
        self.write_bashrc()
        self.write_ima_toml()

    def _setup_repo(self) -> None:
        r = self.repo
        _write(r / "profiles/repo_name", REPO_NAME + "\n")
        _write(r / "profiles/categories", CATEGORY + "\n")
        _write(r / "profiles/arch.list", "amd64\n")
        _write(r / "profiles/profiles.desc", "amd64 default stable\n")
        _write(r / "profiles/default/eapi", "8\n")
        _write(r / "profiles/default/make.defaults", MAKE_DEFAULTS)
        _write(
            r / "metadata/layout.conf",
            "masters =\nthin-manifests = true\nsign-manifests = false\n"
            "profile-formats = portage-2\ncache-formats =\n",
        )
        _write(r / "licenses/MIT", "MIT License (test stand-in)\n")

    def _setup_config(self) -> None:
        # The build root (layout root) gets the same configuration: emerge
        # reads it for the host side of ROOT=... installs.
        for eroot in {self.configroot, self.broot}:
            self._write_config(eroot / "etc" / "portage")

    def _write_config(self, etc: Path) -> None:
        _write(
            etc / "make.conf",
            textwrap.dedent(
                f"""\
                ACCEPT_LICENSE="*"
                FEATURES="-sandbox -usersandbox -userpriv -network-sandbox -ipc-sandbox -pid-sandbox -mount-sandbox -merge-sync -news"
                PORTAGE_USERNAME=root
                PORTAGE_GRPNAME=root
                CLEAN_DELAY=0
                EMERGE_WARNING_DELAY=0
                PORTAGE_TMPDIR="{self.tmpdir}"
                DISTDIR="{self.base / 'distfiles'}"
                PKGDIR="{self.base / 'pkgdir'}"
                PORTAGE_LOGDIR="{self.logdir}"
                PORTAGE_ELOG_CLASSES="info warn error log qa"
                PORTAGE_ELOG_SYSTEM="save"
                """
            ),
        )
        _write(
            etc / "repos.conf" / "ima_test.conf",
            f"[DEFAULT]\nmain-repo = {REPO_NAME}\n\n"
            f"[{REPO_NAME}]\nlocation = {self.repo}\nauto-sync = no\n",
        )
        profile = etc / "make.profile"
        if profile.is_symlink():
            profile.unlink()
        profile.symlink_to(self.repo / "profiles" / "default")

    def _setup_shims(self) -> None:
        self.bin.mkdir(parents=True, exist_ok=True)
        for name, target in (("scanelf", shutil.which("true")), ("gtar", shutil.which("tar"))):
            link = self.bin / name
            if not link.is_symlink():
                link.symlink_to(target)

    def _install_snippet(self) -> None:
        """The snippet and the hook as the ebuild installs them, under
        ``DIR/usr``: ``share/portage-ima/portage-ima.bashrc`` beside
        ``bin/portage-ima`` (what a binary merge runs, whatever PORTAGE_IMA
        says). Symlinks, so the tree under test is what runs."""
        self.snippet = self.base / "usr" / "share" / "portage-ima" / "portage-ima.bashrc"
        for link, target in ((self.snippet, SNIPPET), (self.base / "usr" / "bin" / "portage-ima", self.hook)):
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            link.symlink_to(Path(target).resolve())

    def _setup_keys(self) -> None:
        """A throwaway RSA-2048 key and a self-signed code-signing certificate
        (PEM for portage-ima, DER for evmctl)."""
        self.keys.mkdir(parents=True, exist_ok=True)
        if self.cert_der.exists():
            return
        run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
        run(
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(self.key), "-out", str(self.cert),
            "-days", "3650", "-subj", "/CN=portage-ima e2e test key",
            "-addext", "keyUsage=digitalSignature",
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "subjectKeyIdentifier=hash",
        )  # fmt: skip
        self.key.chmod(0o600)
        run("openssl", "x509", "-in", str(self.cert), "-outform", "der", "-out", str(self.cert_der))

    # ---- configuration a test may change ------------------------------

    @property
    def bashrc(self) -> Path:
        return self.configroot / "etc" / "portage" / "bashrc"

    @property
    def ima_toml(self) -> Path:
        return self.configroot / "etc" / "portage" / "ima.toml"

    def write_bashrc(self, extra: str = "", before: str = "", snippet: bool = True) -> None:
        """/etc/portage/bashrc: ``before``, then ``source`` of our snippet,
        then ``extra`` (test-specific code, e.g. a post_pkg_postrm)."""
        parts = [before] if before else []
        if snippet:
            parts.append(f'source "{self.snippet}"')
        if extra:
            parts.append(textwrap.dedent(extra))
        _write(self.bashrc, "\n".join(parts) + "\n")

    def write_ima_toml(self, **settings) -> None:
        """/etc/portage/ima.toml with our key and certificate plus ``settings``
        (e.g. ``strict=True``, ``premerge="never"``); a setting given as None
        is left out (its default applies).

        ``config_files = "sign"`` unless given: the tests that check that
        every file of a package is signed (its /etc file included) were
        written for that, the default before 0.2; the new default
        (``executable``) is tested on its own (test_config_files.py)."""
        values = {
            "key": str(self.key),
            "cert": str(self.cert),
            "hash": "sha256",
            "config_files": "sign",
        }
        values.update(settings)
        lines = []
        for k, v in values.items():
            if v is None:
                continue
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, int):
                lines.append(f"{k} = {v}")
            else:
                lines.append(f'{k} = "{v}"')
        _write(self.ima_toml, "\n".join(lines) + "\n")

    def add_ebuild(self, pn: str, pv: str = "1", install: str = FULL_INSTALL, **phases: str) -> str:
        """Write ``CATEGORY/pn/pn-pv.ebuild``; returns the atom ``=cat/pn-pv``."""
        _write(self.repo / CATEGORY / pn / f"{pn}-{pv}.ebuild", ebuild_text(pn, install, **phases))
        return f"={CATEGORY}/{pn}-{pv}"

    # ---- running emerge ------------------------------------------------

    def env(self, hook: Path | str | None = None, extra: dict | None = None) -> dict:
        """The environment emerge runs in."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k in ("HOME", "TERM", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME")
        }
        env.update(
            PATH=f"{self.bin}:{self.venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            PORTAGE_OVERRIDE_EPREFIX=str(self.broot),
            PORTAGE_CONFIGROOT=str(self.configroot),
            EPREFIX=self.eprefix,
            NOCOLOR="true",
            PYTHONDONTWRITEBYTECODE="1",
            PORTAGE_IMA=str(hook if hook is not None else self.hook),
        )
        if self.layout == "root":
            env["ROOT"] = str(self.root)
        if extra:
            for k, v in extra.items():
                if v is None:
                    env.pop(k, None)
                else:
                    env[k] = str(v)
        return env

    def emerge(
        self,
        *atoms: str,
        args: tuple[str, ...] = ("--oneshot",),
        env: dict | None = None,
        hook: Path | str | None = None,
        timeout: float = 300,
    ) -> EmergeResult:
        """Run ``emerge ARGS ATOMS``; never raises on failure (see
        :meth:`EmergeResult.check`)."""
        cmd = [str(self.venv / "bin" / "emerge"), "--color=n", *args, *atoms]
        start = time.time()
        proc = subprocess.run(
            cmd,
            env=self.env(hook, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=self.base,
        )
        took = time.time() - start
        return EmergeResult(proc.returncode, proc.stdout, self._latest_log(atoms, start), took)

    def _latest_log(self, atoms, since: float) -> Path | None:
        logs = [p for p in self.logdir.glob("*.log") if p.stat().st_mtime >= since - 1]
        for atom in atoms:
            name = atom.lstrip("=<>~").replace("/", ":")
            mine = [p for p in logs if p.name.startswith(name)]
            if mine:
                logs = mine
        return max(logs, key=lambda p: p.stat().st_mtime, default=None)

    # ---- inspecting the result -----------------------------------------

    def vdb(self, cat: str, pf: str) -> Path:
        return self.eroot / "var" / "db" / "pkg" / cat / pf

    def contents(self, cat: str, pf: str) -> list[Entry]:
        """The installed package's CONTENTS, parsed."""
        return parse_contents((self.vdb(cat, pf) / "CONTENTS").read_text())

    def live(self, path: str) -> Path:
        """Where a CONTENTS path is on disk: ``${ROOT%/}${path}``."""
        return Path(str(self.root).rstrip("/") + path)

    def signable(self, cat: str, pf: str) -> dict[str, Path]:
        """CONTENTS path -> the live file that must carry the signature for
        each ``obj``: the file itself, or, for a config file the admin changed
        (or replaced by a symlink), the ``._cfgNNNN_`` sibling with the
        CONTENTS MD5 (see :func:`config_update`)."""
        found = {}
        for e in self.contents(cat, pf):
            if e.kind != "obj":
                continue
            live = self.live(e.path)
            if live.is_symlink() or md5(live) != e.md5:
                live = config_update(live, e.md5) or live
            found[e.path] = live
        return found

    def ed(self, path: str) -> str:
        """A path as the package sees it (``${EPREFIX}/usr/...``)."""
        return self.eprefix + path

    def __repr__(self) -> str:
        return f"Playground({self.base}, layout={self.layout!r})"
