#!/usr/bin/env python3
"""Soak a real mount under server faults (not a test): workers copy in, read back, rename and delete
a mixed tree of small and large files while the server refuses and cuts requests at random.

    python3 scripts/soak.py [--duration 300] [--workers 8] [--small 48] [--large 6]
                            [--large-size 12M] [--error-rate 0.1] [--cut-rate 0.05] [--seed 1]

Starts an ``acdfuse.server.DriveServer`` on loopback in this process and ``acdfuse mount --foreground``
as a child process, then turns the fault switches on (by default 10% of API requests answered
429/500/503 and 5% of answer bodies cut) and runs the workers for ``--duration`` seconds. Each
worker owns a folder of the mount and keeps the content each of its paths must have; every read
back is compared with it (a difference is *corrupt data handed to a caller*). Every operation runs
under a watchdog: one that takes longer than ``--op-timeout`` is a *hang* and fails the run.

At the end the workers stop, the mount's write journal is waited on until every closed file is
uploaded, the mount is unmounted, the faults are switched off, and the server's tree is compared
with the workers' expectations through the API (not the mount): a path missing or with other bytes
is *lost*. Prints the load, the faults injected (the server's counters), the errors callers saw by
errno, and the losses; exits 1 on any loss, corrupt read, hang, or unexpected log line.

``tests/mount/test_reliability_soak.py`` runs a short version through ``run_workers``, ``wait_uploads``
and ``verify_on_server``.
"""

from __future__ import annotations

import argparse
import errno
import functools
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acdfuse.api.client import ACDClient
from acdfuse.server import DriveServer, ServerConfig
from acdfuse.store.journal import unconfirmed_files

KiB = 1024
MiB = 1024 * KiB
ROOT = "soak"                      # the folder of the drive the workers write under
BLOCK = 256 * KiB                  # copy block: several FUSE writes per block, like cp

# operation mix of a worker (weights)
MIX = (("copy", 30), ("read", 28), ("rename", 12), ("delete", 8), ("fsync_copy", 6), ("list", 10),
       ("append", 6))


@dataclass(frozen=True)
class SoakConfig:
    duration: float = 30.0
    workers: int = 8
    small_files: int = 48             # source files of 0 .. small_max bytes (a few empty)
    small_max: int = 256 * KiB
    large_files: int = 6              # source files of large_size/2 .. large_size bytes
    large_size: int = 12 * MiB
    error_rate: float = 0.10
    cut_rate: float = 0.05
    op_timeout: float = 180.0         # longer than this is a hang (fsync waits for its upload)
    seed: int = 1


@dataclass(frozen=True)
class Source:
    path: Path
    size: int
    md5: str


@dataclass
class WorkerResult:
    ops: Counter[str] = field(default_factory=Counter)
    failed_ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)          # errno name -> count
    error_samples: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)               # a read that returned wrong bytes
    inconsistent: list[str] = field(default_factory=list)          # a listing or stat that disagreed
    vanished: list[str] = field(default_factory=list)              # a file this worker kept, gone: lost
    bugs: list[str] = field(default_factory=list)                  # an exception that is not an OSError
    bytes_in: int = 0
    bytes_read: int = 0
    fsynced: int = 0
    expected: dict[str, str] = field(default_factory=dict)          # drive path -> md5 it must hold
    unknown: set[str] = field(default_factory=set)                  # outcome unknown after a failure
    history: list[str] = field(default_factory=list)               # every operation and its outcome

    def story(self, path: str) -> list[str]:
        """The operations that named ``path`` (for a report of what went wrong with it)."""
        return [h for h in self.history if path in h.split(" ")]


