"""Fixtures of the in-process tier: the real stack (API client, SQLite mirror, content reader, sync
loop, FUSE operations) built by ``acdfuse.mount.build`` against the test server on a loopback port.
No kernel: the tests call ``stack.ops`` as libfuse would. Every stack is closed in teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import StackFactory

from acdfuse.mount import Stack, build
from acdfuse.runtime.options import Options


@pytest.fixture
def stacks(tmp_path: Path, cdir: Path) -> Iterator[StackFactory]:
    """``stacks(config_dir=cdir, cache="cache", start=True, **Options fields)`` -> a built stack."""
    made: list[Stack] = []

    def make(config_dir: Path = cdir, cache: str = "cache", start: bool = True, **fields: Any) -> Stack:
        settings: dict[str, Any] = {"interval": 3600.0, "timeout": 10.0, **fields}
        opts = Options(mountpoint=tmp_path / "mnt", config_dir=config_dir, cache_dir=tmp_path / cache,
                       run_dir=tmp_path / "run", **settings)
        stack = build(opts)
        made.append(stack)
        if start:
            stack.start()
        return stack

    yield make
    for stack in reversed(made):
        stack.close()
