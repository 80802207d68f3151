#!/usr/bin/env python3
"""What a file manager's thumbnailer costs: a folder of small "photos" (made through the API, not the
mount) opened cold, and the first 64 KiB of each read, as thumbnailers and previewers do. Prints the
bytes the server sent per file, next to the file size.

    .venv/bin/python scripts/bench_thumbnails.py [--files 1000] [--size 262144] [--head 65536]

Runs its own ``acdfuse serve`` on a loopback port and a real mount in a temp dir; needs /dev/fuse.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from acdfuse.api.client import ACDClient
from acdfuse.server import DriveServer, ServerConfig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256 * 1024)
    ap.add_argument("--head", type=int, default=64 * 1024)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="acdfuse-thumbs-") as tmp:
        root = Path(tmp)
        server = DriveServer(ServerConfig(data_dir=root / "server", host="127.0.0.1", port=0))
        server.start()
        try:
            cdir = root / "cdir"
            server.write_credentials(cdir)
            client = ACDClient(str(cdir))
            folder = client.create_folder("photos")
            blob = os.urandom(args.size)
            started = time.monotonic()
            for i in range(args.files):
                # each file its own bytes (the server refuses duplicates)
                data = i.to_bytes(8, "big") + blob[8:]
                client.upload_stream(io.BytesIO(data), f"IMG_{i:05d}.jpg", parent=folder["id"])
            made = time.monotonic() - started
            fetched, seconds = measure(root, cdir, server, args.files, args.head)
        finally:
            server.close()
    per_file = fetched / args.files
    print(f"files: {args.files} x {args.size} bytes (made through the API in {made:.1f} s)")
    print(f"read the first {args.head} bytes of each, cold: {seconds:.2f} s")
    print(f"bytes fetched: {fetched} in all, {per_file:.0f} per file "
          f"({per_file / args.size:.2f} of a file)")
    return 0


def measure(root: Path, cdir: Path, server: DriveServer, files: int, head: int) -> tuple[int, float]:
    mnt = root / "mnt"
    mnt.mkdir()
    argv = [sys.executable, "-m", "acdfuse", "mount", str(mnt), "--foreground", "--config-dir", str(cdir),
            "--cache-dir", str(root / "cache"), "--interval", "3600"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not os.path.ismount(mnt):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the mount did not come up")
            time.sleep(0.05)
        folder = mnt / "photos"
        names = sorted(os.listdir(folder))
        assert len(names) == files, len(names)
        before = server.stats.snapshot()["download_bytes"]
        started = time.monotonic()
        for name in names:
            # one unbuffered read, as a thumbnailer's first look (Python's buffered reader would ask
            # for st_blksize, 128 KiB, and so make the kernel read ahead further)
            fd = os.open(folder / name, os.O_RDONLY)
            try:
                assert len(os.read(fd, head)) == head
            finally:
                os.close(fd)
        seconds = time.monotonic() - started
        return server.stats.snapshot()["download_bytes"] - before, seconds
    finally:
        subprocess.run(["fusermount", "-u", str(mnt)], check=False)
        proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
