"""The server is killed (SIGKILL) while a mount uploads and reads, and restarted on the same data dir
and port: reads fail with a clean errno or return the right bytes, every write an fsync acknowledged
is on the server after the restart, and every file closed meanwhile (journaled) is uploaded too.

The server runs as ``acdfuse serve`` in a child process of the test, so it can be killed for real.
"""

from __future__ import annotations

import errno
import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount
from write_helpers import pending_uploads, wait_uploaded

from acdfuse.api.client import ACDClient

pytestmark = pytest.mark.mount

# what a read may fail with while the server is gone (and nothing else)
READ_ERRNOS = {errno.EIO, errno.ETIMEDOUT, errno.EAGAIN}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """``acdfuse serve`` as our child: started, killed with SIGKILL, started again on the same port."""

    def __init__(self, data: Path, cdir: Path, port: int, *extra: str) -> None:
        self.data, self.cdir, self.port, self.extra = data, cdir, port, extra
        self.log = data.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, credentials: bool = True) -> ServeProcess:
        """``credentials``: write the client config (the first start; a restart keeps the mount's)."""
        argv = [sys.executable, "-m", "acdfuse", "serve", "--data", str(self.data), "--port", str(self.port),
                "--token-lifetime", "86400", *self.extra]
        if credentials:
            argv += ["--credentials-out", str(self.cdir)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if b"serving at" in line:
                break
        else:
            pytest.fail(f"acdfuse serve did not start:\n{self.log.read_text()[-3000:]}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)       # our own child, by pid
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    # uploads at 4 MiB/s per connection: a few MiB take long enough to be killed in the middle
    srv = ServeProcess(tmp_path / "serve-data", tmp_path / "serve-cdir", free_port(), "--bandwidth",
                       str(4 * 2**20)).start()
    try:
        yield srv
    finally:
        srv.stop()


def server_files(client: Any, folder: str) -> dict[str, bytes]:
    top = {c["name"]: c["id"] for c in client.list_children(client.get_root_id())}
    out = {}
    for child in client.list_children(top[folder]):
        if child.get("kind") == "FILE" and child.get("status") == "AVAILABLE":
            size = child["contentProperties"]["size"]
            out[child["name"]] = bytes(client.download_chunk(child["id"], 0, size)) if size else b""
    return out


class Writer(threading.Thread):
    """Writes files into ``out/`` one after another, each closed, every third fsynced, until stopped."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.rng = random.Random(5)
        self.stop = threading.Event()
        self.acked: dict[str, bytes] = {}        # fsync returned 0: on the server
        self.closed: dict[str, bytes] = {}       # close returned 0: journaled
        self.fsync_errors: Counter[str] = Counter()
        self.other_errors: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            name = f"w{i:03}.bin"
            data = self.rng.randbytes(self.rng.choice([1_000, 300_000, 3_000_000]))
            fsync = i % 3 == 0
            try:
                fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    if fsync:
                        try:
                            os.fsync(fd)
                            self.acked[name] = data
                        except OSError as exc:
                            self.fsync_errors[errno.errorcode[exc.errno or 0]] += 1
                finally:
                    os.close(fd)
                self.closed[name] = data
            except OSError as exc:
                self.other_errors.append(f"{name}: {exc}")


class Reader(threading.Thread):
    """Reads the server's files through the mount (no cache: direct_io, a fresh cache) until stopped."""

    def __init__(self, folder: Path, files: dict[str, bytes]) -> None:
        super().__init__(daemon=True)
        self.folder, self.files = folder, files
        self.stop = threading.Event()
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.wrong: list[str] = []

    def run(self) -> None:
        rng = random.Random(6)
        names = sorted(self.files)
        while not self.stop.is_set():
            name = rng.choice(names)
            size = len(self.files[name])
            offset = rng.randrange(0, size - 65536)
            try:
                with open(self.folder / name, "rb", buffering=0) as f:
                    f.seek(offset)
                    got = f.read(65536)
            except OSError as exc:
                self.errors[errno.errorcode.get(exc.errno or 0, str(exc.errno))] += 1
                continue
            if got != self.files[name][offset:offset + 65536]:
                self.wrong.append(f"{name} at {offset}")
            else:
                self.ok += 1


def wait_for(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    gate = threading.Event()
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {timeout} s")
        gate.wait(0.05)


def test_server_killed_and_restarted_during_uploads_and_reads(serve: ServeProcess, mounts: Any,
                                                              tmp_path: Path) -> None:
    client = ACDClient(str(serve.cdir))
    folder = client.create_folder("remote")
    rng = random.Random(4)
    remote = {f"r{i}.bin": rng.randbytes(8 * 2**20) for i in range(3)}
    for name, data in remote.items():
        client.upload_stream(io.BytesIO(data), name, folder["id"])
    m: Mount = mounts(serve.cdir)
    m.start("--upload-delay", "0.2", "--timeout", "5", "--memory-cache", "8M", "-o", "direct_io")
    out = m.mnt / "out"
    out.mkdir()
    writer = Writer(out)
    reader = Reader(m.mnt / "remote", remote)
    writer.start()
    reader.start()
    try:
        # the kill comes while uploads are in flight and after some writes were acknowledged
        wait_for(lambda: len(writer.acked) >= 2 and pending_uploads(m.cache_dir) > 0 and reader.ok > 0,
                 "acknowledged writes, uploads in flight and good reads")
        in_flight = pending_uploads(m.cache_dir)
        acked_before = dict(writer.acked)
        serve.kill()
        wait_for(lambda: sum(reader.errors.values()) > 0 and len(writer.closed) > len(acked_before) + 2,
                 "reads failing and writes going on with the server gone")
        read_while_down = reader.ok
        acked_while_down = len(writer.acked)
        serve.start(credentials=False)                  # same data dir, same port
        wait_for(lambda: reader.ok > read_while_down and len(writer.acked) > acked_while_down,
                 "reads and acknowledged writes again after the restart")
    finally:
        writer.stop.set()
        reader.stop.set()
        writer.join(120)
        reader.join(120)
    assert not writer.is_alive() and not reader.is_alive(), "a reader or writer hung"
    wait_uploaded(m.cache_dir, timeout=180)             # the journaled uploads complete
    m.stop()
    report = (f"in flight at the kill {in_flight}; acked {len(writer.acked)}, closed {len(writer.closed)}; "
              f"fsync errors {dict(writer.fsync_errors)}; reads ok {reader.ok}, failed {dict(reader.errors)}")
    print(report)
    assert not reader.wrong, report
    assert not writer.other_errors, report
    assert {errno.errorcode[e] for e in READ_ERRNOS} >= set(reader.errors), report
    assert set(writer.fsync_errors) <= {"EIO"}, report
    on_server = server_files(ACDClient(str(serve.cdir)), "out")
    for name, data in writer.acked.items():
        assert on_server.get(name) == data, f"{name}: acknowledged by fsync, not on the server as written"
    for name, data in writer.closed.items():
        assert on_server.get(name) == data, f"{name}: closed (journaled), not uploaded as written"
    assert set(on_server) == set(writer.closed), report
