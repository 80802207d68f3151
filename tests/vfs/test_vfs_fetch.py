"""The mount's fetch: each range pinned to its handle's content md5 (QA F6), and a range the server
could not be reached for fails at once while it is still unreachable, so the kernel's immediate
re-issue of a failed read does not double the wait past --timeout (QA F4). A fake clock, no sleeps."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from acdfuse.api import common
from acdfuse.api.common import RequestError
from acdfuse.fs.errors import to_errno
from acdfuse.vfs.fetch import PinnedFetch, pinned_md5

MD5 = "0123456789abcdef0123456789abcdef"


class Download:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, Any]] = []
        self.fail: RequestError | None = None

    def __call__(self, node_id: str, offset: int, length: int, content_md5: Any = None,
                 pooled: bool = False) -> bytearray:
        assert pooled     # the reader keeps only views: its buffers may serve again
        self.calls.append((node_id, offset, length, content_md5))
        if self.fail is not None:
            raise self.fail
        return bytearray(length)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refused() -> RequestError:
    return common.make_error(RequestError.CODE.CONN_EXCEPTION, "Connection refused")


def test_md5_keys_pin_the_download_version_keys_cannot() -> None:
    download = Download()
    fetch = PinnedFetch(download, 5.0)
    fetch("n", 0, 10, MD5)
    fetch("n", 0, 10, "v3")
    assert [c[3] for c in download.calls] == [MD5, None]
    assert pinned_md5(MD5.upper()) is None


def test_newer_content_on_the_server_asks_for_a_sync() -> None:
    download, stale = Download(), []
    download.fail = common.make_error(412, "precondition failed")
    fetch = PinnedFetch(download, 5.0, on_stale=stale.append)
    with pytest.raises(RequestError):
        fetch("n", 0, 10, MD5)
    assert stale == ["n"]


def test_unreachable_range_fails_at_once_until_its_first_attempts_deadline() -> None:
    download, clock, server_back = Download(), Clock(), [False]
    fetch = PinnedFetch(download, 5.0, probe=lambda: server_back[0], errno_of=to_errno, clock=clock)
    download.fail = refused()
    with pytest.raises(RequestError):
        fetch("n", 0, 1 << 20, MD5)
    clock.now += 3.0                      # the client's retries took 3 s; the kernel asks again
    with pytest.raises(OSError) as again:
        fetch("n", 4096, 4096, MD5)
    assert again.value.errno == to_errno(refused()) == errno.EIO
    assert len(download.calls) == 1       # no second round of retries
    # another range, or another node, is not affected
    with pytest.raises(RequestError):
        fetch("other", 0, 4096, MD5)
    with pytest.raises(RequestError):
        fetch("n", 2 << 20, 4096, MD5)
    assert len(download.calls) == 3
    # the first attempt's deadline passed: a full attempt again
    clock.now += 2.5
    with pytest.raises(RequestError):
        fetch("n", 0, 4096, MD5)
    assert len(download.calls) == 4


def test_a_server_that_is_back_is_asked_at_once() -> None:
    download, clock, server_back = Download(), Clock(), [False]
    fetch = PinnedFetch(download, 30.0, probe=lambda: server_back[0], clock=clock)
    download.fail = refused()
    with pytest.raises(RequestError):
        fetch("n", 0, 4096, MD5)
    server_back[0] = True
    download.fail = None
    assert fetch("n", 0, 4096, MD5) == bytearray(4096)
    # the success ended the memory: no probe needed any more
    server_back[0] = False
    assert fetch("n", 0, 4096, MD5) == bytearray(4096)


def test_answers_about_the_node_are_not_remembered() -> None:
    download, clock = Download(), Clock()
    fetch = PinnedFetch(download, 30.0, clock=clock)
    for status in (404, 500, 503, RequestError.CODE.INCOMPLETE_RESULT):
        download.fail = common.make_error(status, "answer")
        with pytest.raises(RequestError):
            fetch("n", 0, 4096, MD5)
    assert len(download.calls) == 4
