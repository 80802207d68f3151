"""Helpers of the write tests on real mounts: source trees, tree comparison, waiting for uploads."""

from __future__ import annotations

import filecmp
import os
import random
import time
from pathlib import Path

import pytest

from acdfuse.store.journal import unconfirmed_files


def make_tree(root: Path, seed: int = 0) -> Path:
    """A mixed tree: text, binary (several MiB), empty files, nested and empty folders, odd names."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "README.txt").write_text("a mixed tree\n" * 100)
    (root / "empty").write_bytes(b"")
    (root / "big.bin").write_bytes(rng.randbytes(5 * 1024 * 1024 + 123))
    (root / "with space & ünïcode.txt").write_text("odd name\n")
    deep = root / "a" / "b" / "c"
    deep.mkdir(parents=True)
    for i in range(30):
        (deep / f"f{i:02}.dat").write_bytes(rng.randbytes(rng.randrange(0, 70_000)))
    (root / "a" / "mid.txt").write_text("middle\n")
    (root / "empty-dir").mkdir()
    return root


def same_tree(a: Path, b: Path) -> list[str]:
    """Differences between two trees (names and bytes); [] when equal."""
    problems: list[str] = []

    def walk(cmp: filecmp.dircmp) -> None:  # type: ignore[type-arg]
        problems.extend(f"only in {cmp.left}: {n}" for n in cmp.left_only)
        problems.extend(f"only in {cmp.right}: {n}" for n in cmp.right_only)
        problems.extend(f"type differs: {n}" for n in cmp.common_funny)
        for name in cmp.common_files:
            if Path(cmp.left, name).read_bytes() != Path(cmp.right, name).read_bytes():
                problems.append(f"content differs: {Path(cmp.left, name)}")
        for sub in cmp.subdirs.values():
            walk(sub)

    walk(filecmp.dircmp(a, b))
    return problems


def pending_uploads(cache_dir: Path) -> int:
    """Rows in a mount's write journal (files not confirmed on the server yet)."""
    return unconfirmed_files(cache_dir / "journal.db")


def wait_uploaded(cache_dir: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while pending_uploads(cache_dir):
        if time.monotonic() > deadline:
            pytest.fail(f"{pending_uploads(cache_dir)} file(s) still not uploaded after {timeout} s")
        time.sleep(0.1)


def write_file(path: Path, data: bytes, fsync: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
