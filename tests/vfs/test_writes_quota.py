"""The write side below FUSE against a small drive: a full quota is a final refusal."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from vfs_helpers import pattern
from writes_helpers import KiB, MiB, WriteStack

from acdfuse.store.journal import pending_summary


@pytest.fixture
def server_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    from acdfuse.server import ServerConfig

    # a small drive, so a full quota is easy to reach
    return ServerConfig(data_dir=tmp_path / "server-data", host="127.0.0.1", port=0, quota=1 * MiB)


def test_full_quota_is_reported_once_and_the_copy_kept(wstack: WriteStack, caplog,  # type: ignore[no-untyped-def]
                                                       expect_errors: list[str]) -> None:
    expect_errors.append("will not be retried")
    data = pattern(1 * MiB + 1, seed=10)
    with caplog.at_level(logging.WARNING, logger="acdfuse"):
        wstack.write_file("toobig.bin", data)
        assert wstack.w.wait_uploads(20)
        time.sleep(0.5)                   # no timer retries it
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "full" in errors[0].getMessage() and "toobig.bin" in errors[0].getMessage()
    assert wstack.w.pending_stats()["files"] == 1
    summary = pending_summary(wstack.cache / "journal.db")      # what `acdfuse umount` reads
    assert summary.files == 0 and len(summary.refused) == 1
    assert summary.refused[0][0] == "toobig.bin" and "full" in summary.refused[0][1]
    pending = wstack.w.lookup_pending(wstack.root.id, "toobig.bin")
    assert pending is not None and pending.size == len(data)
    # kept across a remount, and tried again there (and refused again)
    wstack.remount()
    assert wstack.w.wait_uploads(20)
    assert wstack.w.lookup_pending(wstack.root.id, "toobig.bin") is not None
    # a write that makes it fit goes up
    h = wstack.w.open(pending, write=True)
    assert h is not None
    wstack.w.truncate(h, 100 * KiB)
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(wstack.node("/toobig.bin").id) == data[:100 * KiB]
