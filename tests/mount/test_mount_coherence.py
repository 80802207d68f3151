"""Coherence with long kernel cache timeouts: what a sync changed is seen at once, however long the kernel
may keep entries, negative entries and attributes (issue 13).

Every test mounts with hour-long timeouts, fills the kernel's caches first (stat, listings, misses, an
open file), then changes the drive through the API. The kernel would show the old state for an hour;
only the invalidation that follows each sync (fs/kernelcache.py) makes the new state visible.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount, pattern, upload

pytestmark = pytest.mark.mount

HOUR = "attr_timeout=3600,entry_timeout=3600,negative_timeout=3600"


def gone(path: Path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    return False


def warm(mnt: Path, *paths: str) -> None:
    """Fill the kernel's caches: every entry looked up, every folder listed, misses remembered."""
    for rel in paths:
        p = mnt / rel
        if gone(p):
            continue
        if p.is_dir():
            os.listdir(p)


@pytest.fixture
def drive(client: Any) -> dict[str, Any]:
    docs = client.create_folder("docs")
    sub = client.create_folder("sub", docs["id"])
    return {
        "docs": docs,
        "sub": sub,
        "a": upload(client, "a.txt", pattern(1000, 1), docs["id"]),
        "c": upload(client, "c.txt", b"deep\n", sub["id"]),
        "old": upload(client, "old.txt", b"old name\n"),
        "doomed": upload(client, "doomed.txt", b"bye\n"),
        "held": upload(client, "held.txt", b"short\n"),
    }


def test_server_changes_are_seen_after_the_next_sync(mount: Mount, client: Any,
                                                     drive: dict[str, Any]) -> None:
    mount.start("-o", HOUR)
    mnt = mount.mnt
    warm(mnt, ".", "docs", "docs/sub")
    for rel in ("docs/a.txt", "docs/sub/c.txt", "old.txt", "doomed.txt"):
        os.stat(mnt / rel)
    for rel in ("new.txt", "renamed.txt", "docs2", "docs/new-in-folder.txt"):
        assert gone(mnt / rel)                       # the kernel now remembers these misses
    assert (mnt / "docs" / "a.txt").read_bytes() == pattern(1000, 1)
    held = os.open(mnt / "held.txt", os.O_RDONLY)
    assert os.fstat(held).st_size == 6
    try:
        # new content (another size), a rename, a deletion, new files where misses are remembered,
        # and a folder renamed with its cached subtree
        client.overwrite_stream(io.BytesIO(pattern(3000, 2)), drive["a"]["id"])
        client.overwrite_stream(io.BytesIO(b"longer now\n"), drive["held"]["id"])
        client.rename_node(drive["old"]["id"], "renamed.txt")
        client.move_to_trash(drive["doomed"]["id"])
        upload(client, "new.txt", b"new\n")
        upload(client, "new-in-folder.txt", b"in docs\n", drive["docs"]["id"])
        client.rename_node(drive["docs"]["id"], "docs2")

        def all_seen() -> bool:
            return (os.stat(mnt / "docs2" / "a.txt").st_size == 3000
                    and gone(mnt / "old.txt") and (mnt / "renamed.txt").read_bytes() == b"old name\n"
                    and gone(mnt / "doomed.txt")
                    and (mnt / "new.txt").read_bytes() == b"new\n"
                    and gone(mnt / "docs") and gone(mnt / "docs" / "sub" / "c.txt")
                    and (mnt / "docs2" / "sub" / "c.txt").read_bytes() == b"deep\n"
                    and (mnt / "docs2" / "new-in-folder.txt").exists())

        mount.sync(check=all_seen)
        assert (mnt / "docs2" / "a.txt").read_bytes() == pattern(3000, 2)
        assert sorted(os.listdir(mnt)) == ["docs2", "held.txt", "new.txt", "renamed.txt"]
        assert sorted(os.listdir(mnt / "docs2")) == ["a.txt", "new-in-folder.txt", "sub"]
        # a file held open across a change of its content: its attributes are the new ones too
        assert os.fstat(held).st_size == 11
    finally:
        os.close(held)


def test_the_timer_sync_shows_changes_within_an_interval(mounts: Any, cdir: Path, client: Any,
                                                         drive: dict[str, Any]) -> None:
    """No signal: the timer's sync (every second here) makes a change visible despite hour-long caching."""
    m = mounts(cdir).start("-o", HOUR, "--interval", "1")
    mnt = m.mnt
    os.stat(mnt / "old.txt")
    assert gone(mnt / "fresh.txt")
    client.rename_node(drive["old"]["id"], "fresh.txt")
    deadline = time.monotonic() + 30
    while not (gone(mnt / "old.txt") and (mnt / "fresh.txt").exists()):
        assert time.monotonic() < deadline, "the rename never showed up through the mount"
        time.sleep(0.1)


def test_a_folder_changed_in_place_stays_a_working_directory(mount: Mount, client: Any,
                                                             drive: dict[str, Any]) -> None:
    """A folder whose node changed but not its place (a property here) keeps its entry: a process
    working in it still knows where it is, as it would after a timeout ran out."""
    mount.start("-o", HOUR)
    mnt = mount.mnt
    script = ("import os, sys; os.chdir(sys.argv[1]); print('in', flush=True); sys.stdin.readline(); "
              "print(os.getcwd(), flush=True)")
    inside = subprocess.Popen([sys.executable, "-c", script, str(mnt / "docs")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert inside.stdout is not None and inside.stdout.readline() == "in\n"
        os.stat(mnt / "held.txt")
        client.add_property(drive["docs"]["id"], client.get_owner_id(), "color", "blue")
        client.overwrite_stream(io.BytesIO(b"changed\n"), drive["held"]["id"])
        # the same sync brought both; nothing walks through docs before the working directory is asked
        # (a lookup would put a dropped entry back)
        mount.sync(check=lambda: os.stat(mnt / "held.txt").st_size == 8)
        out, _ = inside.communicate("go\n", timeout=30)
        assert out.strip() == str(mnt / "docs")
    finally:
        if inside.poll() is None:
            inside.kill()
            inside.wait()
