"""The random-operation checker in parallel (issue 12): many threads and several processes run it at
once on one mount, on files of their own, on one file through several handles (taking turns), and on
one file shared in stretches (writing and reading at the same time); the mount stays consistent with
the shadow copies, and after the uploads the server holds the same bytes.

``ACDFUSE_PARALLEL_STEPS`` (operations per worker), ``ACDFUSE_PARALLEL_THREADS`` and
``ACDFUSE_PARALLEL_PROCESSES`` make the run longer; ``scripts/reliability_mounts.py`` sets them.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import fusermount_u
from shadow import KiB, Band, Shadowed, md5, run_in_process, server_tree
from write_helpers import wait_uploaded

pytestmark = pytest.mark.mount

STEPS = int(os.environ.get("ACDFUSE_PARALLEL_STEPS", "300"))
THREADS = int(os.environ.get("ACDFUSE_PARALLEL_THREADS", "6"))
PROCESSES = int(os.environ.get("ACDFUSE_PARALLEL_PROCESSES", "3"))
BAND = 300 * KiB
# far beyond what the work takes even on a loaded machine (a few seconds): past this it is a hang
HANG_AFTER = float(os.environ.get("ACDFUSE_PARALLEL_HANG_AFTER", "240"))


def test_checker_in_threads_and_processes(cdir: Path, mounts: Any, client: Any,
                                          expect_errors: list[str]) -> None:
    m = mounts(cdir).start("--upload-delay", "0.2")
    own, shared = m.mnt / "own", m.mnt / "shared"
    own.mkdir()
    shared.mkdir()
    # one file in stretches: a band per thread and per process, each with a handle of its own
    banded = shared / "banded.bin"
    bands = THREADS + PROCESSES
    with open(banded, "wb") as f:
        f.truncate(bands * BAND)
    # one file through several handles, taken in turns by every thread
    turns = Shadowed(shared / "turns.bin", handles=3)
    turns_lock = threading.Lock()

    ctx = multiprocessing.get_context("spawn")      # a child imports shadow.py afresh, no forked locks
    t0 = time.monotonic()
    with ctx.Pool(PROCESSES) as pool:
        children = [pool.apply_async(run_in_process,
                                     (str(own), 1000 + p, STEPS, 2, (str(banded), (THREADS + p) * BAND, BAND)))
                    for p in range(PROCESSES)]
        failures: list[str] = []
        files: dict[int, list[Shadowed]] = {}
        ops: dict[str, int] = {}
        band_of: dict[int, Band] = {}

        def work(t: int) -> None:
            rng = random.Random(t)
            mine = files[t] = [Shadowed(own / f"t{t}-{i}.bin", handles=1 + i) for i in range(2)]
            band = band_of[t] = Band(banded, t * BAND, BAND)
            try:
                for _ in range(STEPS):
                    r = rng.random()
                    if r < 0.25:
                        op = "band " + band.step(rng)
                    elif r < 0.4:
                        with turns_lock:
                            op = "turns " + turns.step(rng)
                    else:
                        op = rng.choice(mine).step(rng)
                    ops[op] = ops.get(op, 0) + 1
            except BaseException:
                failures.append(f"thread {t}: {traceback.format_exc()}")

        threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + HANG_AFTER
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for c in children:
            c.wait(timeout=max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads) or not all(c.ready() for c in children):
            # a hang, not slowness: kill the mount (our child) so the callers stuck in the kernel
            # get ENOTCONN and this test ends with a message instead of hanging the suite
            assert m.proc is not None
            m.proc.kill()
            m.proc.wait(timeout=30)
            m.proc = None
            fusermount_u(m.mnt, lazy=True)
            pool.terminate()
            expect_errors.append("")    # whatever the killed mount logged is not the finding
            pytest.fail(f"the mount stopped answering: workers still running after {HANG_AFTER:.0f} s "
                        f"(an fsync waiting for an upload that never starts; RELIABILITY.md)")
        results = [c.get(timeout=60) for c in children]
    worked = time.monotonic() - t0
    assert not failures, "\n".join(failures)
    for f in [f for fs in files.values() for f in fs] + [turns]:
        f.close()
    for b in band_of.values():
        b.close()

    # the mount agrees with every shadow, through a fresh open
    want: dict[str, str] = {}
    for t, fs in files.items():
        for f in fs:
            assert f.path.read_bytes() == bytes(f.expect), f.path.name
            want[f"own/{f.path.name}"] = md5(bytes(f.expect))
    assert (shared / "turns.bin").read_bytes() == bytes(turns.expect)
    want["shared/turns.bin"] = md5(bytes(turns.expect))
    band_md5 = {}
    for t, b in band_of.items():
        band_md5[t * BAND] = md5(bytes(b.expect))
    for expected, counts in results:
        for name, digest in expected.items():
            if name.startswith("banded.bin@"):
                band_md5[int(name.split("@")[1])] = digest
            else:
                want[f"own/{name}"] = digest
                assert md5((own / name).read_bytes()) == digest, name
        for k, v in counts.items():
            ops["process " + k] = ops.get("process " + k, 0) + v
    whole = banded.read_bytes()
    assert len(whole) == bands * BAND
    for start, digest in band_md5.items():
        assert md5(whole[start:start + BAND]) == digest, f"band at {start}"
    want["shared/banded.bin"] = md5(whole)
    want.update({"own/": "", "shared/": ""})
    # and after the uploads the server holds the same bytes
    wait_uploaded(m.cache_dir, timeout=120)
    assert server_tree(client) == want
    print(f"\nparallel checker: {THREADS} threads + {PROCESSES} processes x {STEPS} steps in "
          f"{worked:.1f} s, {len(want) - 2} files, ops {dict(sorted(ops.items()))}; lost 0")
