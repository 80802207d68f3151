#!/usr/bin/env python3
"""Load on the server (not a test): many API clients upload, list, rename and download at once.

    python3 scripts/load_server.py [--clients 50] [--processes 5] [--duration 60] [--json FILE]

Starts ``acdfuse serve`` on loopback in a subprocess (its own data dir, a fresh drive), then runs
``--clients`` ACDClients (threads spread over ``--processes`` processes, so the load generator is not
one GIL) for ``--duration`` seconds. Each client works in a folder of its own and checks every answer:
a download must return exactly the bytes uploaded, a listing exactly the names the client expects.
At the end every client lists its folder once more.

Prints throughput, p50/p99 latency per operation, errors, the server's RSS over time, and what the
server logged ("database is locked", ERROR, tracebacks). Exits 1 if any request failed, any check
failed, or the server log has any of those. ``tests/server/test_load.py`` runs a short version.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acdfuse.api.client import ACDClient
from acdfuse.api.common import RequestError

# operation mix (weights) of each client
MIX = (("upload", 35), ("download", 25), ("list", 20), ("rename", 15), ("lookup", 5))
SMALL = (1024, 256 * 1024)       # most files: 1 KiB .. 256 KiB
LARGE = 4 * 1024 * 1024          # one upload in 20 is this big
LOG_PROBLEMS = ("database is locked", " ERROR ", "Traceback")


@dataclass
class ClientResult:
    ops: list[tuple[str, float, bool]] = field(default_factory=list)  # (operation, seconds, ok)
    errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # wrong bytes or a wrong listing: data lost
    warnings: list[str] = field(default_factory=list)  # the client library's own (retries, odd answers)
    bytes_up: int = 0
    bytes_down: int = 0
    files: int = 0


def _content(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def run_client(cdir: str, index: int, deadline: float, seed: int, max_files: int = 0) -> ClientResult:
    """One client's loop until ``deadline`` (time.time()); every answer checked. With ``max_files``
    a client that has that many files overwrites one instead of uploading a new one, so the drive
    stops growing (a steady state, to tell a leak from memory that grows with the data)."""
    res = ClientResult()
    rng = random.Random(seed)
    names = [m for m, _ in MIX]
    weights = [w for _, w in MIX]
    client = ACDClient(cdir)
    files: dict[str, tuple[str, int, int]] = {}  # node id -> (name, content seed, size)
    counter = 0

    def timed(op: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        try:
            out = fn()
        except RequestError as exc:
            res.ops.append((op, time.perf_counter() - t0, False))
            res.errors.append(f"{op}: {exc}")
            return None
        res.ops.append((op, time.perf_counter() - t0, True))
        return out

    try:
        folder = timed("mkdir", lambda: client.create_folder(f"client-{os.getpid()}-{index}"))
        if folder is None:
            return res
        fid = folder["id"]
        while time.time() < deadline:
            op = rng.choices(names, weights)[0]
            if op in ("download", "rename") and not files:
                op = "upload"
            if op == "upload" and max_files and len(files) >= max_files:
                nid = rng.choice(list(files))
                size = rng.randint(*SMALL)
                cseed = rng.getrandbits(32)
                if timed("overwrite", lambda n=nid, s=size, c=cseed: client.overwrite_stream(
                        io.BytesIO(_content(c, s)), n)) is not None:
                    files[nid] = (files[nid][0], cseed, size)
                    res.bytes_up += size
            elif op == "upload":
                counter += 1
                size = LARGE if rng.random() < 0.05 else rng.randint(*SMALL)
                cseed = rng.getrandbits(32)
                name = f"f{counter}.bin"
                node = timed("upload", lambda n=name, s=size, c=cseed: client.upload_stream(
                    io.BytesIO(_content(c, s)), n, fid))
                if node is not None:
                    files[node["id"]] = (name, cseed, size)
                    res.bytes_up += size
            elif op == "download":
                nid = rng.choice(list(files))
                name, cseed, size = files[nid]
                got = timed("download", lambda n=nid, s=size: client.download_chunk(n, 0, max(s, 1)))
                if got is not None:
                    res.bytes_down += len(got)
                    if bytes(got) != _content(cseed, size):
                        res.mismatches.append(f"download {name} ({nid}): {len(got)} bytes, wrong content")
            elif op == "list":
                listed = timed("list", lambda: client.list_children(fid))
                if listed is not None:
                    _compare(res, {n["name"] for n in listed}, {v[0] for v in files.values()}, "list")
            elif op == "rename":
                nid = rng.choice(list(files))
                counter += 1
                new = f"r{counter}.bin"
                if timed("rename", lambda n=nid, nn=new: client.rename_node(n, nn)) is not None:
                    files[nid] = (new, *files[nid][1:])
            else:  # lookup: a filtered list over the whole drive
                if files:
                    name = rng.choice(list(files.values()))[0]
                    found = timed("lookup", lambda n=name: client.get_node_list(filters=f"name:{n}"))
                    if found is not None and not any(n.get("parents") == [fid] for n in found):
                        res.mismatches.append(f"lookup {name}: not found")
        final = timed("list", lambda: client.list_children(fid))
        if final is not None:
            _compare(res, {n["name"] for n in final}, {v[0] for v in files.values()}, "final list")
        res.files = len(files)
    finally:
        client.close()
    return res


def _compare(res: ClientResult, got: set[str], want: set[str], what: str) -> None:
    if got != want:
        res.mismatches.append(f"{what}: missing {sorted(want - got)[:5]}, unexpected {sorted(got - want)[:5]}")


def run_threads(cdir: str, clients: int, first_index: int, deadline: float, seed: int,
                max_files: int = 0) -> list[ClientResult]:
    """``clients`` client threads in this process."""
    results: list[ClientResult] = [ClientResult() for _ in range(clients)]
    # without injected faults a retry or an odd answer is already something that should not happen
    seen = _WarningCollector()
    logging.getLogger("acdfuse.api").addHandler(seen)

    def work(i: int) -> None:
        try:
            results[i] = run_client(cdir, first_index + i, deadline, seed + first_index + i, max_files)
        except Exception as exc:  # a bug in the client library: counted, never silent
            results[i].errors.append(f"client crashed: {exc!r}")

    threads = [threading.Thread(target=work, args=(i,), name=f"load-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logging.getLogger("acdfuse.api").removeHandler(seen)
    if results:
        results[0].warnings.extend(seen.messages)
    return results


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def _process_entry(args: tuple[str, int, int, float, int, int]) -> list[ClientResult]:
    return run_threads(*args)


def run_load(cdir: str, clients: int, processes: int, duration: float, seed: int,
             max_files: int = 0) -> list[ClientResult]:
    deadline = time.time() + duration
    if processes <= 1:
        return run_threads(cdir, clients, 0, deadline, seed, max_files)
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    starts = [sum(per[:i]) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ctx.Pool(processes) as pool:
        parts = pool.map(_process_entry, [(cdir, n, s, deadline, seed, max_files)
                                          for n, s in zip(per, starts, strict=True)])
    return [r for part in parts for r in part]


# ---- the server -----------------------------------------------------------------------------------

class Server:
    """``acdfuse serve`` in a subprocess of ours: started, sampled (RSS), stopped."""

    def __init__(self, workdir: Path, extra: list[str] | None = None) -> None:
        self.data = workdir / "server-data"
        self.cdir = workdir / "cdir"
        self.log_path = workdir / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "acdfuse", "serve", "--data", str(self.data), "--port", "0",
               "--token-lifetime", "86400", "--credentials-out", str(self.cdir), *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # the console says when it serves
            if b"serving at" in raw:
                break
        else:
            raise RuntimeError(f"acdfuse serve did not start; see {self.log_path}")
        self._drain = threading.Thread(target=self.proc.stdout.read, daemon=True)
        self._drain.start()
        self.rss: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def rss_now(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def start_sampling(self, interval: float) -> None:
        self._interval = interval
        self._t0 = time.monotonic()
        self._sampler.start()

    def _sample(self) -> None:
        while True:
            self.rss.append((time.monotonic() - self._t0, self.rss_now()))
            if self._stop.wait(self._interval):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._sampler.is_alive():
            self._sampler.join()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self._log.close()

    def log_problems(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if any(p in line for p in LOG_PROBLEMS)]


# ---- the report -----------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summarize(results: list[ClientResult], duration: float, rss: list[tuple[float, int]],
              log_problems: list[str]) -> dict[str, Any]:
    per_op: dict[str, list[float]] = {}
    failed: Counter[str] = Counter()
    for r in results:
        for op, secs, ok in r.ops:
            per_op.setdefault(op, []).append(secs)
            if not ok:
                failed[op] += 1
    total = sum(len(v) for v in per_op.values())
    errors = [e for r in results for e in r.errors]
    mismatches = [m for r in results for m in r.mismatches]
    warnings = [w for r in results for w in r.warnings]
    values = [v for _, v in rss]
    quarter = max(1, len(values) // 4)
    return {
        "clients": len(results),
        "duration_s": round(duration, 1),
        "requests": total,
        "requests_per_s": round(total / duration, 1),
        "mb_up": round(sum(r.bytes_up for r in results) / 1e6, 1),
        "mb_down": round(sum(r.bytes_down for r in results) / 1e6, 1),
        "files": sum(r.files for r in results),
        "ops": {op: {"count": len(v), "failed": failed[op], "p50_ms": round(percentile(v, 0.5) * 1000, 1),
                     "p99_ms": round(percentile(v, 0.99) * 1000, 1), "max_ms": round(max(v) * 1000, 1)}
                for op, v in sorted(per_op.items())},
        "errors": len(errors),
        "error_samples": errors[:10],
        "lost_or_wrong": len(mismatches),
        "mismatch_samples": mismatches[:10],
        "locked_reported_to_clients": sum("locked" in e for e in errors),
        "client_warnings": len(warnings),
        "warning_samples": warnings[:10],
        "server_log_problems": log_problems[:20],
        "rss_mib": {
            "first_quarter_mean": round(sum(values[:quarter]) / quarter / 2**20, 1) if values else 0,
            "last_quarter_mean": round(sum(values[-quarter:]) / quarter / 2**20, 1) if values else 0,
            "max": round(max(values) / 2**20, 1) if values else 0,
            "series": [(round(t), round(v / 2**20, 1)) for t, v in rss],
        },
    }


def ok(summary: dict[str, Any]) -> bool:
    return not (summary["errors"] or summary["lost_or_wrong"] or summary["server_log_problems"]
                or summary["client_warnings"])


def report(summary: dict[str, Any]) -> str:
    lines = [
        f"clients {summary['clients']}, {summary['duration_s']} s: {summary['requests']} requests "
        f"({summary['requests_per_s']}/s), {summary['mb_up']} MB up, {summary['mb_down']} MB down, "
        f"{summary['files']} files at the end",
        f"{'operation':<10} {'count':>7} {'failed':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}",
    ]
    for op, s in summary["ops"].items():
        lines.append(f"{op:<10} {s['count']:>7} {s['failed']:>7} {s['p50_ms']:>9} {s['p99_ms']:>9} "
                     f"{s['max_ms']:>9}")
    rss = summary["rss_mib"]
    lines.append(f"server RSS MiB: first quarter {rss['first_quarter_mean']}, last quarter "
                 f"{rss['last_quarter_mean']}, max {rss['max']}")
    lines.append("  over time (s, MiB): " + ", ".join(f"{t}:{v}" for t, v in rss["series"]))
    lines.append(f"errors {summary['errors']}, lost or wrong {summary['lost_or_wrong']}, "
                 f"'database is locked' seen by clients {summary['locked_reported_to_clients']}, "
                 f"server log problems {len(summary['server_log_problems'])}, "
                 f"client warnings {summary['client_warnings']}")
    lines += [f"  warning: {w}" for w in summary["warning_samples"]]
    lines += [f"  error: {e}" for e in summary["error_samples"]]
    lines += [f"  mismatch: {m}" for m in summary["mismatch_samples"]]
    lines += [f"  server log: {line}" for line in summary["server_log_problems"]]
    lines.append("OK" if ok(summary) else "FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--processes", type=int, default=5, help="processes the clients are spread over")
    p.add_argument("--duration", type=float, default=60, help="seconds of load")
    p.add_argument("--sample", type=float, default=2.0, help="seconds between RSS samples")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-files", type=int, default=0,
                   help="files per client after which uploads become overwrites (0: the drive keeps growing)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    p.add_argument("--workdir", type=Path, default=None, help="keep the server's data and log here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="acdfuse-load-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        srv = Server(workdir)
        try:
            srv.start_sampling(args.sample)
            t0 = time.monotonic()
            results = run_load(str(srv.cdir), args.clients, args.processes, args.duration, args.seed,
                               args.max_files)
            elapsed = time.monotonic() - t0
        finally:
            srv.stop()
        summary = summarize(results, elapsed, srv.rss, srv.log_problems())
    print(report(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if ok(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
