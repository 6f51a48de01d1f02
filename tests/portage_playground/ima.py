"""Looking at what the hook left behind: security.ima xattrs, checked with
evmctl (the reference implementation, not our code) and the hook's summary.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from pathlib import Path

XATTR = "security.ima"

SUMMARY_RE = re.compile(
    r"portage-ima: (?P<pkg>\S+): signed (?P<before>\d+) before the merge, "
    r"(?P<now>\d+) now, (?:(?P<hashed>\d+) hashed, )?(?P<valid>\d+) already valid, "
    r"(?P<skipped>\d+) skipped, (?P<failed>\d+) failed"
)


def ima_xattr(path: Path | str) -> bytes | None:
    """The raw security.ima value of ``path`` itself (a symlink is not
    followed), or None when it has none."""
    try:
        return os.getxattr(path, XATTR, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def evmctl_verify(path: Path | str, cert_der: Path | str) -> tuple[bool, str]:
    """``evmctl ima_verify --key CERT.der PATH``: (accepted, its output)."""
    proc = subprocess.run(
        ["evmctl", "ima_verify", "--key", str(cert_der), str(path)],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def cert_keyid(cert_pem: Path | str) -> str:
    """The key id the kernel and evmctl use for a certificate: the last 4
    bytes of its Subject Key Identifier, as lowercase hex."""
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert_pem), "-noout", "-ext", "subjectKeyIdentifier"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    skid = re.sub(r"[^0-9a-f]", "", out.strip().splitlines()[-1].lower())
    return skid[-8:]


def xattr_paths(top: Path | str) -> dict[str, bytes]:
    """Every path under ``top`` (files, dirs, symlinks, ``top`` itself) that
    carries a security.ima xattr, with its value. Symlinks are not followed."""
    found = {}
    top = str(top)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [None, *dirnames, *filenames]:
            path = dirpath if name is None else os.path.join(dirpath, name)
            if name is not None and name in dirnames and not os.path.islink(path):
                continue  # a real directory: reported when walked into
            value = ima_xattr(path)
            if value is not None:
                found[path] = value
    return found


def summaries(output: str, pkg: str | None = None) -> list[dict[str, int]]:
    """The hook's per-package summary lines in emerge output, in order, as
    ``{"before": N, "now": N, "hashed": N, "valid": N, "skipped": N, "failed": N}``
    (``hashed``: config files given a digest, printed only when there are some)."""
    found = []
    for m in SUMMARY_RE.finditer(output):
        if pkg is None or m["pkg"] == pkg:
            found.append({k: int(v or 0) for k, v in m.groupdict().items() if k != "pkg"})
    return found


def problem_lines(output: str, path: str) -> list[str]:
    """The hook's lines that report a problem with ``path``
    (``portage-ima: PATH: reason``; the path may carry the ROOT prefix)."""
    return [
        line
        for line in output.splitlines()
        if "portage-ima: " in line and f"{path}: " in line
    ]
