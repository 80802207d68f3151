"""The one errno table: every API error class and code maps to a meaningful errno, and nothing that an
Operations method raises escapes without one, whatever its type (tier 3, no kernel).

What the real server's answers become is in test_ops_errno.py; here a reader and a store that raise
any exception on demand stand in for the real ones, because a bug (KeyError, RuntimeError...) cannot
be provoked through them on purpose."""

from __future__ import annotations

import errno
import inspect
import logging
from pathlib import Path
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from acdfuse.fs.binding import FuseOSError

from acdfuse.api import common
from acdfuse.api.common import RequestError
from acdfuse.fs import errors
from acdfuse.fs.attrs import Ownership
from acdfuse.fs.operations import DriveOperations
from acdfuse.store import Node, SchemaTooNew, StoreError, SyncError

# What a user should see for each error class the client raises.
EXPECTED_BY_CLASS = {
    "NotFound": errno.ENOENT,
    "Conflict": errno.EEXIST,
    "Unauthorized": errno.EACCES,
    "Forbidden": errno.EACCES,
    "PreconditionFailed": errno.ESTALE,
    "TooLarge": errno.EFBIG,
    "QuotaExceeded": errno.ENOSPC,
    "RateLimited": errno.EAGAIN,
    "ServerError": errno.EIO,
    "ConnectionFailed": errno.EIO,
    "IncompleteResult": errno.EIO,
}
# a status (or client code) that makes each class
STATUS_OF = {"NotFound": 404, "Conflict": 409, "Unauthorized": 401, "Forbidden": 403,
             "PreconditionFailed": 412, "TooLarge": 413, "QuotaExceeded": 507, "RateLimited": 429,
             "ServerError": 500, "ConnectionFailed": RequestError.CODE.CONN_EXCEPTION,
             "IncompleteResult": RequestError.CODE.INCOMPLETE_RESULT}


def all_error_classes() -> list[type[RequestError]]:
    found: list[type[RequestError]] = []
    todo = [RequestError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if c.__module__.startswith("acdfuse.api")]


def make(cls: type[RequestError], status: int, msg: str = "boom") -> RequestError:
    return common.make_error(status, msg) if cls is not RequestError else RequestError(status, msg)


def test_every_error_class_is_in_the_table() -> None:
    classes = {c.__name__ for c in all_error_classes()} - {"RequestError"}
    missing = classes - set(EXPECTED_BY_CLASS)
    assert not missing, f"new RequestError subclasses without an expected errno: {missing}"
    for cls in all_error_classes():
        if cls is not RequestError:
            assert cls in errors.ERRNO_BY_CLASS, f"{cls.__name__} has no row of its own in ERRNO_BY_CLASS"
    for name, expected in EXPECTED_BY_CLASS.items():
        cls = getattr(common, name)
        exc = make(cls, STATUS_OF[name])
        assert type(exc) is cls
        assert errors.to_errno(exc) == expected, name
        assert errors.known_errno(exc) == expected, name


def test_store_errors_have_a_row() -> None:
    assert StoreError in errors.ERRNO_BY_CLASS
    for exc in (StoreError("unusable"), SyncError("sync failed"), SchemaTooNew("/x.db", 9, 1)):
        assert errors.known_errno(exc) == errno.EIO, type(exc).__name__


def test_every_client_code_has_an_errno() -> None:
    code = RequestError.CODE
    assert errors.to_errno(RequestError(code.REFRESH_FAILED, "x")) == errno.EACCES
    assert errors.to_errno(RequestError(code.INVALID_TOKEN, "x")) == errno.EACCES
    assert errors.to_errno(RequestError(code.FAILED_SUBREQUEST, "x")) == errno.EIO
    assert errors.to_errno(common.make_error(code.CONN_EXCEPTION, "x")) == errno.EIO
    assert errors.to_errno(common.make_error(code.INCOMPLETE_RESULT, "x")) == errno.EIO
    for value in (v for k, v in vars(code).items() if not k.startswith("_")):
        assert errors.known_errno(common.make_error(value, "x")) is not None, value


