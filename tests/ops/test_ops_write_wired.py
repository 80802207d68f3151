"""The write side as the composition root wires it: a stack from ``build`` writes through its
operations, and closing it leaves what is not uploaded in the journal for the next one."""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Any

from ops_helpers import StackFactory, fi, read_file

from acdfuse.vfs import posixattrs as pa


def put(ops: Any, path: str, data: bytes) -> None:
    f = fi(os.O_WRONLY | os.O_CREAT)
    ops.create(path, 0o644, f)
    ops.write(path, data, 0, f)
    ops.release(path, f)


def test_a_built_stack_writes_and_uploads(stacks: StackFactory, client: Any) -> None:
    stack = stacks(upload_delay=0.1)
    assert stack.writes is not None
    put(stack.ops, "/hello.txt", b"hello drive")
    stack.ops.mkdir("/dir", 0o755)
    assert stack.writes.wait_uploads(20)
    node = stack.store.resolve("/hello.txt")
    assert node is not None and not node.id.startswith("local:")
    assert bytes(client.download_chunk(node.id, 0, 100)) == b"hello drive"
    assert stack.store.resolve("/dir") is not None


def test_closing_a_stack_keeps_pending_uploads_for_the_next(stacks: StackFactory, client: Any) -> None:
    first = stacks(upload_delay=3600)
    put(first.ops, "/later.txt", b"next time")
    first.close()
    second = stacks(upload_delay=0.1)       # the same cache dir
    assert read_file(second, "/later.txt") == b"next time"
    assert second.writes is not None and second.writes.wait_uploads(20)
    node = second.store.resolve("/later.txt")
    assert node is not None and bytes(client.download_chunk(node.id, 0, 100)) == b"next time"


def test_a_read_only_stack_has_no_write_side(stacks: StackFactory) -> None:
    stack = stacks(read_only=True)
    assert stack.writes is None
    assert not stack.opts.journal_path.exists()


# ---- attributes that change while the upload runs ------------------------------------------------

def _as_owner(stack: Any) -> None:
    """The operations ask the kernel who calls; here the test process is the caller."""
    stack.ops._caller = lambda: (os.getuid(), os.getgid(), os.getpid())


def _server_mode(client: Any, node_id: str) -> int | None:
    record = pa.PosixRecord.decode(client.list_properties(node_id, client.get_owner_id()).get(pa.RECORD_KEY))
    return None if record is None or record.mode is None else stat.S_IMODE(record.mode)


def test_a_chmod_right_after_the_uploaded_attributes_were_stored_reaches_the_server(
        stacks: StackFactory, client: Any) -> None:
    """The race: the upload finished and its attributes went up, then a chmod lands while the file
    still counts as pending. The chmod is kept with the write side, so the write side must send it
    before it calls the file uploaded."""
    stack = stacks(upload_delay=0.1)
    _as_owner(stack)
    writes = stack.writes
    assert writes is not None
    stored = writes._after_upload
    assert stored is not None
    raced: list[int] = []

    def then_chmod(node: Any, attrs: Any, mtime_ns: Any) -> None:
        stored(node, attrs, mtime_ns)
        if not raced:
            raced.append(1)
            stack.ops.chmod("/race.txt", 0o600)

    writes._after_upload = then_chmod
    f = fi(os.O_WRONLY | os.O_CREAT)
    stack.ops.create("/race.txt", 0o755, f)      # not the default mode: kept for the upload
    stack.ops.write("/race.txt", b"racing", 0, f)
    stack.ops.release("/race.txt", f)
    assert writes.wait_uploads(30)
    assert raced
    node = stack.store.resolve("/race.txt")
    assert node is not None and not node.id.startswith("local:")
    assert stat.S_IMODE(stack.ops.getattr("/race.txt")["st_mode"]) == 0o600
    assert _server_mode(client, node.id) == 0o600


def test_a_chmod_while_the_upload_is_in_flight_is_not_undone_by_its_answer(
        stacks: StackFactory, client: Any) -> None:
    """A chmod between the upload's start and the server's answer: the answer describes the older
    attributes; the newer ones must win, locally and on the server."""
    stack = stacks(upload_delay=0.1)
    _as_owner(stack)
    writes = stack.writes
    assert writes is not None
    real = writes._uploader._remote
    raced: list[int] = []

    def chmod_then_upload(stream: Any, name: str, parent: str, *args: Any, **kwargs: Any) -> dict:
        if not raced:
            raced.append(1)
            stack.ops.chmod("/flight.txt", 0o640)
        return real.upload(stream, name, parent, *args, **kwargs)

    writes._uploader._remote = dataclasses.replace(real, upload=chmod_then_upload)
    f = fi(os.O_WRONLY | os.O_CREAT)
    stack.ops.create("/flight.txt", 0o755, f)
    stack.ops.write("/flight.txt", b"in flight", 0, f)
    stack.ops.release("/flight.txt", f)
    assert writes.wait_uploads(30)
    assert raced
    node = stack.store.resolve("/flight.txt")
    assert node is not None and not node.id.startswith("local:")
    assert stat.S_IMODE(stack.ops.getattr("/flight.txt")["st_mode"]) == 0o640
    assert _server_mode(client, node.id) == 0o640