@dataclass
class SoakResult:
    workers: list[WorkerResult]
    seconds: float
    hangs: list[str]

    def total(self, name: str) -> Counter[str]:
        out: Counter[str] = Counter()
        for w in self.workers:
            out.update(getattr(w, name))
        return out

    def all(self, name: str) -> list[str]:
        return [x for w in self.workers for x in getattr(w, name)]

    @property
    def expected(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for w in self.workers:
            out.update(w.expected)
        return out

    @property
    def unknown(self) -> set[str]:
        return {p for w in self.workers for p in w.unknown}


# ---- the source tree -------------------------------------------------------------------------------

def make_sources(root: Path, cfg: SoakConfig) -> list[Source]:
    """The mixed tree the workers copy in: small files (some empty), a few large ones."""
    rng = random.Random(cfg.seed)  # noqa: S311 - test data, repeatable by seed
    root.mkdir(parents=True, exist_ok=True)
    sizes = [0, 1] + [rng.randrange(0, cfg.small_max + 1) for _ in range(max(0, cfg.small_files - 2))]
    sizes += [rng.randrange(cfg.large_size // 2, cfg.large_size + 1) for _ in range(cfg.large_files)]
    out = []
    for i, size in enumerate(sizes):
        path = root / f"src{i:03}.bin"
        data = rng.randbytes(size)
        path.write_bytes(data)
        out.append(Source(path, size, hashlib.md5(data, usedforsecurity=False).hexdigest()))
    return out


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# ---- the watchdog ----------------------------------------------------------------------------------

class Watchdog:
    """Notes when each worker's current operation started; one older than ``limit`` is a hang."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._current: dict[int, tuple[str, float]] = {}
        self.hangs: list[str] = []
        self.hung = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="soak-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @contextmanager
    def op(self, key: int, what: str) -> Iterator[None]:
        """Watch one operation of worker ``key`` while the block runs."""
        with self._lock:
            self._current[key] = (what, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._current.pop(key, None)

    def _watch(self) -> None:
        reported: set[tuple[int, float]] = set()
        while not self._stop.wait(1.0):
            now = time.monotonic()
            with self._lock:
                late = [(k, what, t0) for k, (what, t0) in self._current.items() if now - t0 > self.limit]
            for key, what, t0 in late:
                if (key, t0) not in reported:
                    reported.add((key, t0))
                    self.hangs.append(f"worker {key}: {what} did not return within {self.limit:.0f} s")
                    self.hung.set()


# ---- one worker ------------------------------------------------------------------------------------

class Worker:
    """One thread's loop of operations in its own folder ``ROOT/w<n>`` of the mount."""

    def __init__(self, index: int, mnt: Path, sources: list[Source], cfg: SoakConfig,  # noqa: PLR0917
                 watchdog: Watchdog, stop: threading.Event) -> None:
        self.index = index
        self.mnt = mnt
        self.sources = sources
        self.rng = random.Random(cfg.seed * 1000 + index)  # noqa: S311 - repeatable by seed
        self.watchdog = watchdog
        self.stop = stop
        self.res = WorkerResult()
        self.t0 = time.monotonic()
        self.top = f"{ROOT}/w{index}"
        self.counter = 0
        self.dirs = [self.top, f"{self.top}/d0", f"{self.top}/d1", f"{self.top}/d0/deep"]

    # paths are drive paths relative to the mount root
    def local(self, rel: str) -> Path:
        return self.mnt / rel

    def run(self) -> None:
        for d in self.dirs:
            self.guard("mkdir", d, functools.partial(self.local(d).mkdir, exist_ok=True))
        names = [m for m, _ in MIX]
        weights = [w for _, w in MIX]
        while not self.stop.is_set():
            op = self.rng.choices(names, weights)[0]
            if op in ("read", "rename", "delete", "append") and not self.res.expected:
                op = "copy"
            getattr(self, f"op_{op}")()

    def guard(self, op: str, what: str, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` under the watchdog; count it; True if it worked. An OSError is counted by errno."""
        self.res.ops[op] += 1
        t0 = time.monotonic()
        try:
            with self.watchdog.op(self.index, f"{op} {what}"):
                fn()
            self.res.history.append(f"{t0 - self.t0:.3f} {op} {what} ok")
            return True
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, f"errno {exc.errno}")
            self.res.history.append(f"{t0 - self.t0:.3f} {op} {what} {name}")
            self.res.errors[name] += 1
            self.res.failed_ops[op] += 1
            if len(self.res.error_samples) < 20:
                self.res.error_samples.append(f"{op} {what}: {exc}")
            if exc.errno == errno.ENOENT and op in ("read", "append", "rename", "delete"):
                # the file this worker wrote and did not delete must be there: it is lost
                self.res.inconsistent.append(f"{op} {what}: ENOENT for a file that exists")
                self.res.vanished.append(f"{what.split(' ', 1)[0]}: gone from the mount ({op} got ENOENT)")
            return False
        except _Corrupt:
            self.res.failed_ops[op] += 1
            return False
        except Exception as exc:  # a bug of the soak itself, or a failure that is not an errno
            self.res.bugs.append(f"{op} {what}: {type(exc).__name__}: {exc}")
            self.res.failed_ops[op] += 1
            return False

    def new_path(self) -> str:
        self.counter += 1
        return f"{self.rng.choice(self.dirs)}/f{self.index}-{self.counter}.bin"

    def some_path(self) -> str:
        return self.rng.choice(sorted(self.res.expected))

    def settle(self, *paths: str) -> None:
        """After a failed change: learn what each path holds now through the mount, as a caller
        would; a path that cannot even be looked at is left out of the check (unknown)."""
        for p in paths:
            self.res.expected.pop(p, None)
            try:
                with self.watchdog.op(self.index, f"settle {p}"):
                    data = self.local(p).read_bytes()
            except FileNotFoundError:
                continue
            except OSError:
                self.res.unknown.add(p)
                continue
            self.res.expected[p] = md5_of(data)

    # ---- operations --------------------------------------------------------------------------
    def _copy(self, dst: str, src: Source, fsync: bool) -> bool:
        acknowledged = False

        def copy() -> None:
            nonlocal acknowledged
            fd = os.open(self.local(dst), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                with open(src.path, "rb") as f:
                    while block := f.read(BLOCK):
                        view = memoryview(block)
                        while view:
                            view = view[os.write(fd, view):]
                # the bytes are written: what the mount must keep from here on, whatever follows
                acknowledged = True
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

        ok = self.guard("fsync_copy" if fsync else "copy", dst, copy)
        if ok:
            self.res.expected[dst] = src.md5
            self.res.bytes_in += src.size
            self.res.unknown.discard(dst)
            self.res.fsynced += fsync
        elif acknowledged and fsync:
            # fsync failed (its upload did, this time): the written bytes stay and go up later
            self.res.expected[dst] = src.md5
            self.res.unknown.discard(dst)
        else:
            self.settle(dst)
        return ok

    def op_copy(self) -> None:
        if self.res.expected and self.rng.random() < 0.3:
            dst = self.some_path()          # an overwrite of a file there
        else:
            dst = self.new_path()
        self._copy(dst, self.rng.choice(self.sources), fsync=False)

    def op_fsync_copy(self) -> None:
        self._copy(self.new_path(), self.rng.choice(self.sources), fsync=True)

    def op_append(self) -> None:
        path = self.some_path()
        extra = self.rng.randbytes(self.rng.randrange(1, 64 * KiB))
        before = self.res.expected[path]

        def append() -> None:
            data = self.local(path).read_bytes()
            if md5_of(data) != before:
                self.res.corrupt.append(f"{path}: read before an append gave other bytes")
                raise _Corrupt()
            with open(self.local(path), "ab") as f:
                f.write(extra)
            self.res.expected[path] = md5_of(data + extra)

        if not self.guard("append", path, append):
            self.settle(path)

    def op_read(self) -> None:
        path = self.some_path()
        want = self.res.expected[path]
        got: list[bytes] = []
        if self.guard("read", path, lambda: got.append(self.local(path).read_bytes())):
            self.res.bytes_read += len(got[0])
            if md5_of(got[0]) != want:
                self.res.corrupt.append(f"{path}: {len(got[0])} bytes read, md5 {md5_of(got[0])} != {want}")

    def op_rename(self) -> None:
        src = self.some_path()
        others = [p for p in self.res.expected if p != src]
        dst = self.rng.choice(others) if others and self.rng.random() < 0.2 else self.new_path()
        if self.guard("rename", f"{src} -> {dst}", lambda: os.rename(self.local(src), self.local(dst))):
            self.res.expected[dst] = self.res.expected.pop(src)
            self.res.unknown.discard(dst)
        else:
            self.settle(src, dst)

    def op_delete(self) -> None:
        path = self.some_path()
        if self.guard("delete", path, lambda: os.unlink(self.local(path))):
            del self.res.expected[path]
        else:
            self.settle(path)

    def op_list(self) -> None:
        d = self.rng.choice(self.dirs)
        names: list[list[str]] = []
        if self.guard("list", d, lambda: names.append(os.listdir(self.local(d)))):
            files = {f"{d}/{n}" for n in names[0] if n.startswith("f")}
            want = {p for p in self.res.expected if p.rsplit("/", 1)[0] == d}
            unknown = {p for p in self.res.unknown if p.rsplit("/", 1)[0] == d}
            if files - unknown != want - unknown:
                self.res.inconsistent.append(
                    f"ls {d}: missing {sorted(want - files)[:3]}, extra {sorted(files - want - unknown)[:3]}")


class _Corrupt(Exception):
    """Raised inside an operation that saw corrupt data (already recorded)."""


def run_workers(mnt: Path, sources: list[Source], cfg: SoakConfig) -> SoakResult:
    """Run ``cfg.workers`` workers on the mount for ``cfg.duration`` seconds (or until a hang)."""
    (mnt / ROOT).mkdir(exist_ok=True)
    stop = threading.Event()
    dog = Watchdog(cfg.op_timeout)
    workers = [Worker(i, mnt, sources, cfg, dog, stop) for i in range(cfg.workers)]
    threads = [threading.Thread(target=w.run, name=f"soak-{w.index}", daemon=True) for w in workers]
    t0 = time.monotonic()
    dog.start()
    for t in threads:
        t.start()
    dog.hung.wait(cfg.duration)
    stop.set()
    # the workers end their current operation; a hung one is left behind (the caller kills the mount)
    end = time.monotonic() + cfg.op_timeout + 5
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    seconds = time.monotonic() - t0
    dog.stop()
    return SoakResult([w.res for w in workers], seconds, list(dog.hangs))


# ---- after the run ---------------------------------------------------------------------------------

def pending_uploads(cache_dir: Path) -> int:
    """Rows of the mount's write journal: files not confirmed on the server yet."""
    return unconfirmed_files(cache_dir / "journal.db")


def wait_uploads(cache_dir: Path, timeout: float, alive: Callable[[], bool] = lambda: True) -> int:
    """Wait until the journal is empty (every closed file uploaded); the number left at the timeout.
    The mount is another process: its journal is polled (as `acdfuse umount` does)."""
    deadline = time.monotonic() + timeout
    gate = threading.Event()
    while (left := pending_uploads(cache_dir)) and time.monotonic() < deadline and alive():
        gate.wait(0.25)
    return left


def server_tree(client: Any, root_name: str = ROOT) -> dict[str, dict]:
    """Every available file under ``/root_name`` on the server, by drive path, through the API."""
    out: dict[str, dict] = {}
    top = [c for c in client.list_children(client.get_root_id())
           if c.get("name") == root_name and c.get("status") == "AVAILABLE"]
    todo = [(root_name, c["id"]) for c in top]
    while todo:
        path, node_id = todo.pop()
        for child in client.list_children(node_id):
            if child.get("status") != "AVAILABLE":
                continue
            sub = f"{path}/{child['name']}"
            if child.get("kind") == "FOLDER":
                todo.append((sub, child["id"]))
            else:
                out[sub] = child
    return out


@dataclass
class Verdict:
    checked: int = 0
    bytes: int = 0
    lost: list[str] = field(default_factory=list)          # missing, or other bytes than written
    extra: list[str] = field(default_factory=list)         # on the server but deleted or never written
    unknown: int = 0


def verify_on_server(client: Any, expected: dict[str, str], unknown: set[str]) -> Verdict:
    """Download every expected file through the API and compare; list what else is there."""
    v = Verdict(unknown=len(unknown))
    tree = server_tree(client)
    for path, md5 in sorted(expected.items()):
        node = tree.get(path)
        if node is None:
            v.lost.append(f"{path}: missing on the server")
            continue
        size = int(node["contentProperties"]["size"])
        data = bytes(client.download_chunk(node["id"], 0, size)) if size else b""
        v.checked += 1
        v.bytes += len(data)
        if md5_of(data) != md5 or node["contentProperties"].get("md5") != md5:
            v.lost.append(f"{path}: {size} bytes on the server, md5 {md5_of(data)} != {md5}")
    v.extra = sorted(p for p in tree if p not in expected and p not in unknown)
    return v


def log_lines(log_file: Path) -> tuple[Counter[str], list[str]]:
    """Counts of the mount log's levels, and its ERROR/CRITICAL lines and tracebacks."""
    levels: Counter[str] = Counter()
    bad: list[str] = []
    if not log_file.exists():
        return levels, bad
    for line in log_file.read_text(errors="replace").splitlines():
        for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            if f" {level} " in line:
                levels[level] += 1
                break
        if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
            bad.append(line)
    return levels, bad


def report(cfg: SoakConfig, result: SoakResult, *, faults: dict[str, int], verdict: Verdict | None,
           left: int, log_levels: Counter[str], log_bad: list[str]) -> str:
    ops, failed = result.total("ops"), result.total("failed_ops")
    errors = result.total("errors")
    lines = [
        f"workers      {cfg.workers}",
        f"duration     {result.seconds:.1f} s of work (asked {cfg.duration:.0f} s)",
        f"files        {len(result.expected)} expected on the server at the end, "
        f"{ops['copy'] + ops['fsync_copy']} copies in ({sum(w.fsynced for w in result.workers)} fsynced)",
        f"bytes        {sum(w.bytes_in for w in result.workers) / MiB:.1f} MiB copied in, "
        f"{sum(w.bytes_read for w in result.workers) / MiB:.1f} MiB read back and checked",
        "operations   " + ", ".join(f"{k} {v} ({failed[k]} failed)" for k, v in sorted(ops.items())),
        f"faults       {faults.get('injected_errors', 0)} injected 429/500/503, "
        f"{faults.get('cut_bodies', 0)} bodies cut, of {faults.get('requests', 0)} requests",
        "errors seen  " + (", ".join(f"{k} {v}" for k, v in errors.most_common()) or "none"),
        f"corrupt      {len(result.all('corrupt'))} reads returned wrong bytes",
        f"inconsistent {len(result.all('inconsistent'))} listings disagreed",
        f"hangs        {len(result.hangs)}",
        f"not uploaded {left} file(s) left in the journal at the end",
        "mount log    " + ", ".join(f"{k} {v}" for k, v in sorted(log_levels.items())),
    ]
    if verdict is not None:
        lines += [
            f"verified     {verdict.checked} files, {verdict.bytes / MiB:.1f} MiB downloaded through the API"
            f" ({verdict.unknown} path(s) of unknown outcome left out)",
            f"extra        {len(verdict.extra)} file(s) on the server that were deleted or never written",
            f"lost         {len(verdict.lost) + len(result.all('vanished'))}",
        ]
    lost, extra = (verdict.lost, verdict.extra) if verdict else ([], [])
    lost = lost + result.all("vanished")
    for title, items in (("corrupt", result.all("corrupt")), ("inconsistent", result.all("inconsistent")),
                         ("hang", result.hangs), ("bug", result.all("bugs")), ("lost", lost),
                         ("extra", extra), ("log", log_bad), ("error sample", result.all("error_samples"))):
        lines += [f"  {title}: {x}" for x in items[:10]]
    # what each worker did with the first paths that went wrong
    named = re.findall(rf"{ROOT}/w\d+/[^ ,:'\]]+\.bin", "\n".join(
        result.all("corrupt") + result.all("inconsistent") + lost + extra))
    for path in list(dict.fromkeys(named))[:5]:
        worker = result.workers[int(path.split("/")[1][1:])]
        lines.append(f"  history of {path}:")
        lines += [f"    {h}" for h in worker.story(path)[-12:]]
    return "\n".join(lines)


def failed(result: SoakResult, verdict: Verdict | None, left: int, log_bad: list[str]) -> list[str]:
    """Why the run failed ([] when it passed)."""
    why = []
    for name in ("corrupt", "inconsistent", "bugs"):
        if result.all(name):
            why.append(name)
    if result.hangs:
        why.append("hangs")
    if left:
        why.append("not uploaded")
    if verdict is None or verdict.lost or result.all("vanished"):
        why.append("lost")
    if verdict is not None and verdict.extra:
        why.append("extra files")
    if log_bad:
        why.append("errors in the mount log")
    return why


# ---- the script ------------------------------------------------------------------------------------

class MountProcess:
    """``acdfuse mount --foreground`` as our child process."""

    def __init__(self, mnt: Path, cdir: Path, cache: Path, *extra: str) -> None:
        self.mnt, self.cache = mnt, cache
        mnt.mkdir(parents=True, exist_ok=True)
        self.err = open(cache.parent / f"{cache.name}-stderr.txt", "ab")  # closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments, no shell
            [sys.executable, "-m", "acdfuse", "mount", str(mnt), "--foreground", "--config-dir", str(cdir),
             "--cache-dir", str(cache), "--interval", "3600", *extra],
            stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err)
        ready = threading.Event()
        deadline = time.monotonic() + 120
        while not os.path.ismount(mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the mount did not come up; see {self.err.name}")
            ready.wait(0.05)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)      # our own child, by pid
        self.proc.wait(timeout=30)
        _fusermount(self.mnt, lazy=True)

    def stop(self) -> int:
        if os.path.ismount(self.mnt) and _fusermount(self.mnt).returncode != 0:
            _fusermount(self.mnt, lazy=True)
        try:
            code = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        self.err.close()
        return code


def _fusermount(mnt: Path, lazy: bool = False) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"
    return subprocess.run(  # noqa: S603 - fusermount on our own mount point, no shell
        [exe, "-u", *(["-z"] if lazy else []), str(mnt)], capture_output=True, text=True, check=False)


def parse_size(text: str) -> int:
    units = {"K": KiB, "M": MiB, "G": 1024 * MiB}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1:].upper() in units else int(text)


def main(argv: list[str] | None = None) -> int:
    d = SoakConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=300.0, help="seconds of work (default: 300)")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--small", type=int, default=d.small_files, help="small source files")
    p.add_argument("--small-max", type=parse_size, default=d.small_max)
    p.add_argument("--large", type=int, default=d.large_files, help="large source files")
    p.add_argument("--large-size", type=parse_size, default=d.large_size)
    p.add_argument("--error-rate", type=float, default=d.error_rate, help="share of 429/500/503 answers")
    p.add_argument("--cut-rate", type=float, default=d.cut_rate, help="share of answer bodies cut")
    p.add_argument("--op-timeout", type=float, default=d.op_timeout, help="an operation longer is a hang")
    p.add_argument("--upload-wait", type=float, default=600.0, help="seconds to wait for the last uploads")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--debug", action="store_true", help="the mount logs at DEBUG")
    p.add_argument("--workdir", type=Path, default=None,
                   help="the run's files (server data, cache, mount log) go here and are kept; by default "
                        "a temporary dir, removed at the end (a 5-minute run writes several GiB)")
    args = p.parse_args(argv)
    cfg = SoakConfig(duration=args.duration, workers=args.workers, small_files=args.small,
                     small_max=args.small_max, large_files=args.large, large_size=args.large_size,
                     error_rate=args.error_rate, cut_rate=args.cut_rate, op_timeout=args.op_timeout,
                     seed=args.seed)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="acdfuse-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, cfg, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, cfg: SoakConfig, work: Path) -> int:
    sources = make_sources(work / "sources", cfg)
    server = DriveServer(ServerConfig(data_dir=work / "server-data", host="127.0.0.1", port=0,
                                      token_lifetime=86400))
    server.start()
    cdir = work / "cdir"
    server.write_credentials(cdir)
    # a bounded read cache: the run's disk use is the server's data and the spools, not the cache too
    mount = MountProcess(work / "mnt", cdir, work / "cache", "--upload-delay", "1", "--cache-size", "256M",
                         *(["--debug"] if args.debug else []))
    verdict = None
    try:
        server.stats.reset()
        server.faults.configure(error_rate=cfg.error_rate, cut_rate=cfg.cut_rate, seed=cfg.seed)
        result = run_workers(mount.mnt, sources, cfg)
        if result.hangs:
            mount.kill()
        left = wait_uploads(mount.cache, args.upload_wait, mount.alive) if mount.alive() else -1
        faults = server.stats.snapshot()
        code = mount.stop()
        server.faults.reset()
        if code != 0:
            result.hangs.append(f"the mount process exited with {code}")
        verdict = verify_on_server(ACDClient(str(cdir)), result.expected, result.unknown)
    finally:
        if mount.alive():
            mount.stop()
        server.close()
    levels, bad = log_lines(mount.cache / "acdfuse.log")
    print(report(cfg, result, faults=faults, verdict=verdict, left=left, log_levels=levels, log_bad=bad))
    why = failed(result, verdict, left, bad)
    kept = f"; files in {work}" if args.workdir is not None else ""
    print(f"result       {'FAILED: ' + ', '.join(why) if why else 'passed'}{kept}")
    return 1 if why else 0


if __name__ == "__main__":
    sys.exit(main())
