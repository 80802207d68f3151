#!/usr/bin/env python3
"""Metadata benchmark of the acdfuse mount (issue 13): mount vs local disk vs `rclone mount`, one run.

Sections (``--only`` picks some; each FUSE measurement starts from a fresh mount, so "first" means a warm
node mirror with cold kernel caches, and "repeated" a second run on the same mount within a minute):
  find   `find DIR -ls` over the --nodes tree (nested folders of ten entries, from the server's bulk
         generator): first and repeated
  ls     `ls -l` of a folder of --wide entries: first and repeated
  git    `git status` in a checkout of --git-files real files (copied from /usr/lib/python3* and
         /usr/share, committed, and uploaded with its .git through the API): first and repeated
  stat   lstat of every path of the tree from 8 threads at once: first and repeated
  read   cold sequential read of --read-mib through each variant, and bench_read.py's minimal FS
         (served from memory) on the mount's binding
  write  a minimal write-only FS on the mount's binding: `dd bs=1M conv=fsync` of --write-mib; the
         write calls it got, the time, its CPU
  acdcli acd_cli 0.3.2's mount: `find -ls` of the tree (slow: minutes; not in the default set)

Our mount runs as one or more variants, measured alternately in the same run:
  --variant NAME[:MOUNT ARGS]   MOUNT ARGS are extra `acdfuse mount` arguments, e.g. "-o attr_timeout=1".
The binding A/B of issue 13 (fusepy on libfuse 2 vs mfusepy on libfuse 3, BENCHMARKS.md) ran with this
script at commit ce2731e, whose --variant also took a binding and whose scripts/binding_shim ran the
unchanged mount on either.
The yardsticks: the same trees on local disk (page cache warm), and `rclone mount` of that local copy
with rclone's defaults (--vfs-cache-mode off, --attr-timeout 1s, --dir-cache-time 5m), read-only.
Every figure is the median of --runs; peak RSS (VmHWM) of every FUSE process is reported.
Usage: python3 scripts/bench_meta.py [--runs 3] [--nodes 100000] [--only find,ls] [--variant ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_read import MEMFS, cpu_seconds, median, mounted, say, timed, vm_hwm

from acdfuse.api.client import ACDClient
from acdfuse.server import DriveServer, ServerConfig
from acdfuse.store import NodeStore
from acdfuse.store.node import iso_to_epoch

MiB = 1 << 20
GiB = 1 << 30
HERE = Path(__file__).resolve().parent
ACD_CLI = HERE.parent / ".venv-acdcli" / "bin" / "acd_cli.py"
SECTIONS = ("find", "ls", "git", "stat", "read", "write", "acdcli")
DEFAULT_SECTIONS = ("find", "ls", "git", "stat")
GIT_SOURCES = ("/usr/lib/python3", "/usr/share")   # where the checkout's real files come from
STAT_THREADS = 8
RCLONE_ARGS = ["--read-only", "--vfs-cache-mode", "off"]

# lstat every path named in a file (relative to a root) from N threads: os.lstat lets go of the GIL
# around the system call, so the threads overlap in the kernel as a C tool's would
PSTAT = r'''
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
root, listing, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
paths = [os.path.join(root, p) for p in open(listing).read().split("\n") if p]
share = [paths[i::threads] for i in range(threads)]
def run(part):
    for p in part:
        os.lstat(p)
t0 = time.perf_counter()
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(run, share))
print(time.perf_counter() - t0)
'''

# A minimal write-only FS on the mount's binding: takes every write, keeps nothing, counts calls; the
# counts go to a file at unmount (an absolute path: libfuse 3 changes to / even in the foreground).
# argv: mnt stats_file
WRITEFS = r'''
import errno, os, stat, sys, threading
mnt, stats_file = sys.argv[1], sys.argv[2]
os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")   # the mount's libfuse; mfusepy takes libfuse 2 first
from mfusepy import FUSE, FuseOSError, Operations
lock = threading.Lock()
calls = [0, 0, 0]     # write calls, bytes, largest write
size = [0]
class WriteFS(Operations):
    use_ns = True
    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        if path == "/f":
            return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": size[0]}
        raise FuseOSError(errno.ENOENT)
    def readdir(self, path, fh):
        return [".", "..", "f"]
    def create(self, path, mode, fi=None):
        return 0
    def open(self, path, flags):
        return 0
    def truncate(self, path, length, fh=None):
        size[0] = length
        return 0
    def write(self, path, data, offset, fh):
        n = len(data)
        with lock:
            calls[0] += 1
            calls[1] += n
            calls[2] = max(calls[2], n)
            size[0] = max(size[0], offset + n)
        return n
    def fsync(self, path, datasync, fh):
        return 0
    def flush(self, path, fh):
        return 0
    def release(self, path, fh):
        return 0
    def destroy(self, path):
        with open(stats_file, "w") as f:
            f.write("%d %d %d" % tuple(calls))
FUSE(WriteFS(), mnt, foreground=True)
'''


@dataclass
class Variant:
    name: str
    args: list[str] = field(default_factory=list)


def parse_variant(text: str) -> Variant:
    name, _, args = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"want NAME[:MOUNT ARGS], got {text!r}")
    return Variant(name, args.split())


def run_quiet(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, **kw)


def quiet(argv: list[str]) -> None:
    run_quiet(argv)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work or tempfile.mkdtemp(prefix="acdfuse-meta-"))
        self.work.mkdir(parents=True, exist_ok=True)
        config = ServerConfig(data_dir=self.work / "server", port=0, token_lifetime=86400 * 30)
        self.server = DriveServer(config)
        self.variants: list[Variant] = args.variant or [Variant("mount")]
        self.results: dict[str, str] = {}
        # section -> target -> "first"/"repeated" -> seconds of each run
        self.times: dict[str, dict[str, dict[str, list[float]]]] = {}
        self.rss: dict[str, list[int]] = {}          # "FUSE process, section" -> VmHWM of each session
        self.mounts = 0
        self.tree_paths: list[str] = []     # every path of the tree, relative to the drive's root

    # ----- set-up ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()
        self.cdir = self.work / "cdir"
        self.server.write_credentials(self.cdir, token_lifetime=86400 * 30)
        self.client = ACDClient(str(self.cdir))
        self.local = self.work / "local"
        self.local.mkdir(exist_ok=True)

    def close(self) -> None:
        self.server.close()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def record(self, key: str, value: str) -> None:
        self.results[key] = value
        say(f"  {key}: {value}")

    def prepare(self, sections: list[str]) -> None:
        """The drive's trees, their local copies, and a warm mirror per variant."""
        t0 = time.perf_counter()
        if {"find", "stat", "acdcli"} & set(sections):
            tree = self.client.create_folder("tree")
            t = self.server.generate_tree(n_nodes=self.args.nodes, fanout=10, folders_per_folder=3,
                                          parent=tree["id"])
            say(f"  generated the tree: {t.nodes} nodes ({t.folders} folders) in {t.seconds:.1f}s")
        if "ls" in sections:
            wide = self.client.create_folder("wide")
            w = self.server.generate_tree(n_nodes=self.args.wide, fanout=self.args.wide, folders_per_folder=1,
                                          parent=wide["id"])
            say(f"  generated the wide folder: {w.nodes} entries in {w.seconds:.1f}s")
        if "git" in sections:
            self.make_repo()
        if "read" in sections:
            path = self.local / "big.bin"
            with open(path, "wb") as f:
                for _ in range(self.args.read_mib // 8):
                    f.write(os.urandom(8 * MiB))
            with open(path, "rb") as f:
                self.client.upload_stream(f, "big.bin")
        # the local copies, from a mirror synced here (names and sizes; the generated files are empty)
        store = NodeStore(self.work / "bench-mirror.db")
        store.open()
        try:
            store.sync(self.client.get_changes)
            for top in ("tree", "wide"):
                for path, node in store.walk(f"/{top}"):
                    local = self.local / path.lstrip("/")
                    if node.is_folder:
                        local.mkdir(parents=True, exist_ok=True)
                    else:
                        with open(local, "wb") as f:
                            f.truncate(node.size)
                    if top == "tree":
                        self.tree_paths.append(path.lstrip("/"))
        finally:
            store.close()
        (self.work / "tree-paths.txt").write_text("\n".join(self.tree_paths))
        # a warm mirror (and for git, warm chunks of .git) per variant: every measured mount starts warm
        for v in self.variants:
            mnt, ctx = self.our_mount(v)
            with ctx:
                if "git" in sections:
                    self.git_porcelain(mnt / "repo", v.name)
                self.check_listing(mnt, v.name)
        say(f"  prepared in {time.perf_counter() - t0:.1f}s")

    def make_repo(self) -> None:
        """A git checkout of --git-files real files, committed locally, then uploaded with its .git.

        git compares an index entry's stat data with the file's: for the drive's files to count as
        unchanged (no re-hash of every file), the local files get the drive's modification times,
        the index is refreshed, and it is uploaded last. core.checkStat=minimal and trustctime=false
        tell git to compare only mtime seconds and size: the drive has no ctime, inode numbers differ
        between copies, and both copies use the same settings.
        """
        repo = self.local / "repo"
        repo.mkdir()
        count = 0
        spelled: dict[str, str] = {}   # drive names are unique regardless of case: first spelling wins
        for src in GIT_SOURCES:
            for base in sorted(Path(src).parent.glob(Path(src).name + "*")):
                for dirpath, dirnames, filenames in os.walk(base):
                    dirnames[:] = sorted(d for d in dirnames if d not in (".git", "__pycache__"))
                    for name in sorted(filenames):
                        if count >= self.args.git_files:
                            break
                        srcfile = Path(dirpath) / name
                        if srcfile.is_symlink() or not srcfile.is_file():
                            continue
                        try:
                            if srcfile.stat().st_size > 256 * 1024:
                                continue
                            rel = srcfile.relative_to("/")
                            prefixes = [str(Path(*rel.parts[:i + 1])) for i in range(len(rel.parts))]
                            if any(spelled.setdefault(p.lower(), p) != p for p in prefixes):
                                continue
                            dest = repo / rel
                            dest.parent.mkdir(parents=True, exist_ok=True)
                            shutil.copyfile(srcfile, dest)
                        except OSError:
                            continue
                        count += 1
        git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost",
               "-c", "gc.auto=0", "-c", "maintenance.auto=false"]   # no gc in the background
        run_quiet([*git, "init", "-q"])
        run_quiet([*git, "config", "core.checkStat", "minimal"])
        run_quiet([*git, "config", "core.trustctime", "false"])
        run_quiet([*git, "add", "-A"])
        run_quiet([*git, "commit", "-q", "-m", "checkout for bench_meta"])
        run_quiet([*git, "gc", "-q"])
        files = [p for p in repo.rglob("*") if p.is_file() and p != repo / ".git" / "index"]
        t0 = time.perf_counter()
        folder_ids = {repo: self.client.create_folder("repo")["id"]}
        for d in sorted((p for p in repo.rglob("*") if p.is_dir()), key=lambda p: len(p.parts)):
            folder_ids[d] = self.client.create_folder(d.name, folder_ids[d.parent])["id"]

        def upload(path: Path) -> None:
            with open(path, "rb") as f:
                node = self.client.upload_stream(f, path.name, folder_ids[path.parent])
            mtime = iso_to_epoch(node["modifiedDate"])
            os.utime(path, (mtime, mtime))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(upload, files))
        # the index last, its stat data now the drive's; a second later, so no entry is "racily clean"
        run_quiet([*git, "update-index", "--really-refresh"])
        time.sleep(1.1)
        with open(repo / ".git" / "index", "rb") as f:
            self.client.upload_stream(f, "index", folder_ids[repo / ".git"])
        say(f"  git checkout: {count} files ({len(files) - count} in .git) uploaded in "
            f"{time.perf_counter() - t0:.1f}s")
        self.git_porcelain(repo, "local")

    def check_listing(self, mnt: Path, target: str) -> None:
        """A variant that lists wrongly must not be timed: the same names as local disk, every entry."""
        for top in ("tree", "wide"):
            if not (self.local / top).exists():
                continue
            theirs, ours = (subprocess.run(["find", top], cwd=root, capture_output=True, check=True,
                                           text=True).stdout for root in (mnt, self.local))
            if sorted(theirs.splitlines()) != sorted(ours.splitlines()):
                raise RuntimeError(f"{target} lists {top} differently from local disk")

    def git_porcelain(self, repo: Path, target: str) -> None:
        """Warn when git sees changes: then it re-hashes files and the numbers measure that instead."""
        out = subprocess.run(["git", "-C", str(repo), "--no-optional-locks", "status", "--porcelain"],
                             capture_output=True, check=True, text=True).stdout
        if out.strip():
            say(f"  WARNING: git status on {target} reports {len(out.splitlines())} changes, e.g. "
                f"{out.splitlines()[0]!r}")

    # ----- processes ------------------------------------------------------------------------------

    def our_mount(self, v: Variant, cold_chunks: bool = False) -> tuple[Path, Any]:
        self.mounts += 1
        mnt = self.work / f"mnt-{v.name}"
        cache = self.work / f"cache-{v.name}"
        if cold_chunks:
            shutil.rmtree(cache / "chunks", ignore_errors=True)
        argv = [sys.executable, "-m", "acdfuse", "mount", str(mnt), "--foreground", "--config-dir",
                str(self.cdir), "--cache-dir", str(cache), "--interval", "3600", *v.args]
        return mnt, mounted(argv, mnt, f"acdfuse mount ({v.name})", log=self.work / f"mount-{v.name}.log")

    def rclone_mount(self, source: Path) -> tuple[Path, Any]:
        mnt = self.work / "mnt-rclone"
        argv = ["rclone", "mount", str(source), str(mnt), *RCLONE_ARGS]
        return mnt, mounted(argv, mnt, "rclone mount", log=self.work / "rclone.log")

    def targets(self, source: Path) -> Iterator[tuple[str, Path, Any]]:
        """(name, mount point, mount context or None for local disk) for every target, in turn."""
        yield "local", source, None
        mnt, ctx = self.rclone_mount(source)
        yield "rclone", mnt, ctx
        for v in self.variants:
            mnt, ctx = self.our_mount(v)
            yield v.name, mnt, ctx

    # ----- the metadata sections --------------------------------------------------------------------

    def twice(self, section: str, probe: Callable[[Path], float | None]) -> None:
        """Each target: a fresh mount, the probe twice (first, repeated); local disk: twice, warm."""
        res = self.times.setdefault(section, {})
        for run in range(self.args.runs):
            for name, root, ctx in self.targets(self.local):
                with ctx if ctx is not None else contextlib.nullcontext() as proc:
                    first = measure(probe, root)
                    repeated = measure(probe, root)
                    if proc is not None:
                        self.rss.setdefault(f"{name}, {section}", []).append(vm_hwm(proc.pid))
                r = res.setdefault(name, {"first": [], "repeated": []})
                r["first"].append(first)
                r["repeated"].append(repeated)
            say(f"  {section} run {run + 1}: " + ", ".join(
                f"{n} {r['first'][-1]:.2f}/{r['repeated'][-1]:.2f}s" for n, r in res.items()))

    def find(self) -> None:
        self.twice("find", lambda root: quiet(["find", str(root / "tree"), "-ls"]))

    def ls(self) -> None:
        self.twice("ls", lambda root: quiet(["ls", "-l", str(root / "wide")]))

    def git(self) -> None:
        self.twice("git", lambda root: quiet(
            ["git", "-C", str(root / "repo"), "--no-optional-locks", "status"]))

    def stat(self) -> None:
        listing = self.work / "tree-paths.txt"

        def probe(root: Path) -> float:
            # the time the child measured: the interpreter's start-up is not part of it
            return float(subprocess.run(
                [sys.executable, "-c", PSTAT, str(root), str(listing), str(STAT_THREADS)],
                capture_output=True, check=True, text=True).stdout)

        self.twice("stat", probe)

    def report_meta(self) -> None:
        labels = {
            "find": f"find -ls over {self.args.nodes} nodes",
            "ls": f"ls -l of a {self.args.wide}-entry folder",
            "git": f"git status, {self.args.git_files}-file checkout",
            "stat": f"lstat of {self.args.nodes} paths from {STAT_THREADS} threads",
        }
        goals = {"find": ("repeated", 2.0), "ls": ("repeated", 3.0), "git": ("repeated", 3.0)}
        for section, res in self.times.items():
            if "local" not in res:
                continue
            loc = median(res["local"]["repeated"])
            rc_first = median(res["rclone"]["first"]) if "rclone" in res else float("nan")
            rc_rep = median(res["rclone"]["repeated"]) if "rclone" in res else float("nan")
            self.record(f"{labels[section]}: local / rclone first / rclone repeated, s",
                        f"{loc:.3f} / {rc_first:.2f} / {rc_rep:.2f}")
            for v in self.variants:
                first, rep = median(res[v.name]["first"]), median(res[v.name]["repeated"])
                line = (f"first {first:.2f} s ({first / rc_first:.2f}x rclone, {first / loc:.1f}x local); "
                        f"repeated {rep:.3f} s ({rep / loc:.1f}x local, {rep / rc_rep:.2f}x rclone)")
                goal = goals.get(section)
                if goal:
                    line += f"; goal repeated <= {goal[1]:.0f}x local"
                if section == "find":
                    line += ", first <= 0.5x rclone"
                self.record(f"{labels[section]}: {v.name}", line)

    # ----- read and write: the binding's share ---------------------------------------------------------

    def read(self) -> None:
        size = self.args.read_mib * MiB
        rates: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for _ in range(self.args.runs):
            for v in self.variants:
                mnt, ctx = self.our_mount(v, cold_chunks=True)
                with ctx as proc:
                    t, c = read_with_cpu(mnt / "big.bin", proc.pid)
                    self.rss.setdefault(f"{v.name}, read", []).append(vm_hwm(proc.pid))
                rates.setdefault(v.name, []).append(size / t / MiB)
                cpu.setdefault(v.name, []).append(c / (size / GiB))
            mnt = self.work / "mnt-memfs"
            with mounted([sys.executable, "-c", MEMFS, str(mnt), str(size)], mnt, "memfs") as proc:
                t, c = read_with_cpu(mnt / "big.bin", proc.pid)
            rates.setdefault("minimal FS", []).append(size / t / MiB)
            cpu.setdefault("minimal FS", []).append(c / (size / GiB))
            say("  read: " + ", ".join(f"{k} {v[-1]:.0f} MiB/s" for k, v in rates.items()))
        for key, values in rates.items():
            self.record(f"cold read of {self.args.read_mib} MiB: {key}",
                        f"{median(values):.0f} MiB/s, {median(cpu[key]):.2f} CPU s per GiB")

    def write(self) -> None:
        size_mib = self.args.write_mib
        rows: list[tuple[float, float, int, int]] = []
        for _ in range(self.args.runs):
            mnt = self.work / "mnt-writefs"
            stats = self.work / "writefs-stats"
            stats.unlink(missing_ok=True)
            ctx = mounted([sys.executable, "-c", WRITEFS, str(mnt), str(stats)], mnt, "writefs",
                          log=self.work / "writefs.log")
            with ctx as proc:
                before = cpu_seconds(proc.pid)
                t = timed(lambda mnt=mnt: run_quiet(
                    ["dd", "if=/dev/zero", f"of={mnt / 'f'}", "bs=1M", f"count={size_mib}", "conv=fsync"],
                    stderr=subprocess.DEVNULL))
                c = cpu_seconds(proc.pid) - before
            calls, nbytes, largest = (int(x) for x in stats.read_text().split())
            if nbytes != size_mib * MiB:
                raise RuntimeError(f"writefs got {nbytes} bytes, not {size_mib} MiB")
            rows.append((t, c, calls, largest))
            say(f"  write: {t:.2f}s {calls} calls")
        t = median([r[0] for r in rows])
        c = median([r[1] for r in rows])
        self.record(f"write {size_mib} MiB (dd bs=1M conv=fsync) into a minimal FS on the mount's binding",
                    f"{t:.2f} s ({size_mib / t:.0f} MiB/s), {rows[-1][2]} write calls of up to "
                    f"{rows[-1][3] // 1024} KiB, FS CPU {c:.2f} s")

    # ----- acd_cli ----------------------------------------------------------------------------------

    def acdcli(self) -> None:
        if not ACD_CLI.exists():
            self.record("acd_cli", f"skipped: {ACD_CLI} missing")
            return
        cache = self.work / "acdcli-cache"
        self.server.write_credentials(cache, token_lifetime=86400 * 30)
        env = dict(os.environ, ACD_CLI_CACHE_PATH=str(cache), ACD_CLI_SETTINGS_PATH=str(cache))
        sync_s = timed(lambda: subprocess.run([str(ACD_CLI), "sync"], env=env, check=True,
                                              capture_output=True))
        times = []
        for _ in range(self.args.runs):
            mnt = self.work / "mnt-acdcli"
            with mounted([str(ACD_CLI), "mount", "--foreground", "--read-only", str(mnt)], mnt,
                         "acd_cli mount", env=env, log=self.work / "acdcli.log") as proc:
                times.append(timed(lambda mnt=mnt: run_quiet(["find", str(mnt / "tree"), "-ls"])))
                self.rss.setdefault("acd_cli", []).append(vm_hwm(proc.pid))
        self.record("acd_cli: sync s / find -ls of the tree, first after mount s",
                    f"{sync_s:.1f} / {median(times):.2f}")

    def report_rss(self) -> None:
        for name, values in self.rss.items():
            self.record(f"peak RSS of the FUSE process: {name}", f"{max(values) / MiB:.0f} MiB "
                        f"(median of sessions {median([float(v) for v in values]) / MiB:.0f} MiB)")


