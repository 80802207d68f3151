#!/usr/bin/env python3
"""Benchmark the content read path (acdfuse.vfs.ContentReader) against the real server.

Everything runs in one go against an in-process ``DriveServer`` on a loopback port, and every
number is printed next to its yardstick from the same run (medians of ``--runs``):

- cold sequential read (empty caches) vs ``curl`` of the same file;
- the same with the server's per-connection bandwidth cap on, as a ratio to curl's single-stream
  capped rate (parallel read-ahead should beat it several times over);
- warm re-read (memory + disk tier, and disk tier only after a "restart") vs reading a local
  file of the same size from the page cache;
- peak RSS of a separate process reading ``--rss-files`` large files at once vs the budgets.

Reads are 128 KiB each, what the kernel sends through FUSE.  Example:
    python3 scripts/bench_vfs.py --size-mib 1024 --runs 3 --bandwidth 16777216
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from acdfuse.api.client import ACDClient
from acdfuse.server import DriveServer, ServerConfig
from acdfuse.vfs import ContentReader, ReaderOptions

MiB = 1024 * 1024
READ = 128 * 1024


def pinned_fetch(client: ACDClient) -> Callable[[str, int, int, str], bytearray]:
    """ContentReader's fetch over the client, each range pinned to the handle's content md5."""
    def fetch(node_id: str, offset: int, length: int, content_key: str) -> bytearray:
        return client.download_chunk(node_id, offset, length, content_md5=content_key)
    return fetch


def make_file(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(rng.randbytes(n))
            left -= n


def curl_seconds(url: str, token: str) -> float:
    out = subprocess.run(
        ["curl", "-s", "-f", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}", "-w", "%{time_total}",
         url], check=True, capture_output=True, text=True)
    return float(out.stdout)


def read_sequential(read: Callable[[int, int], bytes], size: int) -> float:
    start = time.perf_counter()
    offset = 0
    while offset < size:
        got = len(read(offset, READ))
        if not got:
            raise RuntimeError(f"short read at {offset} of {size}")
        offset += got
    return time.perf_counter() - start


def local_seconds(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(READ):
            pass
    return time.perf_counter() - start


def direct_seconds(path: Path) -> float:
    """Read the file from the device itself (O_DIRECT), bypassing the page cache."""
    buf = mmap.mmap(-1, MiB)  # page-aligned, as O_DIRECT wants
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    start = time.perf_counter()
    try:
        while os.readv(fd, [buf]):
            pass
    finally:
        os.close(fd)
        buf.close()
    return time.perf_counter() - start


def rate(size: int, seconds: float) -> str:
    return f"{size / seconds / MiB:8.1f} MiB/s"


def median(values: list[float]) -> float:
    return statistics.median(values)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.server = DriveServer(ServerConfig(data_dir=work / "server", port=0))
        self.server.start()
        self.cdir = work / "cdir"
        self.server.write_credentials(self.cdir)
        self.client = ACDClient(str(self.cdir))
        endpoint = json.loads((self.cdir / "endpoint_data").read_text())
        self.content_url = endpoint["contentUrl"]

    def token(self) -> str:
        return json.loads((self.cdir / "oauth_data").read_text())["access_token"]

    def upload(self, name: str, size: int, seed: int) -> tuple[str, str, Path]:
        path = self.work / name
        make_file(path, size, seed)
        node = self.client.upload_file(str(path))
        return node["id"], node["contentProperties"]["md5"], path

    def options(self, cache_dir: Path | None, **overrides: Any) -> ReaderOptions:
        base: dict[str, Any] = dict(cache_dir=cache_dir, streams=self.args.streams,
                                    disk_skip_when_full=self.args.disk_skip_when_full,
                                    read_ahead=self.args.read_ahead_mib * MiB,
                                    memory_cache=self.args.memory_mib * MiB,
                                    cache_size=self.args.cache_mib * MiB)
        base.update(overrides)
        return ReaderOptions(**base)

    def reader_pass(self, node: str, md5: str, size: int, cache_dir: Path | None,
                    reader: ContentReader | None = None) -> tuple[float, dict[str, int], ContentReader]:
        """One sequential read of the whole file (a new reader unless one is given)."""
        if reader is None:
            reader = ContentReader(pinned_fetch(self.client), self.options(cache_dir))
            reader.start()
        fh = reader.open(node, md5, size)
        read = reader.read
        seconds = read_sequential(lambda off, n: read(fh, off, n), size)
        reader.release(fh)
        return seconds, reader.stats(), reader

    def cold_and_warm(self) -> None:
        size = self.args.size_mib * MiB
        print(f"# uploading {self.args.size_mib} MiB ...", flush=True)
        node, md5, local = self.upload("big.bin", size, 1)
        url = f"{self.content_url}nodes/{node}/content"
        curl, cold, warm, restart, disk = [], [], [], [], []
        restart_fetches: list[int] = []
        device: list[float] = []
        local_seconds(local)  # page cache warm-up
        for run in range(self.args.runs):
            curl.append(curl_seconds(url, self.token()))
            cache_dir = self.work / f"cache-{run}"
            seconds, stats, reader = self.reader_pass(node, md5, size, cache_dir)
            cold.append(seconds)
            print(f"  run {run}: curl {rate(size, curl[-1])}  cold {rate(size, seconds)}  "
                  f"fetches={stats['fetches']} readahead={stats['readahead_fetches']} "
                  f"disk_skipped={stats['disk_skipped']}", flush=True)
            reader.reset_stats()
            seconds, stats, reader = self.reader_pass(node, md5, size, cache_dir, reader)
            warm.append(seconds)
            print(f"         warm {rate(size, seconds)}  memory hits={stats['hits']} "
                  f"disk hits={stats['disk_hits']} fetches={stats['fetches']}", flush=True)
            reader.close()  # writes out the disk tier
            os.sync()  # a remount comes later: let the kernel write back first, as it would by then
            seconds, stats, reader = self.reader_pass(node, md5, size, cache_dir)
            restart.append(seconds)
            restart_fetches.append(stats["fetches"])
            reader.close()
            disk.append(local_seconds(local))
            device.append(direct_seconds(local))
            shutil.rmtree(cache_dir)
        print(f"cold sequential  {rate(size, median(cold))}   curl {rate(size, median(curl))}   "
              f"ratio {median(curl) / median(cold):.2f}x curl")
        print(f"warm re-read     {rate(size, median(warm))}   local file {rate(size, median(disk))}   "
              f"ratio {median(disk) / median(warm):.2f}x local")
        print(f"after restart    {rate(size, median(restart))}   (disk tier; fetches {restart_fetches})   "
              f"ratio {median(disk) / median(restart):.2f}x local")
        print(f"local file read from the device (O_DIRECT) {rate(size, median(device))}: "
              f"warm re-read {median(device) / median(warm):.2f}x, after restart "
              f"{median(device) / median(restart):.2f}x of it")

    def capped(self) -> None:
        size = self.args.capped_size_mib * MiB
        bw = self.args.bandwidth
        node, md5, _ = self.upload("capped.bin", size, 2)
        url = f"{self.content_url}nodes/{node}/content"
        self.server.faults.configure(bandwidth=bw)
        try:
            single, ours = [], []
            for run in range(self.args.runs):
                single.append(curl_seconds(url, self.token()))
                seconds, _, reader = self.reader_pass(node, md5, size, self.work / f"capped-{run}")
                reader.close()
                ours.append(seconds)
                print(f"  run {run}: curl {rate(size, single[-1])}  reader {rate(size, seconds)}", flush=True)
                shutil.rmtree(self.work / f"capped-{run}")
        finally:
            self.server.faults.configure(bandwidth=0)
        print(f"capped {bw / MiB:.1f} MiB/s per connection: reader {rate(size, median(ours))}   "
              f"single stream (curl) {rate(size, median(single))}   "
              f"ratio {median(single) / median(ours):.2f}x")

    def rss(self) -> None:
        n, size = self.args.rss_files, self.args.rss_size_mib * MiB
        files = [self.upload(f"rss-{i}.bin", size, 10 + i)[:2] for i in range(n)]
        opts = self.options(self.work / "rss-cache")
        job = {"cdir": str(self.cdir), "files": files, "size": size,
               "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()}}
        out = subprocess.run([sys.executable, __file__, "--rss-child", json.dumps(job)], check=True,
                             capture_output=True, text=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        queue = max(opts.disk_queue, opts.request_size)
        budgets = opts.memory_cache + opts.read_ahead_budget + queue
        print(f"peak RSS reading {n} x {self.args.rss_size_mib} MiB at once: {result['peak'] / MiB:.0f} MiB "
              f"(process baseline {result['base'] / MiB:.0f} MiB)")
        print(f"  budgets: memory {opts.memory_cache / MiB:.0f}"
              f" + read-ahead {opts.read_ahead_budget / MiB:.0f}"
              f" + disk write queue {queue / MiB:.0f} = {budgets / MiB:.0f} MiB; "
              f"peak - budgets = {(result['peak'] - budgets) / MiB:.0f} MiB; "
              f"throughput {rate(n * size, result['seconds'])} total")

    def close(self) -> None:
        self.server.close()


def vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_child(job_json: str) -> None:
    """Separate process: read all files at once with one reader, report its peak RSS (VmHWM)."""
    job = json.loads(job_json)
    opts = dict(job["options"])
    opts["cache_dir"] = Path(opts["cache_dir"]) if opts["cache_dir"] else None
    client = ACDClient(job["cdir"])
    reader = ContentReader(pinned_fetch(client), ReaderOptions(**opts))
    reader.start()
    base = vm_kib("VmRSS") * 1024
    size = job["size"]
    errors: list[BaseException] = []

    def read(node: str, md5: str) -> None:
        try:
            fh = reader.open(node, md5, size)
            read_sequential(lambda off, n: reader.read(fh, off, n), size)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=tuple(f)) for f in job["files"]]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    reader.close()
    if errors:
        raise errors[0]
    # VmHWM, not ru_maxrss: the latter carries the parent's RSS over fork+exec
    peak = vm_kib("VmHWM") * 1024
    print(json.dumps({"peak": peak, "base": base, "seconds": seconds}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=1024, help="file size of the cold/warm runs")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bandwidth", type=int, default=16 * MiB, help="per-connection cap in bytes/s (0: skip)")
    p.add_argument("--capped-size-mib", type=int, default=256)
    p.add_argument("--rss-files", type=int, default=8, help="files read at once for peak RSS (0: skip)")
    p.add_argument("--rss-size-mib", type=int, default=128)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--read-ahead-mib", type=int, default=64)
    p.add_argument("--memory-mib", type=int, default=256)
    p.add_argument("--cache-mib", type=int, default=2048)
    p.add_argument("--skip-cold", action="store_true")
    p.add_argument("--disk-skip-when-full", action="store_true",
                   help="reader option: skip the disk tier when it lags instead of waiting for it")
    p.add_argument("--workdir", type=Path, default=None, help="where files and caches go (default: temp)")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-vfs-", dir=args.workdir))
    bench = Bench(args, work)
    try:
        if not args.skip_cold:
            bench.cold_and_warm()
        if args.bandwidth:
            bench.capped()
        if args.rss_files:
            bench.rss()
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
