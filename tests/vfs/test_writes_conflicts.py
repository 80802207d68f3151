"""No lost update: conflict copies, repeats of uploads that landed, and renames/unlinks of pending files."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from writes_helpers import WriteStack, leftover_spools, wait_until

from acdfuse.api.common import IncompleteResult, RequestError
from acdfuse.fs.remote import remote_for
from acdfuse.vfs.options import WriteOptions
from acdfuse.vfs.upload import Remote, conflict_name

CONFLICT = re.compile(r"^(.*) \(conflict \d{4}-\d\d-\d\d \d{6}\)(\..*)?$")


def names(stack: WriteStack, folder_id: str | None = None) -> dict[str, str]:
    """name -> node id of what the server holds in a folder (root by default)."""
    children = stack.client.list_children(folder_id or stack.root.id)
    return {c["name"]: c["id"] for c in children if c.get("status") == "AVAILABLE"}


def test_conflict_name_format() -> None:
    when = 1_700_000_000.0     # 2023-11-14 22:13:20 UTC
    assert conflict_name("report.txt", when) == "report (conflict 2023-11-14 221320).txt"
    assert conflict_name("Makefile", when) == "Makefile (conflict 2023-11-14 221320)"
    assert conflict_name("a.tar.gz", when, 2) == "a.tar (conflict 2023-11-14 221320 2).gz"


def test_overwrite_of_a_file_changed_elsewhere_goes_to_a_conflict_copy(wstack: WriteStack, caplog) -> None:  # type: ignore[no-untyped-def]
    node = wstack.upload("doc.txt", b"original")
    h = wstack.w.open(node, write=True, truncate=True)
    assert h is not None
    wstack.w.write(h, 0, b"ours")
    wstack.client.overwrite_stream(io.BytesIO(b"theirs"), node.id)     # another client, meanwhile
    with caplog.at_level(logging.WARNING, logger="acdfuse"):
        wstack.w.release(h)
        assert wstack.w.wait_uploads(20)
    found = names(wstack)
    assert wstack.server_bytes(found["doc.txt"]) == b"theirs"          # theirs stays where it was
    copies = [n for n in found if CONFLICT.match(n)]
    assert len(copies) == 1 and copies[0].endswith(".txt") and copies[0].startswith("doc (conflict ")
    assert wstack.server_bytes(found[copies[0]]) == b"ours"
    warning = [r.getMessage() for r in caplog.records if "conflict" in r.getMessage()]
    assert warning and node.id in warning[0] and copies[0] in warning[0]
    assert wstack.w.pending_stats()["files"] == 0


def test_new_file_whose_name_was_taken_meanwhile_goes_to_a_conflict_copy(wstack: WriteStack) -> None:
    wstack.write_file("a.txt", b"mine")
    wstack.client.upload_stream(io.BytesIO(b"someone else's"), "A.txt", wstack.root.id)  # case clash
    assert wstack.w.wait_uploads(20)
    found = names(wstack)
    assert wstack.server_bytes(found["A.txt"]) == b"someone else's"
    copies = [n for n in found if CONFLICT.match(n)]
    assert len(copies) == 1 and copies[0].startswith("a (conflict ")
    assert wstack.server_bytes(found[copies[0]]) == b"mine"
    # the pending file now is that copy, inode and all
    assert wstack.s.resolve("/" + copies[0]) is not None


def test_file_trashed_elsewhere_keeps_local_changes_as_a_conflict_copy(wstack: WriteStack) -> None:
    node = wstack.upload("gone.txt", b"v1")
    h = wstack.w.open(node, write=True, truncate=True)
    assert h is not None
    wstack.w.write(h, 0, b"local edit")
    wstack.client.move_to_trash(node.id)
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    found = names(wstack)
    assert "gone.txt" not in found
    copies = [n for n in found if CONFLICT.match(n)]
    assert len(copies) == 1
    assert wstack.server_bytes(found[copies[0]]) == b"local edit"


def test_server_already_holding_our_bytes_is_no_conflict(wstack: WriteStack) -> None:
    """A repeat after a lost answer (e.g. the mount was killed after the upload landed)."""
    node = wstack.upload("same.txt", b"base")
    h = wstack.w.open(node, write=True, truncate=True)
    assert h is not None
    wstack.w.write(h, 0, b"identical")
    wstack.client.overwrite_stream(io.BytesIO(b"identical"), node.id)
    wstack.w.release(h)
    wstack.write_file("new.txt", b"landed before")
    # the mirror knows it (as after a restart's sync): still ours, at the name the file has
    wstack.s.apply_local(wstack.client.upload_stream(io.BytesIO(b"landed before"), "new.txt", wstack.root.id))
    assert wstack.w.wait_uploads(20)
    found = names(wstack)
    assert not [n for n in found if CONFLICT.match(n)]
    assert wstack.server_bytes(found["same.txt"]) == b"identical"
    assert wstack.server_bytes(found["new.txt"]) == b"landed before"


def test_pending_file_renamed_over_an_existing_file_overwrites_it(wstack: WriteStack) -> None:
    """An editor's save: write a temp file, rename it over the original. The node id stays."""
    original = wstack.upload("notes.txt", b"old notes")
    before = wstack.stats()
    wstack.write_file(".notes.txt.swp", b"new notes")
    assert wstack.w.rename_pending(wstack.root.id, ".notes.txt.swp", wstack.root.id, "notes.txt",
                                   replaced=original)
    assert wstack.w.lookup_pending(wstack.root.id, ".notes.txt.swp") is None
    assert wstack.w.overlay(original).size == len(b"new notes")
    assert wstack.w.read_node(original.id, 0, 100) == b"new notes"
    assert wstack.w.wait_uploads(20)
    after = wstack.stats()
    assert after["upload"] == before["upload"]           # no new node: an overwrite
    assert after["overwrite"] == before["overwrite"] + 1
    node = wstack.node("/notes.txt")
    assert node.id == original.id and node.ino == original.ino
    assert wstack.server_bytes(node.id) == b"new notes"


