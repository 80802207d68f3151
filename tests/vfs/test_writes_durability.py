"""The write side below FUSE: the quiet delay, streaming in constant memory, the journal across
remounts and mirror loss, fsync, retries while the server is down, and final refusals."""

from __future__ import annotations

import errno
import logging
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from vfs_helpers import pattern
from writes_helpers import MiB, WriteStack, leftover_spools, wait_until

from acdfuse.fs.remote import remote_for
from acdfuse.store.journal import Journal, JournalError, pending_summary
from acdfuse.vfs.options import WriteOptions
from acdfuse.vfs.upload import Remote


def uploads(stack: WriteStack) -> int:
    s = stack.stats()
    return s["upload"] + s["overwrite"]


def test_file_rewritten_many_times_is_uploaded_once(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=1.0)).open()
    try:
        before = uploads(stack)
        h = stack.w.create(stack.root.id, "often.txt")
        stack.w.release(h)
        for i in range(6):
            pending = stack.w.lookup_pending(stack.root.id, "often.txt")
            assert pending is not None
            h2 = stack.w.open(pending, write=True, truncate=True)
            assert h2 is not None
            stack.w.write(h2, 0, f"version {i}".encode())
            stack.w.release(h2)
            time.sleep(0.1)
        assert uploads(stack) == before                    # still within the quiet delay
        assert stack.w.wait_uploads(20)
        assert uploads(stack) == before + 1
        assert stack.server_bytes(stack.node("/often.txt").id) == b"version 5"
    finally:
        stack.close()


def test_temp_file_deleted_before_its_delay_is_never_uploaded(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=1.0)).open()
    try:
        before = uploads(stack)
        stack.write_file("tmp123", b"scratch")
        assert stack.w.unlink_pending(stack.root.id, "tmp123")
        assert stack.w.lookup_pending(stack.root.id, "tmp123") is None
        time.sleep(1.5)
        assert stack.w.wait_uploads(20)
        assert uploads(stack) == before
        assert stack.s.resolve("/tmp123") is None
        assert stack.w.pending_stats()["files"] == 0
        assert leftover_spools(stack.cache) == []
        assert Journal(stack.cache / "journal.db").__enter__().rows() == []
    finally:
        stack.close()


def test_upload_streams_in_constant_memory(wstack: WriteStack) -> None:
    size = 48 * MiB
    h = wstack.w.create(wstack.root.id, "stream.bin")
    piece = pattern(1 * MiB, seed=9)
    for off in range(0, size, len(piece)):
        wstack.w.write(h, off, piece)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        wstack.w.release(h)
        assert wstack.w.wait_uploads(60)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # client, server and adoption each hold a few pieces at a time, never the file
    assert peak - base < 12 * MiB, f"upload of {size} bytes peaked at {(peak - base) / MiB:.1f} MiB"
    assert wstack.node("/stream.bin").size == size


@pytest.mark.parametrize("lie", [{"size": 3}, {"md5": None}])
def test_an_answer_that_does_not_describe_the_local_copy_is_not_taken(  # type: ignore[no-untyped-def]
        client, drive_server, tmp_path: Path, caplog, lie: dict[str, Any]) -> None:
    """(An md5 that differs from the bytes sent is the client's to catch: it hashes what it sends.)"""
    real = remote_for(client)
    lies = [1]

    def lying_upload(stream: Any, name: str, parent: str) -> dict:
        answer = real.upload(stream, name, parent)
        if lies[0] > 0:
            lies[0] -= 1
            answer["contentProperties"] = {**answer["contentProperties"], **lie}
        return answer

    remote = Remote(upload=lying_upload, overwrite=real.overwrite, metadata=real.metadata, trash=real.trash)
    stack = WriteStack(client, drive_server, tmp_path / "c",
                       WriteOptions(upload_delay=0.1, retry_first=0.1, retry_cap=0.2), remote=remote).open()
    try:
        with caplog.at_level(logging.WARNING, logger="acdfuse"):
            stack.write_file("checked.txt", b"the real bytes")
            assert stack.w.wait_uploads(20)
        assert lies[0] == 0
        assert any("the server reports" in r.getMessage() for r in caplog.records)
        node = stack.node("/checked.txt")
        assert stack.server_bytes(node.id) == b"the real bytes"
    finally:
        stack.close()


def test_restart_uploads_what_was_closed_and_what_was_open(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=3600)).open()
    existing = stack.upload("old.txt", b"old content here")
    stack.write_file("closed.txt", b"closed before the crash")
    h = stack.w.open(existing, write=True)
    assert h is not None
    stack.w.write(h, 0, b"NEW")
    open_new = stack.w.create(stack.root.id, "open.txt")
    stack.w.write(open_new, 0, b"still open")
    before = uploads(stack)
    summary = pending_summary(stack.cache / "journal.db")      # read while the mount runs
    assert summary.files == 1 and summary.bytes == len(b"closed before the crash")
    assert summary.open_files == 2
    assert summary.refused == ()
    stack.close(timeout=1)          # as a killed mount: nothing was uploaded, handles never released
    assert uploads(stack) == before
    stack.open(WriteOptions(upload_delay=0.1))
    assert stack.w.wait_uploads(20)
    assert stack.server_bytes(stack.node("/closed.txt").id) == b"closed before the crash"
    assert stack.server_bytes(existing.id) == b"NEW content here"
    assert stack.server_bytes(stack.node("/open.txt").id) == b"still open"
    stack.close()


