"""The random-operation checker of the write tests: files on a mount driven by random operations and
compared with shadow copies in memory; plus tree maps of a mount and of the server for comparisons.

``Shadowed`` is used by one thread at a time (a caller sharing one between threads holds a lock per
step); ``run_in_process`` runs checkers in a child process (spawned, so it imports this module).
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

KiB = 1024


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class ShadowMismatch(AssertionError):
    pass


class Shadowed:
    """One file on the mount, opened through ``handles`` descriptors, and its expected content."""

    def __init__(self, path: Path, handles: int = 1) -> None:
        self.path = path
        self.expect = bytearray()
        self.fds = [os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)]
        self.fds += [os.open(path, os.O_RDWR) for _ in range(handles - 1)]

    @property
    def fd(self) -> int:
        return self.fds[0]

    def _pick(self, rng: random.Random) -> int:
        # with one handle no random number is drawn, so a seed gives the same run as before
        return 0 if len(self.fds) == 1 else rng.randrange(len(self.fds))

    def step(self, rng: random.Random) -> str:
        op = rng.choices(["write", "append", "truncate", "read", "reopen", "fsync", "stat"],
                         weights=[30, 10, 10, 25, 10, 5, 10])[0]
        size = len(self.expect)
        if op == "write":
            fd = self.fds[self._pick(rng)]
            offset = rng.randrange(0, size + 64 * KiB)
            data = rng.randbytes(rng.choice([1, 100, 4096, 50_000, 200_000]))
            assert os.pwrite(fd, data, offset) == len(data)
            if offset > size:
                self.expect.extend(bytes(offset - size))
            self.expect[offset:offset + len(data)] = data
        elif op == "append":
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            data = rng.randbytes(rng.randrange(1, 30_000))
            os.write(fd, data)
            os.close(fd)
            self.expect.extend(data)
        elif op == "truncate":
            fd = self.fds[self._pick(rng)]
            new = rng.choice([0, size // 2, size, size + rng.randrange(1, 100_000)])
            os.ftruncate(fd, new)
            if new < size:
                del self.expect[new:]
            else:
                self.expect.extend(bytes(new - size))
        elif op == "read":
            fd = self.fds[self._pick(rng)]
            offset = rng.randrange(0, size + 10) if size else 0
            length = rng.randrange(1, 300_000)
            if os.pread(fd, length, offset) != bytes(self.expect[offset:offset + length]):
                raise ShadowMismatch(f"{self.path.name}: read {offset}+{length}")
        elif op == "reopen":
            i = self._pick(rng)
            os.close(self.fds[i])
            if rng.random() < 0.2:
                self.fds[i] = os.open(self.path, os.O_RDWR | os.O_TRUNC)
                self.expect.clear()
            else:
                self.fds[i] = os.open(self.path, os.O_RDWR)
        elif op == "fsync":
            os.fsync(self.fds[self._pick(rng)])
        elif op == "stat":
            if os.fstat(self.fds[self._pick(rng)]).st_size != size or self.path.stat().st_size != size:
                raise ShadowMismatch(f"{self.path.name}: size is not {size}")
        return op

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)


class Band:
    """One writer's stretch of a file shared with other writers: random pwrite/pread inside
    ``[start, start + size)`` through a handle of its own, checked against its own shadow."""

    def __init__(self, path: Path, start: int, size: int) -> None:
        self.path, self.start, self.size = path, start, size
        self.expect = bytearray(size)
        self.fd = os.open(path, os.O_RDWR)

    def step(self, rng: random.Random) -> str:
        off = rng.randrange(0, self.size)
        n = min(rng.choice([1, 512, 4096, 20_000, 100_000]), self.size - off)
        op = rng.choices(["write", "read", "fsync"], weights=[50, 45, 5])[0]
        if op == "write":
            data = rng.randbytes(n)
            assert os.pwrite(self.fd, data, self.start + off) == n
            self.expect[off:off + n] = data
        elif op == "read":
            if os.pread(self.fd, n, self.start + off) != bytes(self.expect[off:off + n]):
                raise ShadowMismatch(f"{self.path.name}: band at {self.start}: read {off}+{n}")
        else:
            os.fsync(self.fd)
        return op

    def close(self) -> None:
        os.close(self.fd)


def run_in_process(folder: str, seed: int, steps: int, files: int, band: tuple[str, int, int] | None
                   ) -> tuple[dict[str, str], dict[str, int]]:
    """A child process's work: ``files`` Shadowed files of its own in ``folder`` (and, with ``band``
    = (path, start, size), a stretch of a shared file): ``steps`` random operations. Returns
    name -> md5 of the expected content (the band's under its path and start) and the op counts."""
    rng = random.Random(seed)
    own = [Shadowed(Path(folder) / f"p{seed}-{i}.bin", handles=2) for i in range(files)]
    shared = Band(Path(band[0]), band[1], band[2]) if band else None
    ops: dict[str, int] = {}
    try:
        for _ in range(steps):
            if shared is not None and rng.random() < 0.3:
                op = shared.step(rng)
            else:
                op = rng.choice(own).step(rng)
            ops[op] = ops.get(op, 0) + 1
    finally:
        for f in own:
            f.close()
        if shared is not None:
            shared.close()
    out = {f.path.name: md5(bytes(f.expect)) for f in own}
    if shared is not None:
        out[f"{shared.path.name}@{shared.start}"] = md5(bytes(shared.expect))
    return out, ops


def mount_tree(root: Path) -> dict[str, str]:
    """'dir/file' -> md5 of every file under a mount, and 'dir/' -> '' for every folder."""
    tree: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel + "/"
        for d in dirnames:
            tree[prefix + d + "/"] = ""
        for f in filenames:
            tree[prefix + f] = md5(Path(dirpath, f).read_bytes())
    return tree


def server_tree(client: Any) -> dict[str, str]:
    """The same map from the server's own listings (the API, not a mount)."""
    tree: dict[str, str] = {}
    todo = [(client.get_root_id(), "")]
    while todo:
        folder, prefix = todo.pop()
        for node in client.list_children(folder):
            if node.get("status") != "AVAILABLE":
                continue
            if node["kind"] == "FOLDER":
                tree[prefix + node["name"] + "/"] = ""
                todo.append((node["id"], prefix + node["name"] + "/"))
            else:
                tree[prefix + node["name"]] = node["contentProperties"]["md5"]
    return tree
