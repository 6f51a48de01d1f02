"""Fixtures for the end-to-end tests: real emerge, real hook, evmctl as judge.

Run with the cached venv: `python3 tests/portage_playground/venv.py` once,
then `tests/.cache/venv/bin/pytest tests/e2e`. The hook binary is
target/debug/portage-ima (`cargo build --all-features`) or $PORTAGE_IMA_BIN.
Root is needed: emerge merges files, and security.* xattrs need CAP_SYS_ADMIN.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portage_playground import LAYOUTS, Playground, portage_ima_bin


@pytest.fixture(scope="session")
def hook_bin() -> Path:
    path = portage_ima_bin()
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"the hook binary {path} does not exist: run `cargo build --all-features` "
            "at the workspace root (or set PORTAGE_IMA_BIN)"
        )
    return path


@pytest.fixture(scope="module", params=LAYOUTS)
def pg(request, tmp_path_factory, hook_bin) -> Playground:
    """One playground per layout and test module; tests use distinct package
    names so they can share it."""
    if os.geteuid() != 0:
        pytest.skip("real emerge into a scratch ROOT needs root")
    return Playground(tmp_path_factory.mktemp(request.param), request.param, hook=hook_bin)


@pytest.fixture(autouse=True)
def _fresh_config(request):
    """Every test starts from the plain bashrc and ima.toml."""
    if "pg" in request.fixturenames:
        pg = request.getfixturevalue("pg")
        pg.write_bashrc()
        pg.write_ima_toml()
    yield
