"""A slow network (the server's latency and bandwidth switches): an upload that takes several times the
mount's --timeout still completes, and the mount answers ls, stat and cached reads while it runs."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount, pattern, upload
from write_helpers import wait_uploaded, write_file

from acdfuse.server import DriveServer

pytestmark = pytest.mark.mount

KiB = 1024
TIMEOUT = 4            # the mount's --timeout
BANDWIDTH = 320 * KiB  # per connection: the large file takes about 13 s, three times --timeout


def journal_states(cache_dir: Path) -> list[str]:
    path = cache_dir / "journal.db"
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [row[0] for row in con.execute("SELECT state FROM dirty")]
    finally:
        con.close()


def test_slow_upload_completes_and_ls_answers_meanwhile(mount: Mount, drive_server: DriveServer,
                                                        client: Any) -> None:
    folder = client.create_folder("docs")
    for i in range(20):
        upload(client, f"note{i}.txt", f"note {i}\n".encode(), folder["id"])
    small = pattern(150 * KiB, 3)
    upload(client, "small.bin", small)
    mount.start("--upload-delay", "0", "--timeout", str(TIMEOUT))
    cached = sorted(os.listdir(mount.mnt / "docs"))
    assert (mount.mnt / "docs" / "note3.txt").read_bytes() == b"note 3\n"
    big = pattern(4 * 1024 * KiB, 1)
    drive_server.faults.configure(latency_ms=300, bandwidth=BANDWIDTH)
    try:
        started = time.monotonic()
        writer_done = threading.Event()
        failure: list[BaseException] = []

        def write_big() -> None:
            try:
                write_file(mount.mnt / "big.bin", big, fsync=True)      # returns once it is uploaded
            except BaseException as exc:
                failure.append(exc)
            finally:
                writer_done.set()

        t = threading.Thread(target=write_big, daemon=True)
        t.start()
        deadline = time.monotonic() + 60
        while "uploading" not in journal_states(mount.cache_dir):
            assert time.monotonic() < deadline and not writer_done.is_set(), "the upload did not start"
            time.sleep(0.05)
        # the upload is on the wire: the mount still answers what it knows without waiting for it
        assert sorted(os.listdir(mount.mnt / "docs")) == cached
        assert "big.bin" in os.listdir(mount.mnt)
        assert os.stat(mount.mnt / "big.bin").st_size == len(big)
        assert (mount.mnt / "docs" / "note3.txt").read_bytes() == b"note 3\n"
        # ... and a small read of the server at the same low bandwidth (another connection) works
        assert (mount.mnt / "small.bin").read_bytes() == small
        still_uploading = "uploading" in journal_states(mount.cache_dir)
        assert still_uploading and not writer_done.is_set(), \
            "the upload ended before the checks: they did not run while it was in flight"
        assert writer_done.wait(180), "fsync of the slow upload did not return"
        took = time.monotonic() - started
        assert not failure, failure
    finally:
        drive_server.faults.reset()
    print(f"4 MiB at {BANDWIDTH // KiB} KiB/s and 300 ms latency: uploaded and fsynced in {took:.1f} s "
          f"(--timeout {TIMEOUT})")
    assert took > TIMEOUT, f"the upload took {took:.1f} s: not slower than --timeout, the test proves nothing"
    wait_uploaded(mount.cache_dir)
    found = {c["name"]: c for c in client.list_children(client.get_root_id())}
    assert bytes(client.download_chunk(found["big.bin"]["id"], 0, len(big))) == big
