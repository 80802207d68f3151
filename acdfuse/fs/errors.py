"""The one table that turns API and store failures into errno values for FUSE.

The binding (mfusepy) answers an exception without an errno with EINVAL and a logged traceback, and a
BaseException ends the mount, so every exception that leaves an Operations method goes through
``to_errno`` first.

The table is keyed by error class: what an HTTP status means is decided in ``acdfuse.api`` (which
picks the class), never here. A plain ``RequestError`` (a status without a class of its own) is placed
with the api's own helpers.
"""

from __future__ import annotations

import errno
import logging

from acdfuse.api.common import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    IncompleteResult,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    RateLimited,
    RequestError,
    ServerError,
    TooLarge,
    Unauthorized,
    credentials_refused,
    is_client_error,
    is_offline,
    is_transient,
)
from acdfuse.store import StoreError

log = logging.getLogger(__name__)

# Error class -> errno. A subclass not listed takes its nearest listed base (SyncError and
# SchemaTooNew are StoreErrors); the test checks that every class of acdfuse.api has its own row.
ERRNO_BY_CLASS: dict[type[BaseException], int] = {
    NotFound: errno.ENOENT,
    Conflict: errno.EEXIST,              # NAME_ALREADY_EXISTS
    Unauthorized: errno.EACCES,          # token rejected even after a refresh
    Forbidden: errno.EACCES,
    PreconditionFailed: errno.ESTALE,    # our view of the node is out of date
    TooLarge: errno.EFBIG,
    QuotaExceeded: errno.ENOSPC,         # a full drive
    RateLimited: errno.EAGAIN,           # still throttled after the client's own retries
    ServerError: errno.EIO,
    ConnectionFailed: errno.EIO,         # server unreachable: the read cannot be served
    IncompleteResult: errno.EIO,         # truncated body: never hand out partial data as complete
    StoreError: errno.EIO,               # the local mirror failed (unusable database, bad input)
}

# A plain RequestError, by what the api says it is (checked in this order).
ERRNO_REFUSED = errno.EACCES        # credentials refused: a failed token refresh, a bad token file
ERRNO_TRANSIENT = errno.EAGAIN      # a request timeout (408): try again
ERRNO_CLIENT_ERROR = errno.EINVAL   # any other 4xx: the request as such was refused (400, 416, ...)
ERRNO_FALLBACK = errno.EIO          # everything else (a failed sub-request, an unknown status)


def known_errno(exc: BaseException) -> int | None:
    """The errno of an expected failure (an API or store error, an OSError with an errno), or None
    for anything else: that is a bug, answered EIO and logged with its traceback by the caller."""
    for cls in type(exc).__mro__:
        mapped = ERRNO_BY_CLASS.get(cls)
        if mapped is not None:
            return mapped
    if isinstance(exc, RequestError):
        if credentials_refused(exc) is exc:
            return ERRNO_REFUSED
        if is_transient(exc) and not is_offline(exc):
            return ERRNO_TRANSIENT
        if is_client_error(exc):
            return ERRNO_CLIENT_ERROR
        return ERRNO_FALLBACK
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return exc.errno
    if isinstance(exc, TimeoutError):
        return errno.ETIMEDOUT
    return None


def to_errno(exc: BaseException) -> int:
    """The errno to report for any exception raised below the Operations layer.

    OSErrors that already carry an errno (the reader's EIO on timeout, our own FuseOSErrors) keep it.
    Anything else is a bug or an unexpected failure: it becomes EIO and is logged with a traceback by
    the caller, so it is never silent and never kills the mount.
    """
    known = known_errno(exc)
    return ERRNO_FALLBACK if known is None else known
