"""A harness that runs Portage's own emerge in a throwaway tree (see playground.py)."""

from .playground import (
    CATEGORY,
    DEFAULT_HOOK,
    FULL_INSTALL,
    LAYOUTS,
    REPO_ROOT,
    SNIPPET,
    EmergeResult,
    Entry,
    Playground,
    config_update,
    ebuild_text,
    md5,
    parse_contents,
    portage_ima_bin,
)
from .mounts import tmpfs_noexec
from .venv import ensure_venv

__all__ = [
    "CATEGORY",
    "DEFAULT_HOOK",
    "FULL_INSTALL",
    "LAYOUTS",
    "REPO_ROOT",
    "SNIPPET",
    "EmergeResult",
    "Entry",
    "Playground",
    "config_update",
    "ebuild_text",
    "md5",
    "parse_contents",
    "portage_ima_bin",
    "tmpfs_noexec",
    "ensure_venv",
]