def test_pending_file_renamed_and_moved_is_uploaded_at_its_new_place(wstack: WriteStack) -> None:
    folder = wstack.s.apply_local(wstack.client.create_folder("sub", wstack.root.id))
    pending = wstack.write_file("draft", b"text")
    assert wstack.w.rename_pending(wstack.root.id, "draft", folder.id, "final.txt")
    moved = wstack.w.lookup_pending(folder.id, "final.txt")
    assert moved is not None and moved.ino == pending.ino
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(wstack.node("/sub/final.txt").id) == b"text"
    assert wstack.s.resolve("/draft") is None


def test_pending_overwrite_of_a_trashed_node_is_dropped(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=0.5)).open()
    try:
        node = stack.upload("doomed.txt", b"v1")
        h = stack.w.open(node, write=True)
        assert h is not None
        stack.w.write(h, 0, b"v2")
        stack.w.release(h)
        before = stack.stats()["overwrite"]
        stack.client.move_to_trash(node.id)
        stack.w.forget_node(node.id)
        assert stack.w.wait_uploads(20)
        assert stack.stats()["overwrite"] == before
        assert stack.w.pending_stats()["files"] == 0
        assert not [n for n in names(stack) if CONFLICT.match(n)]
    finally:
        stack.close()


def test_file_deleted_while_its_upload_runs_leaves_nothing_behind(client, drive_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    real = remote_for(client)
    started, gate = threading.Event(), threading.Event()

    def slow_upload(stream: Any, name: str, parent: str) -> dict:
        started.set()
        gate.wait(10)
        return real.upload(stream, name, parent)

    remote = Remote(upload=slow_upload, overwrite=real.overwrite, metadata=real.metadata, trash=real.trash)
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=0.0), remote=remote).open()
    try:
        stack.write_file("tmp.part", b"partial download")
        assert started.wait(10)
        assert stack.w.unlink_pending(stack.root.id, "tmp.part")
        gate.set()
        assert stack.w.wait_uploads(20)
        assert "tmp.part" not in names(stack)
        assert stack.s.resolve("/tmp.part") is None
        assert leftover_spools(stack.cache) == []
    finally:
        gate.set()
        stack.close()


