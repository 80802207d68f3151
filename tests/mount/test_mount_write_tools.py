"""Real tools on a real writable mount: cp, rsync, tar, git, sqlite3, an editor's save, mmap.

Every test checks what it wrote again after a remount with an empty cache, so the bytes came from
the server, not from this mount's spools or caches.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount
from write_helpers import make_tree, same_tree, wait_uploaded, write_file

pytestmark = pytest.mark.mount


def run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def writable(cdir: Path, mounts: Any) -> Mount:
    # cdir (the server) first: set up before the mounts, so it stops after them and they can finish
    # their uploads on the way out
    return mounts(cdir, name="mnt", cache="cache").start("--upload-delay", "0.5")


def fresh_view(mounts: Any, cdir: Path, first: Mount, tag: str = "fresh") -> Mount:
    """Unmount ``first`` (its uploads finish first) and mount the drive again with an empty cache."""
    wait_uploaded(first.cache_dir)
    first.stop()
    return mounts(cdir, name=f"mnt-{tag}", cache=f"cache-{tag}").start()


def test_cp_a_in_and_out(writable: Mount, mounts: Any, cdir: Path, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    run("cp", "-a", str(src), str(writable.mnt / "tree"))
    assert same_tree(src, writable.mnt / "tree") == []
    run("cp", "-a", str(writable.mnt / "tree"), str(tmp_path / "out"))
    assert same_tree(src, tmp_path / "out") == []
    again = fresh_view(mounts, cdir, writable)
    assert same_tree(src, again.mnt / "tree") == []
    run("diff", "-r", str(src), str(again.mnt / "tree"))


def test_rsync_a_twice(writable: Mount, mounts: Any, cdir: Path, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", seed=1)
    run("rsync", "-a", f"{src}/", f"{writable.mnt}/r/")
    assert same_tree(src, writable.mnt / "r") == []
    # POSIX mtimes are not stored yet (the attrs work), so the second `rsync -a` would compare
    # times; compared by content, nothing is left to send
    out = run("rsync", "-a", "--checksum", "--stats", f"{src}/", f"{writable.mnt}/r/")
    assert "Number of regular files transferred: 0" in out, out
    again = fresh_view(mounts, cdir, writable)
    assert same_tree(src, again.mnt / "r") == []


def test_tar_round_trip(writable: Mount, mounts: Any, cdir: Path, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", seed=2)
    archive = tmp_path / "src.tar"
    run("tar", "-C", str(src), "-cf", str(archive), ".")
    (writable.mnt / "untar").mkdir()
    run("tar", "-C", str(writable.mnt / "untar"), "-xf", str(archive))
    assert same_tree(src, writable.mnt / "untar") == []
    run("tar", "-C", str(writable.mnt / "untar"), "-cf", str(writable.mnt / "back.tar"), ".")
    (tmp_path / "back").mkdir()
    run("tar", "-C", str(tmp_path / "back"), "-xf", str(writable.mnt / "back.tar"))
    assert same_tree(src, tmp_path / "back") == []
    again = fresh_view(mounts, cdir, writable)
    assert same_tree(src, again.mnt / "untar") == []


def git(*args: str, cwd: Path) -> str:
    return run("git", "-c", "user.email=t@example.com", "-c", "user.name=test", "-c", "init.defaultBranch=main",
               *args, cwd=cwd)


def test_git_init_commit_fsck_and_clone(writable: Mount, mounts: Any, cdir: Path, tmp_path: Path) -> None:
    repo = writable.mnt / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    for i in range(5):
        (repo / f"file{i}.txt").write_text(f"content {i}\n" * (i + 1))
        git("add", ".", cwd=repo)
        git("commit", "-q", "-m", f"commit {i}", cwd=repo)
    git("fsck", "--strict", cwd=repo)
    assert git("status", "--porcelain", cwd=repo) == ""
    # a clone from local disk onto the mount
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "-q", cwd=origin)
    make_tree(origin / "tree", seed=3)
    (origin / "tree" / "empty-dir").rmdir()     # git keeps no empty folders
    git("add", ".", cwd=origin)
    git("commit", "-q", "-m", "tree", cwd=origin)
    git("clone", "-q", str(origin), str(writable.mnt / "clone"), cwd=tmp_path)
    git("fsck", "--strict", cwd=writable.mnt / "clone")
    again = fresh_view(mounts, cdir, writable)
    git("fsck", "--strict", cwd=again.mnt / "repo")
    assert git("log", "--format=%s", cwd=again.mnt / "repo").split() == [
        "commit", "4", "commit", "3", "commit", "2", "commit", "1", "commit", "0"]
    git("fsck", "--strict", cwd=again.mnt / "clone")
    assert same_tree(origin / "tree", again.mnt / "clone" / "tree") == []


def test_sqlite_thousands_of_inserts(writable: Mount, mounts: Any, cdir: Path) -> None:
    db = writable.mnt / "data.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, blob BLOB)")
    for batch in range(10):
        with con:
            con.executemany("INSERT INTO t (name, blob) VALUES (?, ?)",
                            [(f"row {batch}-{i}", os.urandom(100)) for i in range(500)])
    for i in range(50):                       # commits one by one, each fsynced
        with con:
            con.execute("INSERT INTO t (name) VALUES (?)", (f"single {i}",))
    con.close()
    again = fresh_view(mounts, cdir, writable)
    con = sqlite3.connect(again.mnt / "data.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 5050
    finally:
        con.close()
    assert not (again.mnt / "data.sqlite-journal").exists()


def test_save_by_temp_file_and_rename(writable: Mount, mounts: Any, cdir: Path) -> None:
    doc = writable.mnt / "doc.txt"
    write_file(doc, b"version 1\n")
    wait_uploaded(writable.cache_dir)
    ino = doc.stat().st_ino
    for version in range(2, 5):
        tmp = writable.mnt / ".doc.txt.tmp"
        write_file(tmp, f"version {version}\n".encode(), fsync=True)
        os.rename(tmp, doc)
        assert doc.read_bytes() == f"version {version}\n".encode()
        assert sorted(os.listdir(writable.mnt)) == ["doc.txt"]
    again = fresh_view(mounts, cdir, writable)
    assert (again.mnt / "doc.txt").read_bytes() == b"version 4\n"
    assert sorted(os.listdir(again.mnt)) == ["doc.txt"]
    del ino


MMAP_WRITER = """
import mmap, sys
with open(sys.argv[1], "r+b") as f:
    with mmap.mmap(f.fileno(), 0) as m:
        m[100:105] = b"hello"
        m[60000:60005] = b"world"
        m.flush()