def measure(probe: Callable[[Path], float | None], root: Path) -> float:
    """Seconds the probe took: its own figure when it gives one, else the wall time around it."""
    t0 = time.perf_counter()
    own = probe(root)
    return own if own is not None else time.perf_counter() - t0


def read_with_cpu(path: Path, pid: int) -> tuple[float, float]:
    before = cpu_seconds(pid)
    seconds = timed(lambda: run_quiet(["dd", f"if={path}", "of=/dev/null", "bs=1M"],
                                      stderr=subprocess.DEVNULL))
    return seconds, cpu_seconds(pid) - before


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--nodes", type=int, default=100_000, help="nodes of the find/stat tree")
    p.add_argument("--wide", type=int, default=10_000, help="entries of the ls folder")
    p.add_argument("--git-files", type=int, default=10_000, help="files of the git checkout")
    p.add_argument("--read-mib", type=int, default=1024)
    p.add_argument("--write-mib", type=int, default=1024)
    p.add_argument("--variant", type=parse_variant, action="append",
                   help="NAME:BINDING[:MOUNT ARGS], repeatable (default: fusepy:fusepy)")
    p.add_argument("--only", default=",".join(DEFAULT_SECTIONS),
                   help="comma separated: " + ",".join(SECTIONS))
    p.add_argument("--work", help="work dir (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    p.add_argument("--json", help="also write the results as JSON to this file")
    args = p.parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s!r}")
    bench = Bench(args)
    say(f"command: {' '.join(sys.argv)}")
    say(f"load average at start: {os.getloadavg()[0]:.2f}")
    bench.start()
    # a Ctrl-C or SIGTERM must still unmount everything
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        say("[prepare]")
        bench.prepare(sections)
        for section in sections:
            say(f"[{section}]")
            getattr(bench, section)()
        bench.report_meta()
        bench.report_rss()
    finally:
        bench.close()
    say(f"load average at end: {os.getloadavg()[0]:.2f}")
    say("\nsummary")
    for key, value in bench.results.items():
        say(f"  {key:<70} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": sys.argv, "results": bench.results,
                                               "times": bench.times}, indent=2))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    raise SystemExit(main())
