"""The errno table seen through the real stack: what the server answers (or does not) becomes the
errno a user expects, and nothing leaves an operation without one (tier 3, no kernel)."""

from __future__ import annotations

import errno
import io
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import StackFactory, fails_with, fi, pattern, read_file, upload

from acdfuse.server import DriveServer

MiB = 1 << 20


@pytest.fixture
def files(client: Any) -> dict[str, Any]:
    return {"f": upload(client, "f.bin", pattern(3 * MiB, 1)), "data": pattern(3 * MiB, 1),
            "g": upload(client, "g.bin", pattern(5 * MiB, 2))}


def test_a_node_gone_from_the_server_is_enoent(stacks: StackFactory, files: dict[str, Any],
                                               drive_server: DriveServer) -> None:
    stack = stacks()
    drive_server.purge(files["f"]["id"])          # the mirror still lists it: the download gets 404
    ops = stack.ops
    f = fi()
    ops.open("/f.bin", f)
    fails_with(errno.ENOENT, lambda: ops.read("/f.bin", 4096, 0, f))
    ops.release("/f.bin", f)


def test_content_changed_on_the_server_is_estale_and_asks_for_a_sync(
        stacks: StackFactory, files: dict[str, Any], client: Any) -> None:
    stack = stacks()
    ops = stack.ops
    synced = threading.Event()
    stack.sync_loop.add_listener(lambda result: synced.set())
    f = fi()
    ops.open("/f.bin", f)
    client.overwrite_stream(io.BytesIO(b"v2" * 1000), files["f"]["id"])
    # the range is pinned to the md5 the handle opened: the server answers 412, never newer bytes
    fails_with(errno.ESTALE, lambda: ops.read("/f.bin", 4096, 0, f))
    ops.release("/f.bin", f)
    # and the fetch asked the sync loop for a sync at once (its timer is an hour)
    assert synced.wait(30), stack.sync_loop.last_error
    assert read_file(stack, "/f.bin") == b"v2" * 1000


def test_an_unreachable_server_is_eio_and_cached_content_is_still_served(
        stacks: StackFactory, files: dict[str, Any], drive_server: DriveServer) -> None:
    stack = stacks(timeout=3.0)
    assert read_file(stack, "/f.bin") == files["data"]     # now in the chunk caches
    drive_server.close()
    assert read_file(stack, "/f.bin") == files["data"]
    ops = stack.ops
    f = fi()
    ops.open("/g.bin", f)
    fails_with(errno.EIO, lambda: ops.read("/g.bin", 4096, 0, f))
    # the kernel re-asks a failed read at once: it fails at once too (remembered), still EIO
    fails_with(errno.EIO, lambda: ops.read("/g.bin", 4096, 0, f))
    ops.release("/g.bin", f)
    assert ops.getattr("/g.bin")["st_size"] == 5 * MiB    # the mirror answers metadata offline


def test_refused_credentials_are_eacces(stacks: StackFactory, files: dict[str, Any], cdir: Path,
                                        tmp_path: Path) -> None:
    stacks().close()                               # a warm mirror, as a mount leaves it
    bad = tmp_path / "bad-cdir"
    shutil.copytree(cdir, bad)
    oauth = json.loads((bad / "oauth_data").read_text())
    oauth.update(access_token="Atza|bogus", refresh_token="Atzr|bogus")
    (bad / "oauth_data").write_text(json.dumps(oauth))
    stack = stacks(config_dir=bad)                 # mounts offline from the mirror
    ops = stack.ops
    f = fi()
    ops.open("/g.bin", f)
    fails_with(errno.EACCES, lambda: ops.read("/g.bin", 4096, 0, f))
    ops.release("/g.bin", f)


def test_server_errors_after_the_retries_are_eio_or_eagain(
        stacks: StackFactory, files: dict[str, Any], drive_server: DriveServer) -> None:
    stack = stacks(timeout=2.0)
    drive_server.faults.configure(error_rate=1.0, seed=1)    # every API call: 429, 500 or 503
    ops = stack.ops
    f = fi()
    ops.open("/g.bin", f)
    with pytest.raises(OSError) as info:
        ops.read("/g.bin", 4096, 0, f)
    # 500 is EIO, 429/503 (still throttled) EAGAIN; the reader's own deadline is EIO too
    assert info.value.errno in (errno.EIO, errno.EAGAIN), errno.errorcode.get(info.value.errno)
    ops.release("/g.bin", f)
    drive_server.faults.configure(error_rate=0.0)
    assert read_file(stack, "/g.bin") == pattern(5 * MiB, 2)
