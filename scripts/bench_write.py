#!/usr/bin/env python3
"""Write-side benchmark of the acdfuse mount (issue 10 "Speed"): every ratio from one run, side by side.

Sections (``--only`` picks some):
  big     a file of --size-mib written through the mount and fsynced, timed to the end of the fsync
          (the upload confirmed), vs curl uploading the same file to the same server. Also the mount's
          peak RSS during the write vs its RSS when idle just before.
  small   --files small files created (and closed) in one folder: the time of the create loop, and for
          the mount also the time until the last one is confirmed on the server. Local disk and
          `rclone mount --vfs-cache-mode writes` (over a local folder) alongside.
  rsync   `rsync -a` of a tree of --tree-files small files onto local disk / the mount / rclone mount.
  clone   `git clone` of a local repository onto the same three.
  acdcli  acd_cli 0.3.2's mount writing to the same server: the big file, and --acdcli-files small files.

rclone has no way to talk to this server (its Amazon Drive backend finds Amazon's hosts only), so its
mount runs over a local folder: the yardstick is rclone's FUSE and write-back cost, without a network.
Every number is the median of ``--runs`` runs. The server runs in this process; the mounts, curl,
rclone and acd_cli run as child processes.
Usage: python3 scripts/bench_write.py [--runs 3] [--size-mib 1024] [--files 10000] [--only big,small]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_read import median, mounted, rate, say, timed

from acdfuse.server import DriveServer, ServerConfig
from acdfuse.store.journal import unconfirmed_files

MiB = 1 << 20
SECTIONS = ("big", "small", "rsync", "clone", "acdcli")
REPO = Path(__file__).resolve().parent.parent
ACD_CLI = REPO / ".venv-acdcli" / "bin" / "acd_cli.py"

# the writer of the big file, in its own process: 1 MiB writes, then fsync; prints the seconds taken
BIG_WRITER = r'''
import os, sys, time
src, dst = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
with open(src, "rb", buffering=0) as f:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    while True:
        block = f.read(1 << 20)
        if not block:
            break
        os.write(fd, block)
    os.fsync(fd)
    os.close(fd)
print(time.perf_counter() - t0)
'''

# many small files in one folder, each created, written and closed; prints the seconds taken
SMALL_WRITER = r'''
import os, sys, time
folder, count = sys.argv[1], int(sys.argv[2])
os.makedirs(folder, exist_ok=True)
payload = os.urandom(2048)
t0 = time.perf_counter()
for i in range(count):
    fd = os.open(os.path.join(folder, f"f{i:05}.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, payload[: 100 + i % 1900])
    os.close(fd)
print(time.perf_counter() - t0)
'''


def rss_of(pid: int) -> int:
    """Resident set size of a process in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class RssSampler:
    """Samples a process's RSS every 50 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_of(self.pid))

    def __enter__(self) -> RssSampler:
        self.peak = rss_of(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def pending_uploads(cache: Path) -> int:
    return unconfirmed_files(cache / "journal.db", timeout=30)


def wait_uploaded(cache: Path, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while pending_uploads(cache):
        if time.monotonic() > deadline:
            raise RuntimeError(f"uploads did not finish within {timeout}s")
        time.sleep(0.05)


def run(argv: Sequence[str | Path], **kw: Any) -> subprocess.CompletedProcess[Any]:
    """Run a tool the benchmark times or sets up, by the full path ``shutil.which`` finds, with an argv
    list and no shell; a failure raises. Every process the benchmark starts (but the mounts) goes here."""
    exe = shutil.which(str(argv[0]))
    if exe is None:
        raise RuntimeError(f"{argv[0]} is not installed")
    return subprocess.run([exe, *map(str, argv[1:])], check=True, **kw)  # noqa: S603 - full path, no shell


def run_child(code: str, *args: str) -> float:
    out = run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    return float(out.stdout.strip())


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work or tempfile.mkdtemp(prefix="acdfuse-bench-write-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.server = DriveServer(ServerConfig(data_dir=self.work / "server", port=0,
                                               token_lifetime=86400 * 30))
        self.results: list[tuple[str, str]] = []
        self.count = 0

    def start(self) -> None:
        self.server.start()
        self.cdir = self.work / "cdir"
        self.server.write_credentials(self.cdir, token_lifetime=86400 * 30)
        self.token = self.server.access_token(token_lifetime=86400 * 30)

    def close(self) -> None:
        self.server.close()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def record(self, key: str, value: str) -> None:
        self.results.append((key, value))
        say(f"  {key}: {value}")

    def fresh(self, tag: str) -> Path:
        self.count += 1
        path = self.work / f"{tag}{self.count}"
        path.mkdir(parents=True)
        return path

    # ----- the three targets ------------------------------------------------------------------

    def ours(self) -> tuple[Path, Path, Any]:
        mnt, cache = self.fresh("mnt"), self.fresh("cache")
        argv = [sys.executable, "-m", "acdfuse", "mount", str(mnt), "--foreground", "--config-dir",
                str(self.cdir), "--cache-dir", str(cache), "--interval", "3600",
                *self.args.mount_args.split()]
        return mnt, cache, mounted(argv, mnt, "acdfuse mount", log=self.work / "mount-stderr.log")

    def rclone(self) -> tuple[Path, Any]:
        mnt, backing = self.fresh("rclone-mnt"), self.fresh("rclone-backing")
        cache = self.fresh("rclone-cache")
        argv = ["rclone", "mount", str(backing), str(mnt), "--vfs-cache-mode", "writes",
                "--cache-dir", str(cache)]
        return mnt, mounted(argv, mnt, "rclone mount", log=self.work / "rclone.log")

    # ----- sections -----------------------------------------------------------------------------

    def big(self) -> None:
        size = self.args.size_mib * MiB
        src = self.work / "big.bin"
        if not src.exists():
            with open(src, "wb") as f:
                for _ in range(self.args.size_mib):
                    f.write(os.urandom(MiB))
        run(["cat", src], stdout=subprocess.DEVNULL)   # in the page cache
        ours, curl, idle, peak = [], [], [], []
        for _ in range(self.args.runs):
            mnt, _cache, ctx = self.ours()
            with ctx as proc:
                time.sleep(1.0)
                idle.append(rss_of(proc.pid))
                with RssSampler(proc.pid) as sampler:
                    ours.append(run_child(BIG_WRITER, str(src), str(mnt / f"big{self.count}.bin")))
                peak.append(sampler.peak)
            curl.append(self.curl_upload(src, f"curl{self.count}.bin"))
        o, c = median(ours), median(curl)
        self.record(f"{self.args.size_mib} MiB to a confirmed fsync, s (mount / curl upload)",
                    f"{o:.2f} / {c:.2f}")
        self.record("  MiB/s (mount / curl)", f"{rate(size, o):.0f} / {rate(size, c):.0f}")
        self.record("  ratio mount:curl speed (goal >= 0.6)", f"{c / o:.2f}")
        grown = (median(peak) - median(idle)) / 1e6
        self.record("peak RSS while writing vs idle, MB (goal: within 50 MB)",
                    f"{median(peak) / 1e6:.0f} vs {median(idle) / 1e6:.0f} (+{grown:.0f})")

    def curl_upload(self, src: Path, name: str) -> float:
        url = f"{self.server.base_url}/cdproxy/nodes?suppress=deduplication"
        args = ["curl", "-sS", "-o", "/dev/null", "-H", f"Authorization: Bearer {self.token}",
                "-F", f'metadata={{"name":"{name}","kind":"FILE"}}', "-F", f"content=@{src}", url]
        return timed(lambda: run(args))

    def small(self) -> None:
        n = str(self.args.files)
        local, ours, ours_up, rcl = [], [], [], []
        for _ in range(self.args.runs):
            local.append(run_child(SMALL_WRITER, str(self.fresh("local") / "d"), n))
            mnt, cache, ctx = self.ours()
            with ctx:
                t0 = time.perf_counter()
                ours.append(run_child(SMALL_WRITER, str(mnt / f"d{self.count}"), n))
                wait_uploaded(cache)
                ours_up.append(time.perf_counter() - t0)
            rmnt, rctx = self.rclone()
            with rctx:
                rcl.append(run_child(SMALL_WRITER, str(rmnt / "d"), n))
        lo, o, u, r = median(local), median(ours), median(ours_up), median(rcl)
        self.record(f"create {n} small files, s (local / mount / rclone mount)",
                    f"{lo:.2f} / {o:.2f} / {r:.2f}")
        self.record("  mount until all are on the server, s", f"{u:.2f}")
        self.record("  ratio mount:rclone time (lower is faster; goal < 1)", f"{o / r:.2f}")
        self.record("  ratio mount:local time", f"{o / lo:.1f}")

    def tree(self) -> Path:
        src = self.work / "tree"
        if not src.exists():
            for i in range(self.args.tree_files):
                d = src / f"d{i % 20:02}" / f"e{i % 7}"
                d.mkdir(parents=True, exist_ok=True)
                (d / f"f{i:05}.txt").write_bytes(os.urandom(100 + (i * 37) % 8000))
        return src

    def three_way(self, label: str, action: Any) -> None:
        """Time ``action(target_dir)`` on local disk, the mount and rclone mount."""
        local, ours, ours_up, rcl = [], [], [], []
        for _ in range(self.args.runs):
            local.append(timed(lambda: action(self.fresh("local") / "t")))
            mnt, cache, ctx = self.ours()
            target = f"t{self.count}"       # one drive for every run: each writes a new folder
            with ctx:
                t0 = time.perf_counter()
                ours.append(timed(lambda mnt=mnt, target=target: action(mnt / target)))
                wait_uploaded(cache)
                ours_up.append(time.perf_counter() - t0)
            rmnt, rctx = self.rclone()
            with rctx:
                rcl.append(timed(lambda rmnt=rmnt: action(rmnt / "t")))
        lo, o, u, r = median(local), median(ours), median(ours_up), median(rcl)
        self.record(f"{label}, s (local / mount / rclone mount)", f"{lo:.2f} / {o:.2f} / {r:.2f}")
        self.record("  mount until all is on the server, s", f"{u:.2f}")
        self.record("  ratio mount:rclone time (lower is faster; goal < 1)", f"{o / r:.2f}")
        self.record("  ratio mount:local time", f"{o / lo:.1f}")

    def rsync(self) -> None:
        src = self.tree()
        self.three_way(f"rsync -a of {self.args.tree_files} small files",
                       lambda dst: run(["rsync", "-a", f"{src}/", f"{dst}/"]))

    def clone(self) -> None:
        origin = Path(self.args.repo)
        self.three_way(f"git clone of {origin.name}",
                       lambda dst: run(["git", "clone", "-q", "--no-hardlinks", origin, dst]))

    def acdcli(self) -> None:
        if not ACD_CLI.exists():
            self.record("acd_cli", f"skipped: {ACD_CLI} missing")
            return
        cache = self.fresh("acdcli-cache")
        env = dict(os.environ, ACD_CLI_CACHE_PATH=str(cache), ACD_CLI_SETTINGS_PATH=str(cache))
        for name in ("oauth_data", "endpoint_data"):
            shutil.copy(self.cdir / name, cache / name)
        run([ACD_CLI, "sync"], env=env, capture_output=True)
        mnt = self.fresh("acdcli-mnt")
        n = str(self.args.acdcli_files)
        src = self.work / "acdcli-big.bin"
        with open(src, "wb") as f:
            for _ in range(self.args.acdcli_mib):
                f.write(os.urandom(MiB))
        with mounted([str(ACD_CLI), "mount", "--foreground", str(mnt)], mnt, "acd_cli mount", env=env,
                     log=self.work / "acdcli.log"):
            small = run_child(SMALL_WRITER, str(mnt / "d"), n)
            big = run_child(BIG_WRITER, str(src), str(mnt / "big.bin"))
        ours_mnt, _cache, ctx = self.ours()
        with ctx:
            ours_small = run_child(SMALL_WRITER, str(ours_mnt / "acdcli-d"), n)
            ours_big = run_child(BIG_WRITER, str(src), str(ours_mnt / "acdcli-big.bin"))
        self.record(f"create {n} small files, s (acdfuse / acd_cli mount)",
                    f"{ours_small:.2f} / {small:.2f} ({small / int(n) * 1000:.0f} ms per file on acd_cli)")
        self.record(f"{self.args.acdcli_mib} MiB written + fsync, s (acdfuse / acd_cli mount)",
                    f"{ours_big:.2f} / {big:.2f}")

    def run(self) -> None:
        only = self.args.only.split(",") if self.args.only else list(SECTIONS)
        for section in SECTIONS:
            if section in only:
                say(f"[{section}]")
                getattr(self, section)()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--files", type=int, default=10000)
    p.add_argument("--tree-files", type=int, default=3000)
    p.add_argument("--acdcli-files", type=int, default=50)
    p.add_argument("--acdcli-mib", type=int, default=256, help="size of the big file in the acdcli section")
    p.add_argument("--repo", default=str(REPO), help="the repository `git clone` copies (default: this one)")
    p.add_argument("--mount-args", default="", help="extra arguments of `acdfuse mount`")
    p.add_argument("--only", default="", help=f"comma-separated sections of {','.join(SECTIONS)}")
    p.add_argument("--work", help="work dir (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work dir")
    args = p.parse_args()
    bench = Bench(args)
    bench.start()
    try:
        bench.run()
    finally:
        bench.close()
    say("\nsummary:")
    for key, value in bench.results:
        say(f"  {key}: {value}")


if __name__ == "__main__":
    main()
