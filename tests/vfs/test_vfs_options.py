"""ReaderOptions: defaults as documented, nonsense refused at construction."""

from __future__ import annotations

import pytest

from acdfuse.vfs import GiB, MiB, ReaderOptions


def test_defaults() -> None:
    opts = ReaderOptions()
    assert opts.memory_cache == 256 * MiB and opts.cache_size == 4 * GiB
    assert opts.read_ahead == 64 * MiB and opts.streams == 4 and opts.timeout == 30.0
    assert opts.initial_window == 1 * MiB and opts.chunk_size == 4 * MiB and opts.request_size == 8 * MiB


@pytest.mark.parametrize("bad", [dict(chunk_size=0), dict(streams=0), dict(timeout=0), dict(memory_cache=-1),
                                 dict(read_ahead_budget=-1), dict(request_size=1000, chunk_size=4096),
                                 dict(disk_queue=-5)])
def test_bad_values_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ReaderOptions(**bad)  # type: ignore[arg-type]
