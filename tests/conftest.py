"""Two test files at a time (pytest-xdist), as tests/run-all runs them.

tests/run-all passes `-n 2 --dist loadfile --no-loadscope-reorder`: QEMU
runs with TCG, one guest CPU per boot, so with one test at a time a core
sat idle through every boot. `--dist loadfile` keeps a file's tests in one
worker, so a module's VM boot (its module-scoped fixture) happens once; a
boot that should run beside another goes into a file of its own
(test_enforce_modes.py beside test_enforce_emerge.py).

The files in LONGEST_FIRST are handed out first, longest first (measured
with `--durations`, see tests/kernel/README.md): the longest boot starts
at once and the shorter files fill the other worker around it. A new VM
test file belongs in that list by its duration. Without `-n` (a developer
running a file or two) the order stays pytest's.

(`--dist loadgroup` with `xdist_group` marks would split a file without a
new file, but pytest-xdist 3.8.0 cannot group under pytest 9: it renames
`item._nodeid`, which pytest 9 no longer reads, and every test becomes a
group of its own.)

What two workers share is made safe where it is built:
`portage_playground.cachelock.cache_lock` around the kernel download, the
portagevm image, the Secure Boot downloads, the venvs and apt-get; every
scratch directory comes from pytest's tmp_path (one base per worker); the
Keylime verifiers bind free ports; keyrings are per process (`keyctl
session`) or inside the VMs. See docs/testing.md, "Two at a time".
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Test files (relative to tests/) started before all others, longest first.
LONGEST_FIRST = (
    "kernel/test_enforce_emerge.py",
    "kernel/test_setup_vm.py",
    "kernel/test_secure_boot.py",
    "e2e/test_keylime_live.py",
    "kernel/test_appraisal.py",
    "kernel/test_policy_load.py",
    "kernel/test_enforce_modes.py",
    "kernel/test_enforce_audit.py",
    "kernel/test_setuid_observe.py",
    "e2e/test_system.py",
    "e2e/test_binpkg.py",
    "e2e/test_emerge.py",
    "e2e/test_hardware_key.py",
)


def _file(item: pytest.Item) -> str:
    return Path(item.fspath).resolve().relative_to(TESTS).as_posix()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `-n` (in the workers, which tell the scheduler the order): the
    files of LONGEST_FIRST first, in that order; the others after, as
    collected."""
    if not (getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput")):
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    # Stable: a file's tests keep their order.
    items.sort(key=lambda item: rank.get(_file(item), len(rank)))
