#!/usr/bin/env python3
"""Longer runs of the mount concurrency scenarios of issue 12 (not a test itself).

    python3 scripts/reliability_mounts.py [--seconds 120] [--mounts 4] [--steps 2000] [--threads 12]
                                          [--processes 4] [--nodes 100000] [--seed 1] [--only NAME]

Runs, with real FUSE mounts against an in-process server, the same tests the suite runs short:

- ``mounts``: tests/mount/test_reliability_mounts.py -- ``--mounts`` mounts of one drive write and
  read for ``--seconds``, then converge; plus concurrent edits of one file and a rename during upload;
- ``parallel``: tests/mount/test_reliability_parallel.py -- the random-operation checker in
  ``--threads`` threads and ``--processes`` processes, ``--steps`` operations each;
- ``sync``: tests/mount/test_reliability_sync.py -- readers and writers while ``--nodes`` nodes are
  synced and then a remote reset rebuilds the mirror.

The parameters reach the tests as environment variables; each test prints its figures (load held,
operations, what was lost). Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = {
    "mounts": "tests/mount/test_reliability_mounts.py",
    "parallel": "tests/mount/test_reliability_parallel.py",
    "sync": "tests/mount/test_reliability_sync.py",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120, help="work time of the many-mounts run")
    p.add_argument("--mounts", type=int, default=4, help="mounts of one drive")
    p.add_argument("--steps", type=int, default=2000, help="operations per checker worker")
    p.add_argument("--threads", type=int, default=12, help="checker threads")
    p.add_argument("--processes", type=int, default=4, help="checker processes")
    p.add_argument("--nodes", type=int, default=100_000, help="nodes generated remotely during sync")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", choices=sorted(TESTS), action="append", help="run only these (repeatable)")
    args = p.parse_args()
    env = dict(os.environ,
               ACDFUSE_MOUNTS_SECONDS=str(args.seconds), ACDFUSE_MOUNTS_COUNT=str(args.mounts),
               ACDFUSE_MOUNTS_SEED=str(args.seed), ACDFUSE_PARALLEL_STEPS=str(args.steps),
               ACDFUSE_PARALLEL_THREADS=str(args.threads), ACDFUSE_PARALLEL_PROCESSES=str(args.processes),
               ACDFUSE_SYNC_NODES=str(args.nodes))
    chosen = [TESTS[name] for name in (args.only or sorted(TESTS))]
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *chosen]
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
