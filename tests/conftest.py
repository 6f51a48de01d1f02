"""Two test workers at a time (pytest-xdist), as tests/run-all runs them.

tests/run-all passes `-n 2 --dist loadgroup --no-loadscope-reorder`: QEMU
runs with TCG, one guest CPU per boot, so with one test at a time a core
sits idle through every boot. Here every test is put in an `xdist_group`
named after its file (unless the test names a group of its own), so a
module's VM boot (its module-scoped fixture) happens once, in one worker;
`--dist loadgroup` then hands whole groups to the two workers. A test file
may split off tests that boot on their own (test_enforce_emerge.py's short
boots) with `@pytest.mark.xdist_group("NAME")`, and they may run in the other
worker while the long boot goes on.

The groups in LONGEST_FIRST are handed out first, longest first (measured
with `--durations`, see tests/kernel/README.md): the longest boot starts
at once and the shorter files fill the other worker around it. A new VM
test file belongs in that list by its duration. Without `-n` (one file
at a time, as a developer runs them) nothing here changes the order.

What two workers share is made safe where it is built:
`portage_playground.cachelock.cache_lock` around the kernel download, the
portagevm image, the Secure Boot downloads, the venvs and apt-get; every
scratch directory comes from pytest's tmp_path (one base per worker); the
Keylime verifiers bind free ports; keyrings are per process (`keyctl
session`) or inside the VMs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

#: Groups (a test file relative to tests/, or an explicit xdist_group name)
#: started before all others, longest first.
LONGEST_FIRST = (
    "kernel/test_enforce_emerge.py",
    "kernel/test_secure_boot.py",
    "e2e/test_keylime_live.py",
    "kernel/test_setup_vm.py",
    "kernel/test_appraisal.py",
    "kernel/test_policy_load.py",
    "enforce-appraise-modes",
    "kernel/test_enforce_audit.py",
    "kernel/test_setuid_observe.py",
    "enforce-binpkg",
    "e2e/test_system.py",
    "e2e/test_binpkg.py",
    "e2e/test_emerge.py",
    "e2e/test_hardware_key.py",
)


def _group(item: pytest.Item) -> str:
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    return Path(item.fspath).resolve().relative_to(TESTS).as_posix()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `-n`: every test in its file's group (or its own), long groups first."""
    if getattr(config.option, "dist", "no") == "no" and not getattr(config.option, "numprocesses", None):
        return
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(_group(item)))
    # Stable: the tests of a group keep their order.
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))