def test_pending_files_show_local_content_across_remounts(client, drive_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          make_client) -> None:
    slow = make_client(retry_deadline=0.5, timeout=(2.0, 2.0))
    stack = WriteStack(slow, drive_server, tmp_path / "c",
                       WriteOptions(upload_delay=0.1, retry_first=30, retry_cap=60))
    try:
        stack.open()
        existing = stack.upload("e.txt", b"0123456789")
        drive_server.faults.configure(error_rate=1.0)
        stack.write_file("p.txt", b"pending bytes")
        h = stack.w.open(existing, write=True)
        assert h is not None
        stack.w.write(h, 10, b"+more")
        stack.w.release(h)
        time.sleep(1.0)
        stack.remount(sync=False)
        pending = stack.w.lookup_pending(stack.root.id, "p.txt")
        assert pending is not None and pending.size == len(b"pending bytes")
        assert [n.name for n in stack.w.pending_children(stack.root.id)] == ["p.txt"]
        ph = stack.w.open(pending, write=False)
        assert ph is not None
        assert stack.read_all(ph) == b"pending bytes"
        stack.w.release(ph)
        assert stack.w.overlay(existing).size == 15
        assert stack.w.read_node(existing.id, 10, 100) == b"+more"
    finally:
        drive_server.faults.reset()
        stack.close(timeout=2)


def test_journal_survives_loss_of_the_mirror(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=3600)).open()
    stack.write_file("survivor.txt", b"keep me")
    stack.close(timeout=1)
    db = stack.cache / "nodes.db"
    db.write_bytes(b"this is not a database" * 100)      # the mirror is moved aside at the next open
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    stack.open(WriteOptions(upload_delay=0.1))
    assert stack.s.recovered_from is not None
    assert stack.w.wait_uploads(20)
    assert stack.server_bytes(stack.node("/survivor.txt").id) == b"keep me"
    stack.close()


def test_corrupt_journal_refuses_to_start_and_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(JournalError) as info:
        Journal(path).open()
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"garbage" * 1000       # left exactly as it was


def test_fsync_returns_once_the_server_has_the_content(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=3600)).open()
    try:
        h = stack.w.create(stack.root.id, "synced.db")
        stack.w.write(h, 0, b"page1")
        stack.w.fsync(h)                      # no quiet delay for fsync
        node = stack.node("/synced.db")
        assert stack.server_bytes(node.id) == b"page1"
        stack.w.write(h, 5, b"page2")
        stack.w.fsync(h)                      # the same handle again: an overwrite now
        assert stack.server_bytes(node.id) == b"page1page2"
        stack.w.fsync(h)                      # nothing new: returns at once
        stack.w.release(h)
        assert stack.w.pending_stats()["files"] == 0
    finally:
        stack.close()


def test_fsync_fails_with_eio_while_the_server_is_down_then_the_upload_retries(  # type: ignore[no-untyped-def]
        client, drive_server, tmp_path: Path, make_client) -> None:
    slow = make_client(retry_deadline=0.5)
    stack = WriteStack(client, drive_server, tmp_path / "c",
                       WriteOptions(upload_delay=0.3, retry_first=0.2, retry_cap=0.5),
                       remote=remote_for(slow)).open()
    try:
        h = stack.w.create(stack.root.id, "down.txt")
        stack.w.write(h, 0, b"must not be lost")
        drive_server.faults.configure(error_rate=1.0)
        with pytest.raises(OSError) as info:
            stack.w.fsync(h)
        assert info.value.errno == errno.EIO
        stack.w.release(h)
        wait_until(lambda: stack.w.pending_stats()["upload_failures"] >= 2, what="a retry")
        assert stack.s.resolve("/down.txt") is None
        drive_server.faults.reset()
        assert stack.w.wait_uploads(20)
        assert stack.server_bytes(stack.node("/down.txt").id) == b"must not be lost"
    finally:
        drive_server.faults.reset()
        stack.close()


def test_fsync_waits_for_an_upload_already_running(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    real = remote_for(client)
    gate = threading.Event()
    started = threading.Event()

    def slow_upload(stream: Any, name: str, parent: str) -> dict:
        started.set()
        gate.wait(10)
        return real.upload(stream, name, parent)

    remote = Remote(upload=slow_upload, overwrite=real.overwrite, metadata=real.metadata, trash=real.trash)
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=0.0),
                       remote=remote).open()
    try:
        h = stack.w.create(stack.root.id, "race.txt")
        stack.w.write(h, 0, b"v1")
        stack.w.release(h)
        assert started.wait(10)
        pending = stack.w.lookup_pending(stack.root.id, "race.txt")
        assert pending is not None
        h = stack.w.open(pending, write=True)
        assert h is not None
        stack.w.write(h, 0, b"v2")            # lands while v1 is on its way
        done = threading.Event()
        errors: list[BaseException] = []

        def sync() -> None:
            try:
                stack.w.fsync(h)
            except BaseException as exc:
                errors.append(exc)
            done.set()

        threading.Thread(target=sync).start()
        assert not done.wait(0.3)
        gate.set()
        assert done.wait(20)
        assert not errors
        node = stack.node("/race.txt")
        assert stack.server_bytes(node.id) == b"v2"
        stack.w.release(h)
    finally:
        gate.set()
        stack.close()
