"""What every part of the Operations class shares: the errno guard its methods run under, and the
content key that names a file's bytes. A module of its own so that mixins (fs/attrops.py and others)
can use them without importing operations.py, which imports them."""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from acdfuse.fs.binding import FuseOSError
from acdfuse.fs.errors import known_errno, to_errno

if TYPE_CHECKING:
    from acdfuse.store import Node

log = logging.getLogger("acdfuse.fs.operations")

F = TypeVar("F", bound=Callable[..., Any])


def content_key(node: Node) -> str:
    """The identity of a file's bytes: md5 when the server gave one, else the content version."""
    return node.md5 if node.md5 else f"v{node.content_version}"


def guard(method: F) -> F:
    """Run an operation; whatever goes wrong leaves as FuseOSError with an errno, and is logged."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return method(self, *args)
        except FuseOSError:
            raise
        except Exception as exc:  # every failure must reach the kernel as an errno, never kill the mount
            code = known_errno(exc)
            path = args[0] if args else "?"
            if code is None:
                code = to_errno(exc)
                log.exception("%s %s failed unexpectedly; answering %s", name, path,
                              errno.errorcode.get(code, code))
            elif isinstance(exc, OSError):
                log.warning("%s %s: %s", name, path, exc)
            else:
                log.warning("%s %s: %s -> %s", name, path, exc, errno.errorcode.get(code, code))
            raise FuseOSError(code) from exc

    return wrapper  # type: ignore[return-value]
