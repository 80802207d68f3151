"""The one errno table: every API error class and code maps to a meaningful errno, and nothing that an
Operations method raises escapes without one (tier 3: the Operations class called without a kernel)."""

from __future__ import annotations

import errno
import inspect
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from fuse import FuseOSError

from acdfuse.api import common
from acdfuse.api.common import RequestError
from acdfuse.fs import errors
from acdfuse.fs.attrs import Ownership
from acdfuse.fs.operations import DriveOperations
from acdfuse.store import Node

# What a user should see for each error class the client raises.
EXPECTED_BY_CLASS = {
    "NotFound": errno.ENOENT,
    "Conflict": errno.EEXIST,
    "Unauthorized": errno.EACCES,
    "Forbidden": errno.EACCES,
    "RateLimited": errno.EAGAIN,
    "ServerError": errno.EIO,
    "ConnectionFailed": errno.EIO,
    "IncompleteResult": errno.EIO,
}


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
    for name, expected in EXPECTED_BY_CLASS.items():
        cls = getattr(common, name)
        status = {"NotFound": 404, "Conflict": 409, "Unauthorized": 401, "Forbidden": 403,
                  "RateLimited": 429, "ServerError": 500,
                  "ConnectionFailed": RequestError.CODE.CONN_EXCEPTION,
                  "IncompleteResult": RequestError.CODE.INCOMPLETE_RESULT}[name]
        exc = make(cls, status)
        assert type(exc) is cls
        assert errors.to_errno(exc) == expected, name


def test_every_client_code_is_in_the_table() -> None:
    codes = {v for k, v in vars(RequestError.CODE).items() if not k.startswith("_")}
    assert codes <= set(errors.ERRNO_BY_STATUS), codes - set(errors.ERRNO_BY_STATUS)
    assert errors.to_errno(RequestError(RequestError.CODE.REFRESH_FAILED, "x")) == errno.EACCES
    assert errors.to_errno(RequestError(RequestError.CODE.INVALID_TOKEN, "x")) == errno.EACCES


@pytest.mark.parametrize("status", sorted(errors.ERRNO_BY_STATUS))
def test_whole_status_table(status: int) -> None:
    value = errors.ERRNO_BY_STATUS[status]
    assert value in errno.errorcode, status
    assert errors.to_errno(common.make_error(status, "x")) == value
    assert errors.to_errno(RequestError(status, "x")) == value


def test_named_errnos_of_the_issue() -> None:
    table = errors.ERRNO_BY_STATUS
    assert table[404] == errno.ENOENT
    assert table[401] == errno.EACCES
    assert table[409] == errno.EEXIST
    assert table[504] == errno.ETIMEDOUT
    assert table[507] == errno.ENOSPC
    quota = RequestError(403, "File size exceeds account allowance. NO_ACTIVE_SUBSCRIPTION_FOUND")
    assert errors.to_errno(quota) == errno.ENOSPC


def test_unknown_statuses_fall_back() -> None:
    assert errors.to_errno(RequestError(418, "teapot")) == errno.EINVAL
    assert errors.to_errno(RequestError(599, "x")) == errno.EIO
    assert errors.to_errno(RequestError(0, "")) == errno.EIO


def test_other_exceptions() -> None:
    assert errors.to_errno(OSError(errno.EIO, "timeout")) == errno.EIO
    assert errors.to_errno(TimeoutError()) == errno.ETIMEDOUT
    assert errors.to_errno(ValueError("bug")) == errno.EIO
    assert errors.to_errno(OSError("no errno")) == errno.EIO


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
        return None

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


ALL_FAILURES: list[BaseException] = [
    *(make(getattr(common, name), status) for name, status in [
        ("NotFound", 404), ("Conflict", 409), ("Unauthorized", 401), ("Forbidden", 403),
        ("RateLimited", 429), ("ServerError", 503), ("ConnectionFailed", 1000),
        ("IncompleteResult", 1003)]),
    RequestError(400, "bad"), OSError(errno.EIO, "timed out"), ValueError("a bug"), KeyError("x"),
    RuntimeError("closed"),
]


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


def test_mutations_are_read_only() -> None:
    ops = ops_with(FailingReader(ValueError()))
    calls = {
        "create": ("/n", 0o644, fi()), "write": ("/f", b"x", 0, fi()), "truncate": ("/f", 0),
        "mkdir": ("/d", 0o755), "mknod": ("/n", 0o644, 0), "rmdir": ("/d",), "unlink": ("/f",),
        "rename": ("/f", "/g"), "link": ("/g", "/f"), "symlink": ("/g", "/f"), "chmod": ("/f", 0o600),
        "chown": ("/f", 0, 0), "utimens": ("/f", None), "setxattr": ("/f", "user.a", b"1", 0),
        "removexattr": ("/f", "user.a"),
    }
    for name, args in calls.items():
        with pytest.raises(FuseOSError) as info:
            getattr(ops, name)(*args)
        assert info.value.errno == errno.EROFS, name
    with pytest.raises(FuseOSError) as info:
        ops.open("/f", fi(os.O_WRONLY))
    assert info.value.errno == errno.EROFS


def test_operations_fusepy_does_not_get() -> None:
    # left out on purpose: libfuse answers ENOSYS once and the kernel stops asking
    ops = ops_with(FailingReader(ValueError()))
    for name in ("flush", "fsync", "getxattr", "listxattr", "lock", "bmap", "ioctl"):
        assert getattr(ops, name, None) is None, name
    # every operation fusepy can call runs under the errno guard
    for name, member in inspect.getmembers(DriveOperations, inspect.isfunction):
        if not name.startswith("_") and name != "invalidate":
            assert hasattr(member, "__wrapped__"), f"{name} is not guarded"


def test_keep_cache_only_for_unchanged_content() -> None:
    store = FakeStore({"/": folder_node(), "/f": file_node()})
    reader = FailingReader(ValueError())
    ops = ops_with(reader, store)
    first, second = fi(), fi()
    ops.open("/f", first)
    assert first.keep_cache == 0           # nothing cached by the kernel yet
    ops.open("/f", second)
    assert second.keep_cache == 1          # same content: keep the page cache
    changed = file_node()
    store.nodes["/f"] = Node(**{**{f: getattr(changed, f) for f in changed.__dataclass_fields__},
                                "md5": "def", "size": 11})
    third = fi()
    ops.open("/f", third)
    assert third.keep_cache == 0           # new content: the kernel must drop its pages
    for f in (first, second, third):
        ops.release("/f", f)
    assert len(reader.released) == 3


def test_getattr_and_statfs() -> None:
    ops = ops_with(FailingReader(ValueError()))
    st = ops.getattr("/f")
    assert st["st_size"] == 10 and st["st_ino"] == 7 and st["st_mtime"] == 2.0
    assert st["st_mode"] & 0o777 == 0o444
    root = ops.getattr("/")
    assert root["st_nlink"] == 2 and root["st_mode"] & 0o777 == 0o555
    with pytest.raises(FuseOSError) as info:
        ops.getattr("/missing")
    assert info.value.errno == errno.ENOENT
    sv = ops.statfs("/")
    assert sv["f_blocks"] * sv["f_frsize"] == 1 << 40
    assert sv["f_bavail"] * sv["f_frsize"] == 1 << 39