# what a user sees for the statuses the server sends, whichever class the api makes of them
ERRNO_OF_STATUS = {
    400: errno.EINVAL, 401: errno.EACCES, 403: errno.EACCES, 404: errno.ENOENT, 405: errno.EINVAL,
    408: errno.EAGAIN, 409: errno.EEXIST, 410: errno.EINVAL, 412: errno.ESTALE, 413: errno.EFBIG,
    416: errno.EINVAL, 418: errno.EINVAL, 429: errno.EAGAIN, 500: errno.EIO, 502: errno.EIO,
    503: errno.EIO, 504: errno.EIO, 507: errno.ENOSPC, 599: errno.EIO,
}


@pytest.mark.parametrize("status", sorted(ERRNO_OF_STATUS))
def test_whole_status_table(status: int) -> None:
    value = ERRNO_OF_STATUS[status]
    assert value in errno.errorcode, status
    assert errors.to_errno(common.make_error(status, "x")) == value
    # a RequestError built by hand with that status (no subclass) still lands sensibly
    plain = errors.to_errno(RequestError(status, "x"))
    assert plain in (value, errno.EIO, errno.EINVAL, errno.EACCES), status


def test_named_errnos_of_the_issue() -> None:
    assert errors.to_errno(common.make_error(404, "x")) == errno.ENOENT
    assert errors.to_errno(common.make_error(401, "x")) == errno.EACCES
    assert errors.to_errno(common.make_error(409, "x")) == errno.EEXIST
    assert errors.to_errno(common.make_error(507, "x")) == errno.ENOSPC
    quota = common.make_error(403, "upload: File size exceeds account allowance.",
                              code="NO_ACTIVE_SUBSCRIPTION_FOUND")
    assert type(quota) is common.QuotaExceeded and errors.to_errno(quota) == errno.ENOSPC
    # the quota is told by the api, from the server's code or words, never by searching here
    assert errors.to_errno(common.make_error(403, "Insufficient permissions")) == errno.EACCES


def test_unknown_statuses_fall_back() -> None:
    assert errors.to_errno(RequestError(418, "teapot")) == errno.EINVAL
    assert errors.to_errno(RequestError(599, "x")) == errno.EIO
    assert errors.to_errno(RequestError(0, "")) == errno.EIO


def test_other_exceptions() -> None:
    assert errors.to_errno(OSError(errno.EIO, "timeout")) == errno.EIO
    assert errors.to_errno(TimeoutError()) == errno.ETIMEDOUT
    assert errors.to_errno(ValueError("bug")) == errno.EIO
    assert errors.known_errno(ValueError("bug")) is None
    assert errors.to_errno(OSError("no errno")) == errno.EIO


def test_no_status_codes_or_messages_are_read_outside_the_api() -> None:
    """Issue 9: what a status means is decided in acdfuse.api only."""
    root = Path(common.__file__).resolve().parents[1]
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("api", "server"):
            continue
        text = path.read_text()
        for needle in ("status_code", "CODE.", "REFUSED_STATUSES", "account allowance", "NO_ACTIVE_SUB"):
            if needle in text:
                offenders.append(f"{rel}: {needle}")
    assert not offenders, offenders


# ----- the Operations class, without a kernel -----

def file_node(node_id: str = "f" * 22, size: int = 10) -> Node:
    return Node(id=node_id, name="f", kind="FILE", status="AVAILABLE", parents=("r" * 22,), size=size,
                md5="abc", content_version=1, version=1, created=1.0, modified=2.0, ino=7, is_root=False)


def folder_node() -> Node:
    return Node(id="r" * 22, name="", kind="FOLDER", status="AVAILABLE", parents=(), size=0, md5=None,
                content_version=0, version=1, created=1.0, modified=2.0, ino=1, is_root=True)


@dataclass
class FakeStore:
    nodes: dict[str, Node]
    fail: BaseException | None = None

    def resolve(self, path: str) -> Node | None:
        if self.fail is not None:
            raise self.fail
        return self.nodes.get(path)

    def children(self, folder_id: str) -> list[Node]:
        return [n for p, n in self.nodes.items() if folder_id in n.parents]

    def get(self, node_id: str) -> Node | None:
        return next((n for n in self.nodes.values() if n.id == node_id), None)

    def subfolder_count(self, folder_id: str) -> int:
        return sum(1 for n in self.children(folder_id) if n.is_folder)


