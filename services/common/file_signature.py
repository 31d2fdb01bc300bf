"""How a running service notices that a file it read was replaced or rewritten, without reading it again.

One signature for every file a service follows while it runs (its credentials file, its TLS certificates):
device, inode, size, mtime_ns and ctime_ns of the file the path resolves to. Symlinks are followed, so Kubernetes'
update of a Secret volume (a `..data` symlink swapped to a new directory) shows as a new inode, and ctime catches an
in-place rewrite that restored size and mtime.
"""

from __future__ import annotations

import os
from pathlib import Path

FileSignature = tuple[int, int, int, int, int]


def stat_signature(status: os.stat_result) -> FileSignature:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def file_signature(path: Path) -> FileSignature | None:
    """The signature of the file at `path` now; None when it cannot be stat'ed (missing, unreadable directory)."""
    try:
        return stat_signature(os.stat(path))
    except OSError:
        return None