"""


def test_shared_mmap_writes(writable: Mount, mounts: Any, cdir: Path) -> None:
    path = writable.mnt / "mapped.bin"
    write_file(path, bytes(64 * 1024))
    # in a child: msync holds the GIL while the mount uploads to the server running in this process
    run(sys.executable, "-c", MMAP_WRITER, str(path))
    data = path.read_bytes()
    assert data[100:105] == b"hello" and data[60000:60005] == b"world"
    again = fresh_view(mounts, cdir, writable)
    data = (again.mnt / "mapped.bin").read_bytes()
    assert len(data) == 64 * 1024 and data[100:105] == b"hello" and data[60000:60005] == b"world"


def test_create_exclusive_append_and_truncate(writable: Mount, mounts: Any, cdir: Path) -> None:
    path = writable.mnt / "x.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"one\n")
    os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"two\n")
    os.close(fd)
    with open(path, "r+b") as f:
        f.truncate(3)
        f.truncate(10)                        # sparse: zeros
    assert path.read_bytes() == b"one" + bytes(7)
    os.truncate(path, 2)
    assert path.read_bytes() == b"on"
    again = fresh_view(mounts, cdir, writable)
    assert (again.mnt / "x.log").read_bytes() == b"on"


def test_case_clash_bad_names_and_folders(writable: Mount) -> None:
    (writable.mnt / "Readme.md").write_text("x")
    with pytest.raises(FileExistsError):
        (writable.mnt / "README.md").write_text("y")
    with pytest.raises(OSError) as info:
        (writable.mnt / ("n" * 256)).write_text("long")
    assert info.value.errno == errno.ENAMETOOLONG
    bad = os.fsencode(str(writable.mnt)) + b"/caf\xe9"
    with pytest.raises(OSError) as info:
        os.close(os.open(bad, os.O_WRONLY | os.O_CREAT, 0o644))
    assert info.value.errno == errno.EINVAL
    (writable.mnt / "d" / "e").mkdir(parents=True)
    (writable.mnt / "d" / "e" / "f").write_text("f")
    with pytest.raises(OSError) as info:
        os.rmdir(writable.mnt / "d" / "e")
    assert info.value.errno == errno.ENOTEMPTY
    shutil.rmtree(writable.mnt / "d")
    assert not (writable.mnt / "d").exists()


def test_read_only_mount_refuses_every_change(cdir: Path, mounts: Any, client: Any) -> None:
    import io

    client.upload_stream(io.BytesIO(b"x"), "f.txt")
    m = mounts(cdir).start("--read-only")
    table = Path("/proc/self/mounts").read_text()
    line = next(ln for ln in table.splitlines() if f" {m.mnt} " in ln)
    assert " ro," in line or line.split()[3].startswith("ro")
    for attempt in (lambda: (m.mnt / "new").write_text("x"), lambda: (m.mnt / "d").mkdir(),
                    lambda: os.unlink(m.mnt / "f.txt"), lambda: open(m.mnt / "f.txt", "ab").close()):
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS
    assert (m.mnt / "f.txt").read_bytes() == b"x"
