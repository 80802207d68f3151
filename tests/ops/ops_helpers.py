"""Helpers of the in-process tier: the real stack from ``acdfuse.mount.build``, driven without a kernel."""

from __future__ import annotations

import errno
import io
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from acdfuse.fs.binding import FuseOSError
from acdfuse.mount import Stack

StackFactory = Callable[..., Stack]


def pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 31 + seed * 7) % 251 for i in range(65536))
    return (block * (size // len(block) + 1))[:size]


def upload(client: Any, name: str, data: bytes, parent: str | None = None) -> dict[str, Any]:
    return client.upload_stream(io.BytesIO(data), name, parent=parent)


def fi(flags: int = 0) -> SimpleNamespace:
    """What fusepy passes with raw_fi: a fuse_file_info the operations fill in (fh, keep_cache...)."""
    return SimpleNamespace(flags=flags, fh=0, keep_cache=0, direct_io=0)


def read_file(stack: Stack, path: str, size: int = 1 << 30) -> bytes:
    """open, read everything in kernel-sized requests, release: what `cat` does through the kernel."""
    ops = stack.ops
    f = fi()
    ops.open(path, f)
    try:
        parts, offset = [], 0
        while offset < size:
            part = ops.read(path, min(128 * 1024, size - offset), offset, f)
            if not part:
                break
            parts.append(part)
            offset += len(part)
        return b"".join(parts)
    finally:
        ops.release(path, f)


def fails_with(code: int, call: Callable[[], object]) -> None:
    """The operation leaves with FuseOSError(code), as libfuse would pass it to the kernel."""
    with pytest.raises(FuseOSError) as info:
        call()
    assert info.value.errno == code, (errno.errorcode.get(info.value.errno), errno.errorcode.get(code))


def resync(stack: Stack) -> None:
    """One sync as the sync loop runs it (listeners included: the operations drop derived state)."""
    assert stack.sync_loop.run_once(), stack.sync_loop.last_error
