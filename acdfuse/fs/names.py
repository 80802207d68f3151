"""File names between the kernel and the drive: splitting paths and the limits a name must meet.

The kernel hands over names as bytes; the drive stores Unicode. The binding decodes them with
``surrogateescape`` (fs/binding.py), so a name that is not UTF-8 arrives with lone surrogates and
``check_name`` refuses it with EINVAL.
"""

from __future__ import annotations

import errno
import logging

from acdfuse.fs.attrs import NAME_MAX
from acdfuse.fs.binding import FuseOSError

log = logging.getLogger("acdfuse.fs.operations")


def split(path: str) -> tuple[str, str]:
    """'/a/b/c' -> ('/a/b', 'c'); '/c' -> ('/', 'c')."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return parent or "/", name


def check_name(name: str) -> None:
    """ENAMETOOLONG over 255 bytes, EINVAL for a name that is not valid UTF-8 (never EIO)."""
    check_text(name, NAME_MAX, "name")


def check_text(text: str, limit: int, what: str) -> None:
    """ENAMETOOLONG over ``limit`` bytes, EINVAL for text that is not valid UTF-8, which the drive
    cannot store (a name, or a symlink's target kept as JSON text in its record)."""
    if len(text.encode("utf-8", "surrogateescape")) > limit:
        raise FuseOSError(errno.ENAMETOOLONG)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # decoded with surrogateescape (see fs/binding.py): undecodable bytes arrive as lone surrogates
        log.info("refused the %s %r: it is not valid UTF-8, which the drive cannot store", what, text)
        raise FuseOSError(errno.EINVAL) from None