def landed_then_held(real: Remote, gate: threading.Event, started: threading.Event) -> Remote:
    """A remote whose new-file uploads reach the server and then wait for ``gate`` before answering:
    the file is on the server under the name its upload started with, and the mount does not know yet."""

    def upload(stream: Any, name: str, parent: str) -> dict:
        answer = real.upload(stream, name, parent)
        started.set()
        gate.wait(10)
        return answer

    return Remote(upload=upload, overwrite=real.overwrite, metadata=real.metadata, trash=real.trash,
                  move=real.move, conditional=real.conditional)


def test_file_renamed_while_its_upload_runs_ends_under_its_new_name(client, drive_server,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    # found by scripts/soak.py: the upload's answer put the file back under its old name, so the rename
    # was undone locally and on the server (a later rename or delete then got ENOENT)
    started, gate = threading.Event(), threading.Event()
    remote = landed_then_held(remote_for(client), gate, started)
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=0.0), remote=remote)
    stack.open()
    try:
        sub = stack.s.apply_local(client.create_folder("sub", stack.root.id))
        stack.write_file("a.part", b"first")
        stack.write_file("b.part", b"second")
        assert started.wait(10)
        assert stack.w.rename_pending(stack.root.id, "a.part", stack.root.id, "a.txt")
        assert stack.w.rename_pending(stack.root.id, "b.part", sub.id, "b.txt")     # moved too
        gate.set()
        assert stack.w.wait_uploads(20)
        top, inside = names(stack), names(stack, sub.id)
        assert "a.part" not in top and "b.part" not in top and "b.part" not in inside, (top, inside)
        assert stack.server_bytes(top["a.txt"]) == b"first"
        assert stack.server_bytes(inside["b.txt"]) == b"second"
        assert stack.node("/a.txt").id == top["a.txt"] and stack.s.resolve("/a.part") is None
        assert stack.node("/sub/b.txt").id == inside["b.txt"] and stack.s.resolve("/b.part") is None
        assert stack.w.pending_stats()["files"] == 0
    finally:
        gate.set()
        stack.close()


def test_file_renamed_over_another_while_its_upload_runs_becomes_its_content(client, drive_server,  # type: ignore[no-untyped-def]
                                                                             tmp_path: Path) -> None:
    started, gate = threading.Event(), threading.Event()
    remote = landed_then_held(remote_for(client), gate, started)
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=0.0), remote=remote)
    stack.open()
    try:
        target = stack.upload("doc.txt", b"old content")
        stack.write_file("doc.txt.tmp", b"new content")        # an editor's save: temp file, rename over
        assert started.wait(10)
        assert stack.w.rename_pending(stack.root.id, "doc.txt.tmp", stack.root.id, "doc.txt", replaced=target)
        gate.set()
        assert stack.w.wait_uploads(20)
        found = names(stack)
        assert sorted(found) == ["doc.txt"], found             # the copy that went up first is taken back
        assert found["doc.txt"] == target.id                    # overwritten in place, node id kept
        assert stack.server_bytes(target.id) == b"new content"
        assert stack.node("/doc.txt").id == target.id
        assert stack.w.pending_stats()["files"] == 0
    finally:
        gate.set()
        stack.close()


