"""The write side as the composition root wires it: a stack from ``build`` writes through its
operations, and closing it leaves what is not uploaded in the journal for the next one."""

from __future__ import annotations

import os
from typing import Any

from ops_helpers import StackFactory, fi, read_file


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

