"""Helpers for the api tests: quick node creation and a client factory with a short retry budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from acdfuse.api.client import ACDClient


@pytest.fixture
def make_client(cdir: Path) -> Iterator[Callable[..., ACDClient]]:
    """Build extra clients on the same config dir (closed at the end of the test)."""
    made: list[ACDClient] = []

    def make(**kwargs: object) -> ACDClient:
        c = ACDClient(str(cdir), **kwargs)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def root_id(client: ACDClient) -> str:
    return client.get_root_id()
