"""``guard``: every Operations method runs under it, so whatever fails leaves as an errno.

Shared by operations.py (the read side) and writeops.py (the write side).
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from fuse import FuseOSError

from acdfuse.fs.errors import known_errno, to_errno

log = logging.getLogger("acdfuse.fs.operations")

F = TypeVar("F", bound=Callable[..., Any])


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