def test_file_deleted_while_its_overwrite_uploads_leaves_no_conflict_copy(client, drive_server,  # type: ignore[no-untyped-def]
                                                                         tmp_path: Path) -> None:
    # found by scripts/soak.py: the delete's trash request landed while the upload of the file's local
    # changes ran; the upload found the node trashed and put the changes next to it as a conflict copy,
    # so a file the user deleted came back under another name
    real = remote_for(client)
    started, gate = threading.Event(), threading.Event()

    def held_overwrite(stream: Any, node_id: str, base: int | None) -> dict:
        started.set()
        gate.wait(10)
        return real.overwrite(stream, node_id, base)

    remote = Remote(upload=real.upload, overwrite=held_overwrite, metadata=real.metadata, trash=real.trash,
                    move=real.move, conditional=real.conditional)
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=0.0), remote=remote)
    stack.open()
    try:
        node = stack.upload("doomed.txt", b"v1")
        h = stack.w.open(node, write=True, truncate=True)
        assert h is not None
        stack.w.write(h, 0, b"v2, never wanted on the server")
        stack.w.release(h)
        assert started.wait(10)
        with stack.w.deleting(node.id):                 # what the mount's unlink does around its trash call
            client.move_to_trash(node.id)
            gate.set()
            wait_until(lambda: stack.w.pending_stats()["upload_failures"] >= 1, what="the upload's end")
            stack.w.forget_node(node.id)
        assert stack.w.wait_uploads(20)
        assert names(stack) == {}, names(stack)
        assert stack.w.pending_stats()["files"] == 0
    finally:
        gate.set()
        stack.close()


def answer_lost(real: Remote) -> tuple[Remote, dict[str, int]]:
    """A remote whose uploads and overwrites reach the server and then lose their answer, as often as
    ``lose["upload"]`` / ``lose["overwrite"]`` say."""
    lose = {"upload": 0, "overwrite": 0}

    def upload(stream: Any, name: str, parent: str) -> dict:
        answer = real.upload(stream, name, parent)
        if lose["upload"] > 0:
            lose["upload"] -= 1
            raise IncompleteResult(RequestError.CODE.INCOMPLETE_RESULT, f"upload {name!r}: answer cut")
        return answer

    def overwrite(stream: Any, node_id: str, base: int | None) -> dict:
        answer = real.overwrite(stream, node_id, base)
        if lose["overwrite"] > 0:
            lose["overwrite"] -= 1
            raise IncompleteResult(RequestError.CODE.INCOMPLETE_RESULT, f"overwrite {node_id}: answer cut")
        return answer

    return Remote(upload=upload, overwrite=overwrite, metadata=real.metadata, trash=real.trash, move=real.move,
                  conditional=real.conditional), lose


def test_own_upload_whose_answer_was_lost_is_no_conflict(client, drive_server, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          caplog) -> None:
    # found by scripts/soak.py: an upload landed but its answer was lost; the file was written again
    # before the retry, and the retry took the server's version (its own first attempt) for someone
    # else's change and uploaded the new content as a conflict copy
    remote, lose = answer_lost(remote_for(client))
    lose["upload"] = 1
    stack = WriteStack(client, drive_server, tmp_path / "c",
                       WriteOptions(upload_delay=0.0, retry_first=3.0, retry_cap=3.0), remote=remote)
    stack.open()
    caplog.set_level(logging.INFO, logger="acdfuse.vfs.upload")
    try:
        node = stack.write_file("f.txt", b"first")
        wait_until(lambda: lose["upload"] == 0, what="the first upload's lost answer")
        h = stack.w.open(node, write=True, truncate=True)      # written again before the retry
        assert h is not None
        stack.w.write(h, 0, b"second")
        stack.w.release(h)
        assert stack.w.wait_uploads(20)
        assert sorted(names(stack)) == ["f.txt"], names(stack)   # the first attempt's node was taken over
        node = stack.node("/f.txt")
        assert stack.server_bytes(node.id) == b"second"
        lose["overwrite"] = 1
        h = stack.w.open(node, write=True, truncate=True)      # now an overwrite that loses its answer
        assert h is not None
        stack.w.write(h, 0, b"third")
        stack.w.release(h)
        wait_until(lambda: lose["overwrite"] == 0, what="the overwrite's lost answer")
        h = stack.w.open(stack.node("/f.txt"), write=True, truncate=True)
        assert h is not None
        stack.w.write(h, 0, b"fourth")
        stack.w.release(h)
        assert stack.w.wait_uploads(20)
        assert sorted(names(stack)) == ["f.txt"], names(stack)
        assert stack.server_bytes(names(stack)["f.txt"]) == b"fourth"
        said = " ".join(r.getMessage() for r in caplog.records)
        # both retries ran after the rewrite (else they would have found their own bytes, proving nothing)
        assert "is an earlier upload of this file" in said and "holds an earlier upload of this file" in said
    finally:
        stack.close()


