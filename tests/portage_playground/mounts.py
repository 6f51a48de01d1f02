"""Commands run in a mount namespace of their own where every tmpfs and
devtmpfs is remounted noexec: the one machine layout on which `portage-ima
policy` exempts a tmpfs build directory by fsmagic (docs/policy-tmpfs.md).
Undone when the command exits; needs root."""

from __future__ import annotations

import shutil

REMOUNT_TMPFS_NOEXEC = r"""
path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
awk '{ for (i = 7; i <= NF; i++) if ($i == "-") {
         if ($(i + 1) == "tmpfs" || $(i + 1) == "devtmpfs") print $5; break } }' \
    /proc/self/mountinfo | sort -u | while read -r m; do
    mount -o remount,bind,noexec "$(printf '%b' "$m")"
done
"""


def tmpfs_noexec(cmd: list[str], then: str = "") -> list[str]:
    """`cmd` wrapped so that it runs with every tmpfs noexec, after the
    shell `then` (more mounts) ran."""
    unshare = shutil.which("unshare", path="/usr/bin:/bin") or "unshare"
    return [unshare, "--mount", "--propagation", "private", "/bin/sh", "-ec",
            REMOUNT_TMPFS_NOEXEC + then + '\nPATH=$path exec "$@"', "sh", *cmd]
