"""The one table that turns API and store failures into errno values for FUSE.

fusepy treats an exception without an errno as a failure of the whole call (and a BaseException kills
the mount), so every exception that leaves an Operations method goes through ``to_errno`` first.
"""

from __future__ import annotations

import errno
import logging

from acdfuse.api.common import RequestError

log = logging.getLogger(__name__)

CODE = RequestError.CODE

# HTTP status (or the client's pseudo status codes >= 1000) -> errno. Subclasses of RequestError carry
# their status code, so this one table covers them too; ``ERRNO_BY_CLASS`` only documents (and the test
# checks) that every subclass lands on the errno a user expects.
ERRNO_BY_STATUS: dict[int, int] = {
    400: errno.EINVAL,        # malformed request: a bug or a name the server refuses
    401: errno.EACCES,        # token rejected even after a refresh
    403: errno.EACCES,
    404: errno.ENOENT,
    405: errno.EPERM,
    408: errno.ETIMEDOUT,
    409: errno.EEXIST,        # NAME_ALREADY_EXISTS
    410: errno.ENOENT,        # an expired temp link: the thing is gone
    411: errno.EINVAL,
    412: errno.ESTALE,        # precondition failed: our view of the node is out of date
    413: errno.EFBIG,
    414: errno.ENAMETOOLONG,
    416: errno.EINVAL,        # range past EOF: the caller asked for bytes that do not exist
    429: errno.EAGAIN,        # still throttled after the client's own retries
    500: errno.EIO,
    501: errno.ENOSYS,
    502: errno.EIO,
    503: errno.EAGAIN,
    504: errno.ETIMEDOUT,
    507: errno.ENOSPC,
    CODE.CONN_EXCEPTION: errno.EIO,      # server unreachable: the read cannot be served
    CODE.FAILED_SUBREQUEST: errno.EIO,
    CODE.INCOMPLETE_RESULT: errno.EIO,   # truncated body: never hand out partial data as complete
    CODE.REFRESH_FAILED: errno.EACCES,
    CODE.INVALID_TOKEN: errno.EACCES,
}

# Error messages that mean something more specific than their status (acd-api.md section 6.2: a 403
# "File size exceeds account allowance" with code NO_ACTIVE_SUBSCRIPTION_FOUND is a full drive).
ERRNO_BY_MESSAGE: dict[str, int] = {
    "NO_ACTIVE_SUBSCRIPTION_FOUND": errno.ENOSPC,
    "exceeds account allowance": errno.ENOSPC,
    "quota": errno.ENOSPC,
}

# What a status outside the table falls back to, by class of status.
ERRNO_FALLBACK_4XX = errno.EINVAL
ERRNO_FALLBACK = errno.EIO


def errno_for_request_error(exc: RequestError) -> int:
    """The errno for an API error: message hints first, then the status table, then a fallback."""
    status = int(getattr(exc, "status_code", 0) or 0)
    msg = str(getattr(exc, "msg", "") or "")
    if status in (403, 413, 507):
        for needle, value in ERRNO_BY_MESSAGE.items():
            if needle.lower() in msg.lower():
                return value
    mapped = ERRNO_BY_STATUS.get(status)
    if mapped is not None:
        return mapped
    if 400 <= status < 500:
        return ERRNO_FALLBACK_4XX
    return ERRNO_FALLBACK


def to_errno(exc: BaseException) -> int:
    """The errno to report for any exception raised below the Operations layer.

    OSErrors that already carry an errno (the reader's EIO on timeout, our own FuseOSErrors) keep it.
    Anything else is a bug or an unexpected failure: it becomes EIO and is logged with a traceback by
    the caller, so it is never silent and never kills the mount.
    """
    if isinstance(exc, RequestError):
        return errno_for_request_error(exc)
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return exc.errno
    if isinstance(exc, TimeoutError):
        return errno.ETIMEDOUT
    return ERRNO_FALLBACK
