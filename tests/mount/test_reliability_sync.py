"""Readers and writers during sync (issue 12): while a mount applies a large sync (the server's bulk
generator adds many nodes remotely) and then a remote reset (its checkpoint falls behind forgotten
tombstones, so the server sends the whole tree again and the mirror is rebuilt and swapped in,
store/sync.py), readers keep reading correct bytes, writers keep writing, and nothing fails.

``ACDFUSE_SYNC_NODES`` sets the size of the generated tree (default 10,000).
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from shadow import md5
from write_helpers import wait_uploaded, write_file

pytestmark = pytest.mark.mount

NODES = int(os.environ.get("ACDFUSE_SYNC_NODES", "10000"))
KiB = 1024


def resets(log_file: Path) -> int:
    """Syncs the mount finished with a rebuilt mirror (the first sync is one)."""
    return sum("sync done:" in line and "reset=True" in line
               for line in log_file.read_text(errors="replace").splitlines())


def test_readers_and_writers_keep_working_through_a_large_sync_and_a_reset(
        cdir: Path, mounts: Any, client: Any, drive_server: Any) -> None:
    rng = random.Random(3)
    root = client.get_root_id()
    data_folder = client.create_folder("data", root)["id"]
    originals = {f"f{i:02}.bin": rng.randbytes(rng.choice([0, 1000, 70 * KiB, 600 * KiB]))
                 for i in range(16)}
    for name, content in originals.items():
        client.upload_stream(io.BytesIO(content), name, parent=data_folder)
    bulk = client.create_folder("bulk", root)["id"]
    m = mounts(cdir).start("--upload-delay", "0.2")
    assert sorted(os.listdir(m.mnt / "data")) == sorted(originals)

    stop = threading.Event()
    failures: list[str] = []
    counts = {"reads": 0, "writes": 0, "lists": 0}
    written: dict[str, bytes] = {}
    phase = ["before"]
    per_phase: dict[str, int] = {}

    def guarded(fn: Any) -> Any:
        def run(*args: Any) -> None:
            try:
                while not stop.is_set():
                    fn(*args)
            except BaseException:
                failures.append(traceback.format_exc())
        return run

    @guarded
    def reader(seed: int) -> None:
        name = random.Random(seed + counts["reads"]).choice(sorted(originals))
        if (m.mnt / "data" / name).read_bytes() != originals[name]:
            raise AssertionError(f"data/{name} read back wrong during {phase[0]}")
        counts["reads"] += 1
        per_phase[phase[0]] = per_phase.get(phase[0], 0) + 1

    @guarded
    def writer(w: int) -> None:
        n = counts["writes"]
        key = f"w{w}-{n:04}.bin"
        content = random.Random(n * 10 + w).randbytes(random.Random(n).choice([10, 5000, 200 * KiB]))
        write_file(m.mnt / "out" / key, content, fsync=n % 7 == 0)
        if (m.mnt / "out" / key).read_bytes() != content:
            raise AssertionError(f"out/{key} read back wrong during {phase[0]}")
        written[key] = content
        counts["writes"] += 1

    @guarded
    def lister() -> None:
        names = os.listdir(m.mnt / "data")
        if sorted(names) != sorted(originals):
            raise AssertionError(f"data/ listed {len(names)} names during {phase[0]}")
        os.listdir(m.mnt)
        counts["lists"] += 1

    (m.mnt / "out").mkdir()
    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    threads += [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    threads.append(threading.Thread(target=lister))
    for t in threads:
        t.start()
    try:
        # 1. a large sync: many nodes appear remotely at once
        phase[0] = "the large sync"
        tree = drive_server.generate_tree(n_nodes=NODES, fanout=20, folders_per_folder=4, parent=bulk,
                                          prefix="g")
        deepest = m.mnt / "bulk" / tree.deepest_path
        m.sync(check=deepest.exists, timeout=180)
        # 2. a remote reset: a file the mount has seen is purged and its tombstone forgotten, so the
        # mount's checkpoint is too old and the server answers with the whole tree (reset: true)
        phase[0] = "the reset"
        gone = client.upload_stream(io.BytesIO(b"soon purged"), "gone.txt", parent=root)
        m.sync(check=lambda: (m.mnt / "gone.txt").exists())
        before = resets(m.log_file)
        client.move_to_trash(gone["id"])
        drive_server.purge(gone["id"])
        drive_server.forget_purged()
        m.sync(check=lambda: resets(m.log_file) > before and not (m.mnt / "gone.txt").exists(),
               timeout=180)
        assert deepest.exists()
        phase[0] = "after"
        time.sleep(0.5)      # the workers run a little on the rebuilt mirror too
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert not failures, "\n".join(failures)
    assert per_phase.get("the large sync", 0) > 0 and per_phase.get("the reset", 0) > 0, per_phase
    wait_uploaded(m.cache_dir, timeout=120)
    out = next(n["id"] for n in client.list_children(root) if n["name"] == "out")
    on_server = {n["name"]: n["contentProperties"]["md5"] for n in client.list_children(out)}
    assert on_server == {key: md5(content) for key, content in written.items()}
    print(f"\nduring sync: {NODES} nodes generated remotely, then a reset; {counts['reads']} reads "
          f"({per_phase}), {counts['writes']} files written, {counts['lists']} listings; errors 0, lost 0")