class FailingReader:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.released: list[Any] = []

    def open(self, node_id: str, content_key: str, size: int) -> int:
        return 1

    def read(self, handle: Any, offset: int, length: int) -> bytes:
        raise self.exc

    def release(self, handle: Any) -> None:
        self.released.append(handle)

    def invalidate(self, node_id: str, keep_content: str | None = None) -> None:
        pass


class Quota:
    def sizes(self) -> tuple[int, int]:
        return (1 << 40, 1 << 39)


def ops_with(reader: Any, store: FakeStore | None = None) -> DriveOperations:
    store = store or FakeStore({"/": folder_node(), "/f": file_node()})
    return DriveOperations(store, reader, Quota(), Ownership(1000, 1000, 0o022))


def fi(flags: int = 0) -> SimpleNamespace:
    return SimpleNamespace(flags=flags, fh=0, keep_cache=0, direct_io=0)


KNOWN_FAILURES: list[BaseException] = [
    *(make(getattr(common, name), status) for name, status in STATUS_OF.items()),
    RequestError(400, "bad"), RequestError(RequestError.CODE.REFRESH_FAILED, "refused"),
    StoreError("unusable mirror"), SyncError("sync failed"), OSError(errno.EIO, "timed out"),
]
BUGS: list[BaseException] = [ValueError("a bug"), KeyError("x"), RuntimeError("closed")]
ALL_FAILURES = KNOWN_FAILURES + BUGS


@pytest.mark.parametrize("exc", KNOWN_FAILURES, ids=lambda e: type(e).__name__)
def test_known_failures_are_not_reported_as_bugs(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """An API or store failure is logged as a warning with its errno; only a bug gets a traceback."""
    ops = ops_with(FailingReader(exc), FakeStore({}, fail=exc))
    with caplog.at_level(logging.WARNING, logger="acdfuse.fs"), pytest.raises(FuseOSError):
        ops.getattr("/f")
    assert [r.levelno for r in caplog.records] == [logging.WARNING], caplog.text
    assert "failed unexpectedly" not in caplog.text


@pytest.mark.parametrize("exc", BUGS, ids=lambda e: type(e).__name__)
def test_bugs_are_logged_with_their_traceback(exc: BaseException, caplog: pytest.LogCaptureFixture,
                                              expect_errors: list[str]) -> None:
    expect_errors.append("failed unexpectedly")
    ops = ops_with(FailingReader(exc), FakeStore({}, fail=exc))
    with caplog.at_level(logging.WARNING, logger="acdfuse.fs"), pytest.raises(FuseOSError) as info:
        ops.getattr("/f")
    assert info.value.errno == errno.EIO
    record = caplog.records[-1]
    assert record.levelno == logging.ERROR and record.exc_info is not None


@pytest.mark.parametrize("exc", ALL_FAILURES, ids=lambda e: type(e).__name__)
def test_read_failures_leave_with_an_errno(exc: BaseException, expect_errors: list[str]) -> None:
    expect_errors.append("failed unexpectedly")   # non-API exceptions are logged as bugs, on purpose
    ops = ops_with(FailingReader(exc))
    f = fi()
    assert ops.open("/f", f) == 0
    with pytest.raises(FuseOSError) as info:
        ops.read("/f", 4096, 0, f)
    assert info.value.errno == errors.to_errno(exc)
    assert info.value.errno > 0


@pytest.mark.parametrize("exc", ALL_FAILURES, ids=lambda e: type(e).__name__)
def test_store_failures_leave_with_an_errno(exc: BaseException, expect_errors: list[str]) -> None:
    expect_errors.append("failed unexpectedly")
    ops = ops_with(FailingReader(exc), FakeStore({}, fail=exc))
    with pytest.raises(FuseOSError) as info:
        ops.getattr("/f")
    assert info.value.errno == errors.to_errno(exc)


def test_every_operation_is_guarded() -> None:
    # every operation fusepy can call runs under the errno guard
    for name, member in inspect.getmembers(DriveOperations, inspect.isfunction):
        if not name.startswith("_") and name != "invalidate":
            assert hasattr(member, "__wrapped__"), f"{name} is not guarded"
