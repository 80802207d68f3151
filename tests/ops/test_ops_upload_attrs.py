"""A file's attributes travel with its upload, its mtime is the time of its last local write, and an
attribute change that races the upload is not lost. Every test runs twice: against a server with the
"properties with the content" extension (one request per file) and against one without it, as
Amazon's (the attributes follow in property requests). In-process stacks from ``build``, real server."""

from __future__ import annotations

import dataclasses
import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import StackFactory, fi

from acdfuse.mount import Stack
from acdfuse.server import DriveServer, ServerConfig
from acdfuse.vfs import posixattrs as pa

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=[True, False], ids=["with-extension", "amazon-like"])
def server_config(request: pytest.FixtureRequest, tmp_path: Path) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "server-data", host="127.0.0.1", port=0, extensions=request.param)


def _stack(stacks: StackFactory, **fields: Any) -> Stack:
    stack = stacks(**{"upload_delay": 0.1, **fields})
    # the operations ask the kernel who calls; here the test process is the caller
    stack.ops._caller = lambda: (os.getuid(), os.getgid(), os.getpid())   # type: ignore[method-assign]
    assert stack.ops._attrs is not None
    stack.ops._attrs.owner()      # learned before counting requests (a fresh drive costs a probe)
    return stack


def _write(stack: Stack, path: str, data: bytes, mode: int | None = None) -> None:
    f = fi(os.O_WRONLY | os.O_CREAT)
    if mode is None:
        stack.ops.open(path, f)
    else:
        stack.ops.create(path, mode, f)
    stack.ops.write(path, data, 0, f)
    stack.ops.release(path, f)


def _uploaded(stack: Stack, path: str) -> str:
    assert stack.writes is not None and stack.writes.wait_uploads(30)
    node = stack.store.resolve(path)
    assert node is not None and not node.id.startswith("local:")
    return node.id


def _server_record(client: Any, node_id: str) -> pa.PosixRecord:
    props = client.list_properties(node_id, client.get_owner_id())
    record = pa.PosixRecord.decode(props.get(pa.RECORD_KEY))
    assert record is not None, props
    return record


def _comparable(st: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in st.items() if k in ("st_mode", "st_uid", "st_gid", "st_size", "st_mtime",
                                                    "st_ctime", "st_atime")}


# ---- attributes go with the upload --------------------------------------------------------------

def test_a_new_files_attributes_go_with_its_upload(stacks: StackFactory, client: Any,
                                                   drive_server: DriveServer) -> None:
    extension = drive_server.config.extensions
    stack = _stack(stacks)
    f = fi(os.O_WRONLY | os.O_CREAT)
    stack.ops.create("/tool.sh", 0o750, f)      # not the default mode: kept for the upload
    stack.ops.write("/tool.sh", b"#!/bin/sh\n", 0, f)
    stack.ops.setxattr("/tool.sh", "user.origin", b"here", 0)
    stack.ops.release("/tool.sh", f)
    before = drive_server.stats.snapshot()
    node_id = _uploaded(stack, "/tool.sh")
    after = drive_server.stats.snapshot()
    assert after["upload"] - before["upload"] == 1
    # with the extension nothing else; without it, the record and the xattr follow one by one
    assert (after["metadata"] - before["metadata"] == 0) == extension, (before, after)
    record = _server_record(client, node_id)
    assert record.mode == stat.S_IFREG | 0o750 and record.mtime_cv == 1
    assert client.list_properties(node_id, client.get_owner_id())["x0"] == "origin=there"
    assert stack.ops.getxattr("/tool.sh", "user.origin") == b"here"


def test_changed_attributes_go_with_an_overwrite(stacks: StackFactory, client: Any,
                                                 drive_server: DriveServer) -> None:
    extension = drive_server.config.extensions
    node = client.upload_stream(io.BytesIO(b"old"), "doc.txt")
    owner = client.get_owner_id()
    client.add_property(node["id"], owner, "x3", "gone=tsoon")
    stack = _stack(stacks)
    f = fi(os.O_WRONLY)
    stack.ops.open("/doc.txt", f)
    stack.ops.write("/doc.txt", b"new content", 0, f)
    stack.ops.chmod("/doc.txt", 0o600)
    stack.ops.removexattr("/doc.txt", "user.gone")
    stack.ops.release("/doc.txt", f)
    before = drive_server.stats.snapshot()
    _uploaded(stack, "/doc.txt")
    after = drive_server.stats.snapshot()
    assert after["overwrite"] - before["overwrite"] == 1
    assert (after["metadata"] - before["metadata"] == 0) == extension, (before, after)
    props = client.list_properties(node["id"], owner)
    assert "x3" not in props
    record = pa.PosixRecord.decode(props[pa.RECORD_KEY])
    assert record is not None and record.mode == stat.S_IFREG | 0o600 and record.mtime_cv == 2
    assert stat.S_IMODE(stack.ops.getattr("/doc.txt")["st_mode"]) == 0o600


