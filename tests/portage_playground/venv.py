"""The cached virtualenv holding Portage (from PyPI) and pytest.

Built once at tests/.cache/venv from tests/requirements.txt and rebuilt only
when that file changes (a hash of it is kept in the venv). Run this file to
build it: `python3 tests/portage_playground/venv.py` prints the venv path.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

try:
    from .cachelock import cache_lock
except ImportError:  # run as a script: `python3 tests/portage_playground/venv.py`
    from cachelock import cache_lock

TESTS_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS = TESTS_DIR / "requirements.txt"
VENV = TESTS_DIR / ".cache" / "venv"
# Keylime (its runtime-policy schema and signature code, for `export
# keylime`) in a venv of its own: its dependencies stay out of Portage's.
KEYLIME_REQUIREMENTS = TESTS_DIR / "keylime-requirements.txt"
KEYLIME_VENV = TESTS_DIR / ".cache" / "keylime-venv"


def _requirements_hash(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def ensure_venv(
    python: str | None = None, requirements: Path = REQUIREMENTS, venv: Path = VENV
) -> Path:
    """Return the venv path, creating or refreshing it when needed (under a
    lock beside it: two test workers may ask for the same venv at once)."""
    with cache_lock(venv.with_name(f".{venv.name}.lock")):
        return _ensure_venv_locked(python, requirements, venv)


def _ensure_venv_locked(python: str | None, requirements: Path, venv: Path) -> Path:
    stamp = venv / ".requirements.sha256"
    want = _requirements_hash(requirements)
    if stamp.is_file() and stamp.read_text().strip() == want:
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    python = python or sys.executable
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + ["-r", str(requirements)], check=True)
    stamp.write_text(want + "\n")
    return venv


# Debian's GnuPG bindings (python3-gpg), which a Keylime verifier imports
# and PyPI does not have; built for Python 3.11 like the venv.
DEBIAN_GPG = Path("/usr/lib/python3/dist-packages/gpg")


def ensure_keylime_venv() -> Path:
    """The venv holding Keylime from PyPI (see KEYLIME_REQUIREMENTS), with
    Debian's gpg bindings reachable (only them, not all of dist-packages)."""
    venv = ensure_venv(requirements=KEYLIME_REQUIREMENTS, venv=KEYLIME_VENV)
    with cache_lock(venv.with_name(f".{venv.name}.lock")):
        only_gpg = venv / "debian-gpg"
        if DEBIAN_GPG.is_dir() and not (only_gpg / "gpg").exists():
            only_gpg.mkdir(exist_ok=True)
            (only_gpg / "gpg").symlink_to(DEBIAN_GPG)
            for site in venv.glob("lib/python3*/site-packages"):
                (site / "debian-gpg.pth").write_text(f"{only_gpg}\n")
    return venv


if __name__ == "__main__":
    print(ensure_venv())
