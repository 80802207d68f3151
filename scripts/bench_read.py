#!/usr/bin/env python3
"""Read-side benchmark of the acdfuse mount (issue 5 "Speed"): ratios measured side by side in one run.

Sections (``--only`` picks some):
  cold    1 GiB sequential read through a fresh mount vs two yardsticks and curl: a minimal FS
          serving the bytes from memory (MEMFS, the FUSE ceiling of the goal), and a minimal network
          FS (NETFS) that fetches the same node from the server as 4 MiB range requests on 4
          threads and serves them with no cache: the ceiling of any Python FUSE mount fed over HTTP on this
          machine. Also the CPU seconds per GiB of each FUSE process (user+system, /proc/PID/stat), since
          on 2 cores CPU per GiB is what limits the rate.
  capped  the server's per-connection bandwidth cap on: mount read vs one capped curl stream
  warm    re-read of a read file (same mount, and after a remount) vs the same file on local disk
  meta    `find -ls` over a 100k-node tree and `ls -l` of a 10k folder: mount vs local disk vs rclone mount
  rss     peak RSS of the mount process while 8 large files are read at once, vs its budgets
  acdcli  acd_cli 0.3.2's mount against the same server: read throughput and find time

Every number is the median of ``--runs`` runs. The server runs in this process (its bulk tree generator
and fault switches are used); mounts, the minimal FS, rclone and acd_cli run as child processes.
Usage: python3 scripts/bench_read.py [--runs 3] [--size-mib 1024] [--only cold,warm] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from acdfuse.api.client import ACDClient
from acdfuse.server import DriveServer, ServerConfig

MiB = 1 << 20
GiB = 1 << 30
ACD_CLI = "/opt/acdcli/bin/acd_cli.py"
SECTIONS = ("cold", "capped", "warm", "meta", "rss", "acdcli")

# A minimal filesystem on the mount's binding (mfusepy, libfuse 3) serving one file from memory: the
# FUSE ceiling of this machine.
MEMFS = r'''
import errno, os, stat, sys
os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")   # the mount's libfuse; mfusepy takes libfuse 2 first
from mfusepy import FUSE, FuseOSError, Operations
size = int(sys.argv[2])
block = os.urandom(MiB := 1 << 20)
data = block * (size // MiB) + block[: size % MiB]
class MemFS(Operations):
    use_ns = True
    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if path == "/big.bin":
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": size}
        raise FuseOSError(errno.ENOENT)
    def readdir(self, path, fh):
        return [".", "..", "big.bin"]
    def read(self, path, length, offset, fh):
        return data[offset:offset + length]
FUSE(MemFS(), sys.argv[1], foreground=True, ro=True)
'''

# A minimal filesystem on the mount's binding (mfusepy, libfuse 3) serving one drive node fetched over
# HTTP: the ceiling of any Python FUSE mount that gets its bytes from the server. Workers fetch
# fixed-size range requests (http.client, one keep-alive connection each, readinto a preallocated
# buffer) up to AHEAD chunks in front of the reader;
# chunks more than one behind it (or past its window) are dropped unless a read waits for them, so
# memory stays at about (AHEAD + 2 + THREADS) chunks plus one per concurrent read. Workers only fetch
# what a read asked for, so a reader that stops early leaves them idle.
# argv: mnt base_url node_id token size [threads] [chunk_mib] [ahead_chunks]
NETFS = r'''
import errno, http.client, os, stat, sys, threading, urllib.parse
from collections import deque
os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")   # the mount's libfuse; mfusepy takes libfuse 2 first
from mfusepy import FUSE, FuseOSError, Operations
mnt, base, node, token, size = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
THREADS = int(sys.argv[6]) if len(sys.argv) > 6 else 4
CHUNK = (int(sys.argv[7]) if len(sys.argv) > 7 else 4) << 20
AHEAD = int(sys.argv[8]) if len(sys.argv) > 8 else 16
url = urllib.parse.urlsplit(base)
path = url.path.rstrip("/") + "/cdproxy/nodes/" + node + "/content"
last_chunk = (size - 1) // CHUNK
lock = threading.Lock()
queued = threading.Condition(lock)    # workers wait here for jobs
arrived = threading.Condition(lock)   # readers wait here for chunks
wanted = set()     # chunks the reader may still need (queued, in flight or done)
done = {}          # chunk -> bytearray, or the OSError that fetching it raised
busy = set()       # chunks being fetched
jobs = deque()     # may hold stale entries (dropped, or queued twice); workers skip those

def fetch(conn, i):
    off = i * CHUNK
    n = min(CHUNK, size - off)
    conn.request("GET", path, headers={"Authorization": "Bearer " + token,
                                       "Range": "bytes=%d-%d" % (off, off + n - 1)})
    r = conn.getresponse()
    if r.status != 206:
        r.read()
        raise OSError(errno.EIO, "HTTP %d for chunk %d" % (r.status, i))
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = r.readinto(view[got:])
        if not k:
            raise OSError(errno.EIO, "chunk %d ended after %d of %d bytes" % (i, got, n))
        got += k
    if r.read(1):
        raise OSError(errno.EIO, "chunk %d is longer than %d bytes" % (i, n))
    return buf

def worker():
    conn = None
    while True:
        with lock:
            while True:
                while not jobs:
                    queued.wait()
                i = jobs.popleft()
                if i in wanted and i not in done and i not in busy:
                    busy.add(i)
                    break
        result = None
        for _ in (1, 2):           # a second try on a fresh connection: keep-alive ones may be closed
            try:
                conn = conn or http.client.HTTPConnection(url.hostname, url.port, timeout=60)
                result = fetch(conn, i)
                break
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                result = exc if isinstance(exc, OSError) else OSError(errno.EIO, repr(exc))
                sys.stderr.write("netfs: chunk %d: %r\n" % (i, exc))   # the log says why a read got EIO
        with lock:
            busy.discard(i)
            if i in wanted:
                done[i] = result
            arrived.notify_all()

def want(i):
    if i <= last_chunk and i not in wanted:
        wanted.add(i)
        jobs.append(i)
        queued.notify()

reader_at = [-1]   # the chunk of the latest read: the window moves only when it changes
waiters = {}       # chunk -> reads waiting for it: never dropped, or they would wait for nothing

def chunk(i):
    """Chunk i (called with lock held); schedules the window after it and drops what is behind."""
    if i != reader_at[0]:
        # once per chunk, not per read: the kernel reads 128 KiB at a time, and this is per-GiB CPU
        reader_at[0] = i
        for j in [j for j in wanted if (j < i - 1 or j > i + AHEAD) and j not in waiters]:
            wanted.discard(j)
            done.pop(j, None)
        for j in range(i, i + AHEAD + 1):
            want(j)
    waiters[i] = waiters.get(i, 0) + 1
    try:
        while i not in done:
            want(i)        # after a failed fetch the next reader asks again
            arrived.wait()
    finally:
        waiters[i] -= 1
        if not waiters[i]:
            del waiters[i]
    got = done[i]
    if isinstance(got, OSError):
        wanted.discard(i)  # the next read of it tries again
        del done[i]
        raise FuseOSError(got.errno or errno.EIO)
    return got

class NetFS(Operations):
    use_ns = True
    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if path == "/big.bin":
            return {"st_mode": stat.S_IFREG | 0o444, "st_nlink": 1, "st_size": size}
        raise FuseOSError(errno.ENOENT)
    def readdir(self, path, fh):
        return [".", "..", "big.bin"]
    def read(self, path, length, offset, fh):
        end = min(offset + length, size)
        pieces = []
        with lock:
            while offset < end:
                i = offset // CHUNK
                buf = chunk(i)
                start = offset - i * CHUNK
                n = min(end - offset, len(buf) - start)
                pieces.append((buf, start, n))
                offset += n
        # copy outside the lock: a chunk is never changed once done, and we hold a reference to it
        if len(pieces) == 1:
            buf, start, n = pieces[0]
            return bytes(memoryview(buf)[start:start + n])
        return b"".join(memoryview(buf)[start:start + n] for buf, start, n in pieces)

for _ in range(THREADS):
    threading.Thread(target=worker, daemon=True).start()
FUSE(NetFS(), mnt, foreground=True, ro=True)
'''
NETFS_THREADS, NETFS_CHUNK_MIB, NETFS_AHEAD_CHUNKS = 4, 4, 16   # the mount's defaults: 4 streams, 64 MiB


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def say(msg: str) -> None:
    print(msg, flush=True)


def fusermount_u(mnt: Path) -> None:
    """Unmount; a mount that stays busy (someone else's process inside it) is detached lazily."""
    exe = shutil.which("fusermount") or shutil.which("fusermount3") or "fusermount"
    for _ in range(10):
        if subprocess.run([exe, "-u", str(mnt)], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.3)
    subprocess.run([exe, "-u", "-z", str(mnt)], capture_output=True, check=False)


def wait_mounted(mnt: Path, proc: subprocess.Popen[bytes], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.ismount(mnt):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before mounting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not mount within {timeout}s")
        time.sleep(0.05)
    os.stat(mnt)


@contextlib.contextmanager
def mounted(argv: list[str], mnt: Path, what: str, env: dict[str, str] | None = None,
            log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run a FUSE process in the foreground on mnt; unmount and reap it afterwards (our pid only)."""
    mnt.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL  # closed below
    proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_mounted(mnt, proc, what)
        yield proc
    finally:
        fusermount_u(mnt)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear within {timeout}s")
        time.sleep(0.1)


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def dd(path: Path, count_mib: int | None = None) -> None:
    args = ["dd", f"if={path}", "of=/dev/null", "bs=1M"]
    if count_mib:
        args.append(f"count={count_mib}")
    subprocess.run(args, check=True, capture_output=True)


def rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / MiB


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work or tempfile.mkdtemp(prefix="acdfuse-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        config = ServerConfig(data_dir=self.work / "server", port=0, token_lifetime=86400 * 30)
        self.server = DriveServer(config)
        self.results: list[tuple[str, str]] = []
        self.mount_count = 0

    # ----- set-up ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        self.cdir = self.work / "cdir"
        self.server.write_credentials(self.cdir, token_lifetime=86400 * 30)
        self.client = ACDClient(str(self.cdir))
        self.token = self.server.access_token(token_lifetime=86400 * 30)
        self.local = self.work / "local"
        self.local.mkdir(exist_ok=True)
        self.nodes: dict[str, str] = {}

    def close(self) -> None:
        self.server.close()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def file(self, name: str, size: int) -> tuple[str, Path]:
        """A random file of size bytes on the drive (top level) and the same bytes on local disk."""
        if name in self.nodes:
            return self.nodes[name], self.local / name
        path = self.local / name
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 8 * MiB)
                f.write(os.urandom(n))
                left -= n
        with open(path, "rb") as f:
            node = self.client.upload_stream(f, name)
        self.nodes[name] = node["id"]
        return node["id"], path

    def record(self, key: str, value: str) -> None:
        self.results.append((key, value))
        say(f"  {key}: {value}")

    # ----- processes ------------------------------------------------------------------------------

    def mount_argv(self, mnt: Path, cache: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "acdfuse", "mount", str(mnt), "--foreground", "--config-dir",
                str(self.cdir), "--cache-dir", str(cache), "--interval", "3600",
                *self.args.mount_args.split(), *extra]

    def our_mount(self, cache: Path | None = None, *extra: str) -> Any:
        self.mount_count += 1
        mnt = self.work / f"mnt{self.mount_count}"
        cache = cache or self.work / f"cache{self.mount_count}"
        return mnt, mounted(self.mount_argv(mnt, cache, *extra), mnt, "acdfuse mount",
                            log=self.work / "mount-stderr.log")

    def memfs(self, size: int) -> Any:
        mnt = self.work / "memfs"
        return mnt, mounted([sys.executable, "-c", MEMFS, str(mnt), str(size)], mnt, "memfs")

    def netfs(self, node_id: str, size: int) -> Any:
        mnt = self.work / "netfs"
        argv = [sys.executable, "-c", NETFS, str(mnt), self.server.base_url, node_id, self.token, str(size),
                str(NETFS_THREADS), str(NETFS_CHUNK_MIB), str(NETFS_AHEAD_CHUNKS)]
        return mnt, mounted(argv, mnt, "netfs", log=self.work / "netfs-stderr.log")

    def curl(self, node_id: str, range_end: int | None = None) -> float:
        """Seconds curl needs to download the node (or its first range_end bytes)."""
        url = f"{self.server.base_url}/cdproxy/nodes/{node_id}/content"
        args = ["curl", "-sS", "-o", "/dev/null", "-H", f"Authorization: Bearer {self.token}", url]
        if range_end is not None:
            args[1:1] = ["-r", f"0-{range_end - 1}"]
        return timed(lambda: subprocess.run(args, check=True))

    # ----- sections -------------------------------------------------------------------------------

    def cold(self) -> None:
        size = self.args.size_mib * MiB
        node_id, _ = self.file("big.bin", size)
        rates: dict[str, list[float]] = {k: [] for k in ("ours", "mem", "net", "curl")}
        cpu: dict[str, list[float]] = {k: [] for k in ("ours", "mem", "net")}
        for _ in range(self.args.runs):
            for key, (mnt, ctx) in (("ours", self.our_mount()), ("mem", self.memfs(size)),
                                    ("net", self.netfs(node_id, size))):
                with ctx as proc:
                    mib_s, cpu_gib = dd_with_cpu(mnt / "big.bin", size, proc.pid)
                rates[key].append(mib_s)
                cpu[key].append(cpu_gib)
            rates["curl"].append(rate(size, self.curl(node_id)))
        o, m, n, c = (median(rates[k]) for k in ("ours", "mem", "net", "curl"))
        self.record("cold read MiB/s (mount / minimal FS / network FS / curl)",
                    f"{o:.0f} / {m:.0f} / {n:.0f} / {c:.0f}")
        self.record("cold read ratio mount:minimalFS (goal >= 0.8)", f"{o / m:.2f}")
        self.record("cold read ratio mount:networkFS (how close to the HTTP+FUSE ceiling)", f"{o / n:.2f}")
        self.record("cold read ratio networkFS:minimalFS (what fetching over HTTP costs)", f"{n / m:.2f}")
        self.record("cold read ratio mount:curl", f"{o / c:.2f}   (minimalFS:curl {m / c:.2f})")
        self.record("cold read CPU s per GiB, user+system (mount / network FS / minimal FS)",
                    " / ".join(f"{median(cpu[k]):.2f}" for k in ("ours", "net", "mem")))

    def capped(self) -> None:
        size = self.args.capped_mib * MiB
        node_id, _ = self.file("capped.bin", size)
        cap = self.args.bandwidth_mib * MiB
        self.server.faults.configure(bandwidth=cap)
        try:
            single, ours = [], []
            probe = min(size, 4 * cap)       # about 4 s of one capped stream
            for _ in range(self.args.runs):
                single.append(rate(probe, self.curl(node_id, probe)))
                mnt, ctx = self.our_mount()
                with ctx:
                    ours.append(rate(size, timed(lambda mnt=mnt: dd(mnt / "capped.bin"))))
        finally:
            self.server.faults.configure(bandwidth=0)
        s, o = median(single), median(ours)
        self.record(f"capped ({self.args.bandwidth_mib} MiB/s per connection) MiB/s (one stream / mount)",
                    f"{s:.1f} / {o:.1f}")
        self.record("capped ratio mount:single stream (goal >= 3)", f"{o / s:.2f}")

    def warm(self) -> None:
        size = self.args.size_mib * MiB
        _, local = self.file("big.bin", size)
        dd(local)                       # local copy in the page cache: the local-disk reference
        local_rates = [rate(size, timed(lambda: dd(local))) for _ in range(self.args.runs)]
        # the disk itself, past the page cache: what a remount (empty page cache) competes with
        direct = [rate(size, timed(lambda: subprocess.run(
            ["dd", f"if={local}", "of=/dev/null", "bs=1M", "iflag=direct"], check=True, capture_output=True)))
            for _ in range(self.args.runs)]
        cache = self.work / "warm-cache"
        kernel, disk = [], []
        mnt, ctx = self.our_mount(cache)
        with ctx:
            dd(mnt / "big.bin")         # cold read fills the chunk cache and the page cache
            kernel = [rate(size, timed(lambda: dd(mnt / "big.bin"))) for _ in range(self.args.runs)]
        for _ in range(self.args.runs):
            mnt, ctx = self.our_mount(cache)      # new mount: empty page cache, warm disk cache
            with ctx:
                disk.append(rate(size, timed(lambda mnt=mnt: dd(mnt / "big.bin"))))
        loc, dio, k, d = median(local_rates), median(direct), median(kernel), median(disk)
        self.record("warm re-read MiB/s (local page cache / local O_DIRECT / same mount / after remount)",
                    f"{loc:.0f} / {dio:.0f} / {k:.0f} / {d:.0f}")
        self.record("warm re-read ratio mount:local (goal >= 0.5)",
                    f"same mount vs page cache {k / loc:.2f}; remount vs page cache {d / loc:.2f}, "
                    f"vs O_DIRECT disk {d / dio:.2f}")

    def make_trees(self) -> tuple[Path, Path]:
        """The big tree and the wide folder on the drive, and the same trees on local disk."""
        tree = self.client.create_folder("tree")
        wide = self.client.create_folder("wide")
        t = self.server.generate_tree(n_nodes=self.args.tree_nodes, fanout=10, folders_per_folder=3,
                                      parent=tree["id"])
        w = self.server.generate_tree(n_nodes=self.args.wide_entries, fanout=self.args.wide_entries,
                                      folders_per_folder=1, parent=wide["id"])
        say(f"  generated {t.nodes} + {w.nodes} nodes in {t.seconds + w.seconds:.1f}s")
        local = self.work / "localtree"
        if not local.exists():
            # copy the structure through a warm mount (names and sizes, sparse files)
            mnt, ctx = self.our_mount(self.work / "meta-cache")
            with ctx:
                for top in ("tree", "wide"):
                    for dirpath, _dirnames, filenames in os.walk(mnt / top):
                        rel = Path(dirpath).relative_to(mnt)
                        (local / rel).mkdir(parents=True, exist_ok=True)
                        for name in filenames:
                            with open(local / rel / name, "wb") as f:
                                f.truncate(os.stat(Path(dirpath) / name).st_size)
        return local, self.work / "meta-cache"

    def meta(self) -> None:
        local, cache = self.make_trees()
        wide_rel = Path("wide")   # all generated entries sit directly in it (fanout = entries)
        find = lambda root: subprocess.run(["find", str(root / "tree"), "-ls"],  # noqa: E731
                                           stdout=subprocess.DEVNULL, check=True)
        lsl = lambda root: subprocess.run(["ls", "-l", str(root / wide_rel)],  # noqa: E731
                                          stdout=subprocess.DEVNULL, check=True)
        res: dict[str, dict[str, list[float]]] = {
            k: {"find": [], "ls": []} for k in ("ours", "local", "rclone")}
        probe = {"find": find, "ls": lsl}
        find(local)
        lsl(local)
        for _ in range(self.args.runs):
            res["local"]["find"].append(timed(lambda: find(local)))
            res["local"]["ls"].append(timed(lambda: lsl(local)))
            for kind in ("find", "ls"):
                # a fresh mount per measurement: warm mirror, cold kernel caches
                mnt, ctx = self.our_mount(cache)
                with ctx:
                    res["ours"][kind].append(timed(lambda mnt=mnt, kind=kind: probe[kind](mnt)))
                rmnt = self.work / "rclone"
                rctx = mounted(["rclone", "mount", str(local), str(rmnt), "--read-only"], rmnt,
                               "rclone mount")
                with rctx:
                    res["rclone"][kind].append(timed(lambda rmnt=rmnt, kind=kind: probe[kind](rmnt)))
        for kind, label in (("find", f"find -ls over {self.args.tree_nodes} nodes"),
                            ("ls", f"ls -l of a {self.args.wide_entries}-entry folder")):
            o, lo, r = (median(res[k][kind]) for k in ("ours", "local", "rclone"))
            self.record(f"{label} s (mount / local / rclone mount)", f"{o:.2f} / {lo:.2f} / {r:.2f}")
            self.record(f"{label} ratio mount:rclone (goal ~1, lower is faster)",
                        f"{o / r:.2f}  (mount:local {o / lo:.1f})")

    def rss(self) -> None:
        n, each = self.args.rss_files, self.args.rss_file_mib * MiB
        names = [f"rss{i}.bin" for i in range(n)]
        for name in names:
            self.file(name, each)
        peaks = []
        for _ in range(self.args.runs):
            mnt, ctx = self.our_mount()
            with ctx as proc:
                procs = [subprocess.Popen(["dd", f"if={mnt / name}", "of=/dev/null", "bs=1M"],
                                          stderr=subprocess.DEVNULL) for name in names]
                for p in procs:
                    p.wait()
                peaks.append(vm_hwm(proc.pid) / MiB)
        budget = (256 + 128)   # default --memory-cache + the reader's read-ahead budget
        self.record(f"peak RSS MiB reading {n} x {self.args.rss_file_mib} MiB at once",
                    f"{median(peaks):.0f} (budgets {budget} MiB + 100 MiB allowance = {budget + 100})")

    def acdcli(self) -> None:
        if not os.path.exists(ACD_CLI):
            self.record("acd_cli", f"skipped: {ACD_CLI} missing")
            return
        size = self.args.size_mib * MiB
        self.file("big.bin", size)
        acd_cache = self.work / "acdcli-cache"
        self.server.write_credentials(acd_cache, token_lifetime=86400 * 30)
        env = dict(os.environ, ACD_CLI_CACHE_PATH=str(acd_cache), ACD_CLI_SETTINGS_PATH=str(acd_cache))
        sync_s = timed(lambda: subprocess.run([ACD_CLI, "sync"], env=env, check=True, capture_output=True))
        has_tree = (self.work / "localtree").exists()
        acd_read, acd_find, our_read, our_find = [], [], [], []
        for _ in range(self.args.runs):
            mnt = self.work / "acdmnt"
            with mounted([ACD_CLI, "mount", "--foreground", "--read-only", str(mnt)], mnt, "acd_cli mount",
                         env=env, log=self.work / "acdcli.log"):
                acd_read.append(rate(size, timed(lambda mnt=mnt: dd(mnt / "big.bin"))))
                if has_tree:
                    acd_find.append(timed(lambda mnt=mnt: subprocess.run(["find", str(mnt / "tree"), "-ls"],
                                                                 stdout=subprocess.DEVNULL, check=True)))
            m, ctx = self.our_mount()       # a fresh chunk cache: a cold read, like acd_cli's
            with ctx:
                our_read.append(rate(size, timed(lambda m=m: dd(m / "big.bin"))))
            if has_tree:
                m, ctx = self.our_mount(self.work / "meta-cache")   # the synced mirror of the tree
                with ctx:
                    wait_for(m / "big.bin")     # a warm mirror mounts first and catches up behind
                    our_find.append(timed(lambda m=m: subprocess.run(["find", str(m / "tree"), "-ls"],
                                                                     stdout=subprocess.DEVNULL, check=True)))
        self.record("acd_cli sync s", f"{sync_s:.1f}")
        self.record("cold read MiB/s (acdfuse / acd_cli)", f"{median(our_read):.0f} / {median(acd_read):.0f}")
        if has_tree:
            self.record("find -ls s (acdfuse / acd_cli)", f"{median(our_find):.2f} / {median(acd_find):.2f}")


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process so far (all its threads), from /proc/PID/stat."""
    # the command name (field 2) may hold spaces and parentheses: count fields after its closing ")"
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")    # fields 14 and 15


def dd_with_cpu(path: Path, size: int, pid: int) -> tuple[float, float]:
    """Read path with dd: MiB/s, and CPU seconds per GiB the process pid spent serving it."""
    before = cpu_seconds(pid)
    seconds = timed(lambda: dd(path))
    return rate(size, seconds), (cpu_seconds(pid) - before) / (size / GiB)


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--capped-mib", type=int, default=256)
    p.add_argument("--bandwidth-mib", type=int, default=16, help="per-connection cap of the capped run")
    p.add_argument("--tree-nodes", type=int, default=100_000)
    p.add_argument("--wide-entries", type=int, default=10_000)
    p.add_argument("--rss-files", type=int, default=8)
    p.add_argument("--rss-file-mib", type=int, default=256)
    p.add_argument("--only", default=",".join(SECTIONS), help="comma separated: " + ",".join(SECTIONS))
    p.add_argument("--work", help="work dir (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--mount-args", default="",
                   help="extra arguments for every acdfuse mount (space separated)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    args = p.parse_args()
    bench = Bench(args)
    bench.start()
    # a Ctrl-C must still unmount: turn SIGTERM into KeyboardInterrupt as well
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for section in args.only.split(","):
            say(f"[{section}]")
            getattr(bench, section.strip())()
    finally:
        bench.close()
    say("\nsummary")
    for key, value in bench.results:
        say(f"  {key:<75} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(bench.results), indent=2))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    raise SystemExit(main())
