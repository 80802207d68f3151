"""`acdfuse cache prune|clear`: through a live mount's control socket, or on a cache dir no mount uses
(locked meanwhile); never anything but the read cache's chunk files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import pattern, upload

from acdfuse.common.locks import take_lock

pytestmark = pytest.mark.mount

SIZE = 3 << 20


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = os.environ.copy()
    for var, name in (("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache-home"),
                      ("XDG_CONFIG_HOME", "config"), ("XDG_RUNTIME_DIR", "run")):
        env[var] = str(tmp_path / name)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acdfuse", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def chunk_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "chunks" / "chunks").glob("*.c"))


def disk_chunks(env: dict[str, str], mnt: Path) -> int:
    done = cli(env, "status", str(mnt), "--json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)[0]["cache"]["disk_chunks"])


def wait_for_chunks(env: dict[str, str], mnt: Path, at_least: int = 1) -> int:
    deadline = time.monotonic() + 30
    while (n := disk_chunks(env, mnt)) < at_least:
        assert time.monotonic() < deadline, "the read left no chunk on disk"
        time.sleep(0.1)
    return n


def test_cache_commands(mounts: Any, cdir: Path, client: Any, env: dict[str, str], tmp_path: Path) -> None:
    upload(client, "big.bin", pattern(SIZE))
    upload(client, "other.bin", pattern(SIZE, seed=1))
    upload(client, "third.bin", pattern(SIZE, seed=2))
    m = mounts(cdir, env=env).start()
    assert (m.mnt / "big.bin").read_bytes() == pattern(SIZE)
    assert (m.mnt / "other.bin").read_bytes() == pattern(SIZE, seed=1)
    before = wait_for_chunks(env, m.mnt, at_least=2)    # each file is at least one chunk

    # through the mount, named by its mount point: prune keeps what fits, clear drops the rest
    done = cli(env, "cache", "prune", str(m.mnt), "--size", "4M")
    assert done.returncode == 0, done.stderr
    assert f"{m.mnt}: dropped" in done.stdout
    assert 0 < disk_chunks(env, m.mnt) < before
    done = cli(env, "cache", "clear", str(m.mnt))
    assert done.returncode == 0, done.stderr
    assert disk_chunks(env, m.mnt) == 0 and chunk_files(m.cache_dir) == []
    # the mount still reads (the memory tier keeps what it had; the rest comes from the server)
    assert (m.mnt / "big.bin").read_bytes() == pattern(SIZE)
    assert (m.mnt / "third.bin").read_bytes() == pattern(SIZE, seed=2)
    wait_for_chunks(env, m.mnt)
    # named by its cache dir, which the mount holds: it goes through the mount too
    done = cli(env, "cache", "prune", str(m.cache_dir), "--size", "1G")
    assert done.returncode == 0, done.stderr
    assert f"{m.mnt}: dropped 0 chunks" in done.stdout and disk_chunks(env, m.mnt) >= 1
    m.stop()

    # no mount: the cache dir directly; the write side's files and the mirror stay
    (m.cache_dir / "journal.db").write_bytes(b"journal")
    (m.cache_dir / "spool").mkdir(exist_ok=True)        # the write side made it already
    (m.cache_dir / "spool" / "upload-1").write_bytes(b"not uploaded yet")
    assert chunk_files(m.cache_dir)
    done = cli(env, "cache", "prune", str(m.cache_dir))
    assert done.returncode == 1 and "needs --size" in done.stderr
    done = cli(env, "cache", "prune", str(m.cache_dir), "--size", "0")
    assert done.returncode == 0, done.stderr
    assert chunk_files(m.cache_dir) == []
    assert (m.cache_dir / "journal.db").read_bytes() == b"journal"
    assert (m.cache_dir / "spool" / "upload-1").read_bytes() == b"not uploaded yet"
    assert (m.cache_dir / "nodes.db").exists()

    # a process holding the lock without a control socket: refused, nothing touched
    fd = take_lock(m.cache_dir / "lock")
    try:
        done = cli(env, "cache", "clear", str(m.cache_dir))
    finally:
        os.close(fd)
    assert done.returncode == 1 and "in use by a mount" in done.stderr

    done = cli(env, "cache", "clear", str(tmp_path / "nothing"))
    assert done.returncode == 1 and "neither a running mount nor a cache dir" in done.stderr
