"""A folder's entries while a new file's upload is recorded: the file is in every listing.

A new file shows from the write side until its upload is recorded, then from the mirror. A listing
that read the mirror first and the write side second missed a file recorded in between (found by
scripts/soak.py: one ``ls`` left out a file that existed). The recording is forced between the two
looks here by running it inside the mirror's ``children``."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest
from ops_helpers import StackFactory, fails_with, fi

from acdfuse.mount import Stack


def new_file_recorded_during_the_listing(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Create /d/f.bin (pending, its upload held back), and make the mirror's next ``children``
    call run and record that upload before it answers (with what it held before)."""
    assert stack.writes is not None
    stack.ops.mkdir("/d", 0o755)
    f = fi(os.O_WRONLY | os.O_CREAT)
    stack.ops.create("/d/f.bin", 0o644, f)
    stack.ops.write("/d/f.bin", b"bytes", 0, f)
    stack.ops.release("/d/f.bin", f)
    real: Callable[[str], list[Any]] = stack.store.children
    armed = [True]

    def children(folder_id: str) -> list[Any]:
        out = real(folder_id)
        if armed:
            armed.clear()
            assert stack.writes is not None and stack.writes.drain(30)
        return out

    monkeypatch.setattr(stack.store, "children", children)


def test_readdir_shows_a_file_whose_upload_is_recorded_meanwhile(stacks: StackFactory,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stacks(upload_delay=3600)
    new_file_recorded_during_the_listing(stack, monkeypatch)
    fh = stack.ops.opendir("/d")
    names = [e if isinstance(e, str) else e[0] for e in stack.ops.readdir("/d", fh)]
    assert names.count("f.bin") == 1, names
    assert not stack.store.resolve("/d/f.bin").id.startswith("local:")     # (it was recorded)


def test_readdir_plus_shows_a_file_whose_upload_is_recorded_meanwhile(stacks: StackFactory,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stacks(upload_delay=3600)
    new_file_recorded_during_the_listing(stack, monkeypatch)
    fh = stack.ops.opendir("/d")
    entries = stack.ops.readdir_plus("/d", fh)
    assert entries is not None
    names = [name for name, _ in entries]
    assert names.count("f.bin") == 1, names


def test_rmdir_of_a_folder_whose_file_upload_is_recorded_meanwhile_is_enotempty(
        stacks: StackFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = stacks(upload_delay=3600)
    new_file_recorded_during_the_listing(stack, monkeypatch)
    fails_with(errno.ENOTEMPTY, lambda: stack.ops.rmdir("/d"))
    assert stack.store.resolve("/d/f.bin") is not None
