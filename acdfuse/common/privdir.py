"""Directories only their owner may read: drive data, cached content and names, credentials."""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterable
from pathlib import Path


def make_private_dir(path: Path, close_if_open: Iterable[Path] = ()) -> int | None:
    """Create ``path`` and its missing parents with mode 0700.

    The directories in ``close_if_open`` (acdfuse's own defaults, which an older version may have made
    open) are made 0700 when others can access them. A directory that existed and is still open to
    others is left as it is: the user chose it. Its mode bits are returned so the caller can warn in
    its own words; None when ``path`` is private or new.
    """
    missing = [d for d in (path, *path.parents) if not d.exists()]
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
    for d in close_if_open:
        with contextlib.suppress(OSError):
            if d.stat().st_mode & 0o077:
                d.chmod(0o700)
    if missing:
        return None
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & 0o077 else None
