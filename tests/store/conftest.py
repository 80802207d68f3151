"""Fixtures for the store tests: an opened NodeStore in a temp dir and a scripted change feed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acdfuse.store import NodeStore

from .helpers import Feed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "mirror" / "nodes.db")
    s.open()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def feed() -> Feed:
    return Feed()
