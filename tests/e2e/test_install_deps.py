"""scripts/install-deps, the one Debian package list of scripts/demo and
tests/run-all, and the demo using it on a fresh machine: apt-get and
dpkg-query are stand-ins that record what they are asked (nothing is
installed), so a machine where everything is present can play a fresh one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from portage_playground import REPO_ROOT


@pytest.fixture
def fresh_debian(tmp_path) -> tuple[Path, Path]:
    """A PATH directory whose dpkg-query knows no package and whose apt-get
    records its arguments; returns (bin dir, apt-get log)."""
    if os.geteuid() != 0:
        pytest.skip("install-deps installs only as root")
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "apt-get.log"
    (fake / "dpkg-query").write_text("#!/bin/sh\nexit 1\n")
    (fake / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    for f in fake.iterdir():
        f.chmod(0o755)
    return fake, log


def installed(log: Path) -> set[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return {w for line in lines if line.startswith("install ") for w in line.split() if not w.startswith("-")}


def test_demo_list_is_part_of_the_tests_list(fresh_debian):
    fake, log = fresh_debian
    env = {**os.environ, "PATH": f"{fake}:/usr/bin:/bin"}
    subprocess.run([str(REPO_ROOT / "scripts/install-deps"), "demo"], env=env, check=True, capture_output=True)
    demo = installed(log)
    log.unlink()
    subprocess.run([str(REPO_ROOT / "scripts/install-deps"), "tests"], env=env, check=True, capture_output=True)
    tests = installed(log)
    assert {"ima-evm-utils", "openssl", "libssl-dev", "pkg-config", "python3-venv"} <= demo, demo
    assert demo <= tests and {"keyutils", "shellcheck", "git"} <= tests, (demo, tests)


def test_run_all_installs_through_install_deps():
    text = (REPO_ROOT / "tests/run-all").read_text()
    assert "scripts/install-deps tests" in text
    assert "apt-get" not in text, "tests/run-all has its own apt-get again: use scripts/install-deps"


def test_demo_installs_before_it_checks_tools(fresh_debian):
    """On a machine without the packages the demo installs them first (the
    stand-in apt-get is asked for ima-evm-utils), and a missing cargo is
    reported with what to do."""
    fake, log = fresh_debian
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts/demo")],
        env={"PATH": f"{fake}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "ima-evm-utils" in installed(log), (proc.stdout, proc.stderr)
    assert proc.returncode != 0 and "`cargo` not found in PATH: install Rust with rustup" in proc.stderr, (
        proc.stdout,
        proc.stderr,
    )