def held_before_sending(client: Any, gate: threading.Event, started: threading.Event, *,
                        confirmed: bool = False) -> Remote:
    """A remote whose new-file uploads wait for ``gate`` before they reach the server. ``confirmed``:
    the upload is then answered as the client answers one whose request got a 5xx before it was
    stored: by its confirmation, the node of that name in that folder when it holds the same bytes."""
    real = remote_for(client)
    held = [True]       # only the first attempt is held (and, ``confirmed``, answered so)

    def upload(stream: Any, name: str, parent: str) -> dict:
        if not held:
            return real.upload(stream, name, parent)
        held.clear()
        started.set()
        gate.wait(10)
        if confirmed:
            data = stream.read()
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            for child in client.list_children(parent):
                if child["name"] == name and child["contentProperties"]["md5"] == md5:
                    return dict(child)
            raise AssertionError(f"no node {name!r} with these bytes to confirm")
        return real.upload(stream, name, parent)

    return Remote(upload=upload, overwrite=real.overwrite, metadata=real.metadata, trash=real.trash,
                  move=real.move, conditional=real.conditional)


@contextmanager
def held_stack(client: Any, drive_server: Any, tmp_path: Path,
               confirmed: bool) -> Iterator[tuple[WriteStack, threading.Event, threading.Event]]:
    """A write stack whose uploads of new files wait at ``gate`` before sending (``started`` says one
    does; see ``held_before_sending``); the gate opens and the stack closes at the end."""
    started, gate = threading.Event(), threading.Event()
    remote = held_before_sending(client, gate, started, confirmed=confirmed)
    stack = WriteStack(client, drive_server, tmp_path / "c", WriteOptions(upload_delay=0.0), remote=remote)
    stack.open()
    try:
        yield stack, started, gate
    finally:
        gate.set()
        stack.close()


@pytest.mark.parametrize("confirmed", [False, True], ids=["conflict", "confirmed"])
def test_file_renamed_over_a_new_file_whose_upload_runs_stays(  # type: ignore[no-untyped-def]
        client, drive_server, tmp_path: Path, confirmed: bool) -> None:
    # found by scripts/soak.py (a file lost after a rename over another): `mv a b` where b is a new file
    # whose upload has not reached the server yet, and both hold the same bytes (the soak copies the
    # same sources many times). The rename discards b and renames a's node to b; b's upload then finds
    # a's node at its name with its own bytes, took it for an earlier attempt of its own, and, being
    # deleted meanwhile, trashed it: `b` was gone locally and on the server
    with held_stack(client, drive_server, tmp_path, confirmed) as (stack, started, gate):
        src = stack.upload("f-323.bin", b"the same source bytes")
        stack.write_file("f-671.bin", b"the same source bytes")
        assert started.wait(10)
        # what the mount's rename does for a server node over a pending file (fs/writeops._rename_node)
        assert stack.w.unlink_pending(stack.root.id, "f-671.bin")
        stack.s.apply_local(client.rename_node(src.id, "f-671.bin"))
        gate.set()
        assert stack.w.wait_uploads(20)
        found = names(stack)
        assert found == {"f-671.bin": src.id}, found
        assert stack.server_bytes(src.id) == b"the same source bytes"
        assert stack.node("/f-671.bin").id == src.id
        assert stack.w.pending_stats()["files"] == 0


