#!/usr/bin/env python3
"""Server benchmarks (not tests): bulk generation, big-tree listing/changes timings, upload memory.

    python3 scripts/bench_server.py [--nodes 1000000] [--upload-gib 2] [--skip-upload]

Prints one line per measurement. The server runs in a subprocess (``acdfuse serve``) so its RSS can
be sampled alone while a streaming client uploads ``--upload-gib`` GiB through it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests

from acdfuse.server import DriveServer, ServerConfig


def _timed(label: str, fn, repeat: int = 1):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = None
    for _ in range(repeat):
        out = fn()
    dt = (time.perf_counter() - t0) / repeat
    print(f"{label:<58} {dt * 1000:10.1f} ms")
    return out


def bench_tree(n_nodes: int, workdir: Path) -> None:
    srv = DriveServer(ServerConfig(data_dir=workdir / "tree-data", port=0, trash_retention=None))
    srv.start()
    try:
        t0 = time.perf_counter()
        tree = srv.generate_tree(n_nodes=n_nodes, fanout=20, folders_per_folder=3)
        print(
            f"{'generate_tree ' + str(n_nodes) + ' nodes':<58} {time.perf_counter() - t0:10.1f} s"
            f"   (depth {tree.depth}, rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB)"
        )
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + srv.access_token()
        meta = srv.base_url + "/drive/v1/"
        root = srv.account().root
        _timed(
            "GET nodes/{root}/children (20 children)",
            lambda: s.get(meta + f"nodes/{root}/children").json(),
            20,
        )
        _timed(
            "GET nodes?filters=isRoot:true",
            lambda: s.get(meta + "nodes", params={"filters": "isRoot:true"}),
            20,
        )

        def resolve() -> str:
            node = root
            for name in tree.deepest_path.split("/"):
                page = s.get(meta + "nodes", params={"filters": f"parents:{node} AND name:{name}"}).json()
                node = page["data"][0]["id"]
            return node

        got = _timed(f"resolve depth-{tree.depth} path via parents:X AND name:Y", resolve, 5)
        assert got == tree.deepest_id
        _timed(
            "GET nodes?filters=name:d65601 (whole drive)",
            lambda: s.get(meta + "nodes", params={"filters": "name:d65601"}),
            20,
        )

        def page_through(pages: int) -> None:
            q: dict[str, str] = {"limit": "200"}
            for _ in range(pages):
                page = s.get(meta + "nodes", params=q).json()
                if "nextToken" not in page:
                    return
                q["startToken"] = page["nextToken"]

        _timed("GET nodes, 50 pages of 200 (keyset paging), all 50", lambda: page_through(50))
        t0 = time.perf_counter()
        seen = 0
        last = ""
        with s.post(meta + "changes", data="{}", stream=True) as r:
            for line in r.iter_lines(chunk_size=1024 * 1024):
                obj = json.loads(line)
                if "nodes" in obj:
                    seen += len(obj["nodes"])
                    last = obj["checkpoint"]
        print(f"{f'changes full dump ({seen} nodes, streamed)':<58} {time.perf_counter() - t0:10.1f} s")
        s.patch(meta + f"nodes/{tree.deepest_id}", data=json.dumps({"name": "renamed"}))
        inc = _timed(
            "changes incremental after 1 rename",
            lambda: s.post(meta + "changes", data=json.dumps({"checkpoint": last})).text,
            5,
        )
        assert "renamed" in inc
        wide = s.post(meta + "nodes", data=json.dumps({"name": "wide", "kind": "FOLDER"})).json()["id"]
        srv.generate_tree(n_nodes=100_000, fanout=100_000, folders_per_folder=1, parent=wide, prefix="w")

        def all_children() -> int:
            q: dict[str, str] = {"limit": "200"}
            got = 0
            while True:
                page = s.get(meta + f"nodes/{wide}/children", params=q).json()
                got += len(page["data"])
                if "nextToken" not in page:
                    return got
                q["startToken"] = page["nextToken"]

        n = _timed("list all 100,000 children of one folder (500 pages)", all_children)
        assert n == 100_000
    finally:
        srv.close()


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_upload(gib: float, workdir: Path) -> None:
    cdir = workdir / "cdir"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acdfuse",
            "serve",
            "--data",
            str(workdir / "up-data"),
            "--port",
            "0",
            "--credentials-out",
            str(cdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "serving at" in line:
                break
        base = json.loads((cdir / "acdfuse_server").read_text())["base_url"]
        token = json.loads((cdir / "oauth_data").read_text())["access_token"]
        total = int(gib * 1024**3)
        block = os.urandom(1024 * 1024)
        md5 = hashlib.md5()
        boundary = uuid.uuid4().hex

        def body() -> Iterator[bytes]:
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n'
                + json.dumps({"name": "big.bin", "kind": "FILE"})
                + "\r\n"
            ).encode()
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="x"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            sent = 0
            while sent < total:
                chunk = block[: min(len(block), total - sent)]
                md5.update(chunk)
                sent += len(chunk)
                yield chunk
            yield f"\r\n--{boundary}--\r\n".encode()

        before = _rss_kb(proc.pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], _rss_kb(proc.pid))

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        t0 = time.perf_counter()
        r = requests.post(
            base + "/cdproxy/nodes",
            params={"suppress": "deduplication"},
            data=body(),
            headers={
                "Authorization": "Bearer " + token,
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
            timeout=3600,
        )
        dt = time.perf_counter() - t0
        done.set()
        t.join()
        assert r.status_code == 201, r.text
        assert r.json()["contentProperties"]["md5"] == md5.hexdigest()
        print(
            f"{'upload ' + str(gib) + ' GiB (chunked multipart)':<58} {dt:10.1f} s   "
            f"({total / dt / 1024**2:.0f} MiB/s)"
        )
        print(
            f"{'server RSS before / peak during upload':<58} {before // 1024:6d} / {peak[0] // 1024} MB"
            f"   (+{(peak[0] - before) // 1024} MB)"
        )
        nid = r.json()["id"]
        t0 = time.perf_counter()
        got = 0
        with requests.get(
            base + f"/cdproxy/nodes/{nid}/content",
            headers={"Authorization": "Bearer " + token},
            stream=True,
            timeout=3600,
        ) as dl:
            for chunk in dl.iter_content(1024 * 1024):
                got += len(chunk)
        dt = time.perf_counter() - t0
        assert got == total
        print(f"{f'download {gib} GiB (sendfile)':<58} {dt:10.1f} s   ({total / dt / 1024**2:.0f} MiB/s)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--upload-gib", type=float, default=2.0)
    ap.add_argument("--skip-upload", action="store_true")
    ap.add_argument("--skip-tree", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        if not args.skip_tree:
            bench_tree(args.nodes, Path(tmp))
        if not args.skip_upload:
            bench_upload(args.upload_gib, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
