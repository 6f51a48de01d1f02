"""One builder at a time for the caches under tests/.cache.

tests/run-all runs the end-to-end and kernel tests in two pytest-xdist
workers (docs/testing.md, "Two at a time"). Each cache one of them may build
(the kernel package, the portagevm image, the Secure Boot downloads, the
venvs, apt-get installs) is built under `cache_lock`: an exclusive
`fcntl.flock` on a lock file beside the cache, so the second worker waits
and then finds the cache made. The builder still writes into a temporary
name and renames it into place, so a build killed half way leaves nothing
that looks finished. The kernel drops a flock when its holder exits, even
on SIGKILL: a stale lock file never blocks the next run.
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def cache_lock(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_file` (created with its folder)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
