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

TESTS_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS = TESTS_DIR / "requirements.txt"
VENV = TESTS_DIR / ".cache" / "venv"
STAMP = VENV / ".requirements.sha256"


def _requirements_hash() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_venv(python: str | None = None) -> Path:
    """Return the venv path, creating or refreshing it when needed."""
    want = _requirements_hash()
    if STAMP.is_file() and STAMP.read_text().strip() == want:
        return VENV
    if VENV.exists():
        shutil.rmtree(VENV)
    python = python or sys.executable
    subprocess.run([python, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + ["-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(want + "\n")
    return VENV


if __name__ == "__main__":
    print(ensure_venv())