@pytest.mark.parametrize("confirmed", [False, True], ids=["conflict", "confirmed"])
def test_new_file_renamed_away_while_its_upload_runs_leaves_the_file_now_at_its_old_name(  # type: ignore[no-untyped-def]
        client, drive_server, tmp_path: Path, confirmed: bool) -> None:
    # the same mix-up with a rename instead of a delete: `mv b c` while b's upload has not reached the
    # server, then `mv a b` (same bytes); b's upload found a's node at b, took it for its own and moved
    # it to c, so the name b was empty and a's node held c
    with held_stack(client, drive_server, tmp_path, confirmed) as (stack, started, gate):
        src = stack.upload("a.bin", b"identical bytes")
        stack.write_file("b.bin", b"identical bytes")
        assert started.wait(10)
        assert stack.w.rename_pending(stack.root.id, "b.bin", stack.root.id, "c.bin")
        stack.s.apply_local(client.rename_node(src.id, "b.bin"))
        gate.set()
        assert stack.w.wait_uploads(20)
        found = names(stack)
        assert sorted(found) == ["b.bin", "c.bin"], found
        assert found["b.bin"] == src.id and found["c.bin"] != src.id
        assert stack.server_bytes(found["c.bin"]) == b"identical bytes"
        assert stack.node("/b.bin").id == src.id
        assert stack.node("/c.bin").id == found["c.bin"]
        assert stack.w.pending_stats()["files"] == 0


def test_earlier_attempt_with_the_bytes_of_a_file_moved_to_its_name_overwrites_nothing(  # type: ignore[no-untyped-def]
        client, drive_server, tmp_path: Path) -> None:
    # b's first upload failed in a way that may have landed (it did not), so its bytes count as an
    # earlier attempt of its own; b is written again and renamed to c, then `mv a b` with a holding b's
    # first bytes. b's retry met a's node at b with the bytes of that attempt and overwrote it: a's
    # content was replaced by b's
    real = remote_for(client)
    failed, retrying, renamed = threading.Event(), threading.Event(), threading.Event()

    def upload(stream: Any, name: str, parent: str) -> dict:
        if not failed.is_set():
            failed.set()
            raise IncompleteResult(RequestError.CODE.INCOMPLETE_RESULT, f"upload {name!r}: connection lost")
        # the retry, under the name b it started with, reaches the server only after both renames
        retrying.set()
        renamed.wait(10)
        return real.upload(stream, name, parent)

    remote = Remote(upload=upload, overwrite=real.overwrite, metadata=real.metadata, trash=real.trash,
                    move=real.move, conditional=real.conditional)
    stack = WriteStack(client, drive_server, tmp_path / "c",
                       WriteOptions(upload_delay=0.0, retry_first=3.0, retry_cap=3.0), remote=remote)
    stack.open()
    try:
        src = stack.upload("a.bin", b"first bytes")
        node = stack.write_file("b.bin", b"first bytes")
        assert failed.wait(10)
        wait_until(lambda: stack.w.pending_stats()["upload_failures"] >= 1, what="the failed attempt")
        h = stack.w.open(node, write=True, truncate=True)
        assert h is not None
        stack.w.write(h, 0, b"second bytes")
        stack.w.release(h)
        assert retrying.wait(10)
        assert stack.w.rename_pending(stack.root.id, "b.bin", stack.root.id, "c.bin")
        stack.s.apply_local(client.rename_node(src.id, "b.bin"))
        renamed.set()
        assert stack.w.wait_uploads(30)
        found = names(stack)
        assert sorted(found) == ["b.bin", "c.bin"], found
        assert found["b.bin"] == src.id and stack.server_bytes(src.id) == b"first bytes"
        assert stack.server_bytes(found["c.bin"]) == b"second bytes"
        assert stack.w.pending_stats()["files"] == 0
    finally:
        renamed.set()
        stack.close()