# ---- the mtime of a written file ------------------------------------------------------------------

def test_a_new_file_shows_the_time_of_its_last_write_before_and_after_the_upload_and_a_remount(
        stacks: StackFactory, client: Any) -> None:
    """Not the time of the upload: a local file system shows the last write. The stat is the same
    while pending, after the upload, and on another mount with an empty cache."""
    stack = _stack(stacks, upload_delay=1.5)    # the upload is well after the write
    _write(stack, "/notes.txt", b"written once", mode=0o644)
    pending = _comparable(stack.ops.getattr("/notes.txt"))
    node_id = _uploaded(stack, "/notes.txt")
    assert _comparable(stack.ops.getattr("/notes.txt")) == pending
    uploaded = client.get_metadata(node_id, temp_link=False)
    record = _server_record(client, node_id)
    assert record.mtime_ns == pending["st_mtime"] and record.mtime_cv == 1
    assert uploaded["contentProperties"]["version"] == 1
    other = _stack(stacks, cache="cache-other")
    assert _comparable(other.ops.getattr("/notes.txt")) == pending


def test_an_overwritten_file_shows_the_time_of_its_last_write(stacks: StackFactory, client: Any) -> None:
    node = client.upload_stream(io.BytesIO(b"before"), "log.txt")
    stack = _stack(stacks, upload_delay=1.5)
    _write(stack, "/log.txt", b"after the rewrite")
    pending = _comparable(stack.ops.getattr("/log.txt"))
    _uploaded(stack, "/log.txt")
    assert _comparable(stack.ops.getattr("/log.txt")) == pending
    record = _server_record(client, node["id"])
    assert record.mtime_ns == pending["st_mtime"] and record.mtime_cv == 2
    other = _stack(stacks, cache="cache-other")
    assert _comparable(other.ops.getattr("/log.txt")) == pending


# ---- attributes that change while the upload runs --------------------------------------------------

def test_a_chmod_right_after_the_uploaded_attributes_were_stored_reaches_the_server(
        stacks: StackFactory, client: Any) -> None:
    """The race: the upload finished and its attributes are stored, then a chmod lands while the file
    still counts as pending. The chmod is kept with the write side, so the write side must send it
    before it calls the file uploaded."""
    stack = _stack(stacks)
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
    _write(stack, "/race.txt", b"racing", mode=0o755)
    node_id = _uploaded(stack, "/race.txt")
    assert raced
    assert stat.S_IMODE(stack.ops.getattr("/race.txt")["st_mode"]) == 0o600
    assert _server_record(client, node_id).mode == stat.S_IFREG | 0o600


def test_a_chmod_while_the_upload_is_in_flight_is_not_undone_by_its_answer(
        stacks: StackFactory, client: Any) -> None:
    """A chmod between the upload's start and the server's answer: the answer describes the older
    attributes; the newer ones must win, locally and on the server."""
    stack = _stack(stacks)
    writes = stack.writes
    assert writes is not None
    real = writes._uploader._remote
    raced: list[int] = []

    def chmod_then_upload(stream: Any, name: str, parent: str, *args: Any) -> dict:
        if not raced:
            raced.append(1)
            stack.ops.chmod("/flight.txt", 0o640)
        return real.upload(stream, name, parent, *args)

    writes._uploader._remote = dataclasses.replace(real, upload=chmod_then_upload)
    _write(stack, "/flight.txt", b"in flight", mode=0o755)
    node_id = _uploaded(stack, "/flight.txt")
    assert raced
    assert stat.S_IMODE(stack.ops.getattr("/flight.txt")["st_mode"]) == 0o640
    assert _server_record(client, node_id).mode == stat.S_IFREG | 0o640
