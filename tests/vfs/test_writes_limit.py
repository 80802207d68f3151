"""The server's per-file size limit, as it advertises it: a write past it is EFBIG at once."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from writes_helpers import MiB, WriteStack

from acdfuse.server import ServerConfig


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(data_dir=tmp_path / "server-data", host="127.0.0.1", port=0, max_file_size=2 * MiB)


def test_write_past_the_servers_limit_is_efbig_when_made(wstack: WriteStack) -> None:
    h = wstack.w.create(wstack.root.id, "limit.bin")
    wstack.w.write(h, 0, b"x" * (2 * MiB))
    with pytest.raises(OSError) as info:
        wstack.w.write(h, 2 * MiB, b"y")
    assert info.value.errno == errno.EFBIG
    with pytest.raises(OSError) as info:
        wstack.w.truncate(h, 2 * MiB + 1)
    assert info.value.errno == errno.EFBIG
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    assert wstack.node("/limit.bin").size == 2 * MiB
