"""File names between the kernel and the drive: splitting paths, the limits a name must meet, and the
codec the FUSE binding decodes names with.

The kernel hands over names as bytes; the drive stores Unicode. fusepy decodes with a codec name it is
given (strictly, by default), and a name that is not UTF-8 then fails inside fusepy with a traceback
and EINVAL. Decoding with ``surrogateescape`` instead lets such a name reach Operations, which answers
EINVAL itself, cleanly (``check_name``).
"""

from __future__ import annotations

import codecs
import errno
import logging
from typing import Any

from acdfuse.fs.attrs import NAME_MAX
from acdfuse.fs.binding import FuseOSError

log = logging.getLogger("acdfuse.fs.operations")

FUSE_ENCODING = "acdfuse_utf8b"


def _search(name: str) -> codecs.CodecInfo | None:
    if name != FUSE_ENCODING:
        return None

    def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
        return codecs.utf_8_encode(text, "surrogateescape")

    def decode(data: Any, errors: str = "strict") -> tuple[str, int]:
        return codecs.utf_8_decode(data, "surrogateescape", True)

    return codecs.CodecInfo(encode, decode, name=FUSE_ENCODING)


_registered = False


def fuse_encoding() -> str:
    """The codec name to pass as ``FUSE(..., encoding=)``; registers it on first use (not at import)."""
    global _registered
    if not _registered:
        codecs.register(_search)
        _registered = True
    return FUSE_ENCODING


def split(path: str) -> tuple[str, str]:
    """'/a/b/c' -> ('/a/b', 'c'); '/c' -> ('/', 'c')."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return parent or "/", name


def check_name(name: str) -> None:
    """ENAMETOOLONG over 255 bytes, EINVAL for a name that is not valid UTF-8 (never EIO)."""
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise FuseOSError(errno.ENAMETOOLONG)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        # decoded with surrogateescape (see fuse_encoding): undecodable bytes arrive as lone surrogates
        log.info("refused the name %r: it is not valid UTF-8, which the drive cannot store", name)
        raise FuseOSError(errno.EINVAL) from None
