"""Stat results from stored POSIX records (fs/attrs.py ``node_attrs``/``entry_mode``), no kernel."""

from __future__ import annotations

import stat

from acdfuse.fs.attrs import Ownership, entry_mode, node_attrs
from acdfuse.store import Node

OWNER = Ownership(1000, 100, 0o022)


def node(kind: str = "FILE", posix: str | None = None, content_version: int = 3) -> Node:
    return Node(id="n" * 22, name="f", kind=kind, status="AVAILABLE", parents=("r" * 22,), size=12,
                md5="0" * 32, content_version=content_version, version=5, created=1.0,
                modified=1_700_000_000.123, ino=9, is_root=False, posix=posix)


def test_defaults_without_a_record() -> None:
    st = node_attrs(node(), OWNER)
    assert st["st_mode"] == stat.S_IFREG | 0o444 and (st["st_uid"], st["st_gid"]) == (1000, 100)
    assert st["st_mtime"] == st["st_atime"] == st["st_ctime"] == 1_700_000_000_123_000_000
    d = node_attrs(node("FOLDER"), Ownership(1000, 100, 0o022, writable=True))
    assert d["st_mode"] == stat.S_IFDIR | 0o755 and d["st_size"] == 0


def test_record_overrides_the_defaults() -> None:
    st = node_attrs(node(posix="a1;m100750;u0;g5;t1600000000987654321;c3"), OWNER)
    assert st["st_mode"] == stat.S_IFREG | 0o750 and (st["st_uid"], st["st_gid"]) == (0, 5)
    assert st["st_mtime"] == st["st_atime"] == 1_600_000_000_987_654_321
    assert st["st_ctime"] == st["st_mtime"]              # no change time in the record: the mtime
    # a record changed after the mtime: that time is the ctime
    st = node_attrs(node(posix="a1;m100750;t1600000000987654321;c3;k1650000000000000001"), OWNER)
    assert st["st_ctime"] == 1_650_000_000_000_000_001 and st["st_mtime"] == 1_600_000_000_987_654_321
    st = node_attrs(node(posix="a1;t1600000000987654321;c3;k1"), OWNER)
    assert st["st_ctime"] == 1_600_000_000_987_654_321
    # partial records keep the other defaults
    st = node_attrs(node(posix="a1;u7"), OWNER)
    assert st["st_mode"] == stat.S_IFREG | 0o444 and st["st_uid"] == 7 and st["st_gid"] == 100


def test_mtime_of_older_content_is_not_shown() -> None:
    st = node_attrs(node(posix="a1;m100600;t5;c2", content_version=3), OWNER)
    assert st["st_mtime"] == 1_700_000_000_123_000_000 and st["st_mode"] & 0o777 == 0o600
    # a folder's mtime is not bound to content
    assert node_attrs(node("FOLDER", posix="a1;t5"), OWNER)["st_mtime"] == 5


def test_symlinks_and_types() -> None:
    link = node(posix="a1;m120777;lsome/where")
    st = node_attrs(link, OWNER)
    assert stat.S_ISLNK(st["st_mode"]) and st["st_size"] == 12
    assert entry_mode(link, 1, 2) == stat.S_IFLNK | 0o777
    # a type that contradicts the node's kind is ignored: only the permissions count
    st = node_attrs(node("FOLDER", posix="a1;m100700"), OWNER)
    assert st["st_mode"] == stat.S_IFDIR | 0o700
    st = node_attrs(node("FOLDER", posix="a1;m120777"), OWNER)
    assert stat.S_ISDIR(st["st_mode"])
    assert entry_mode(node("FOLDER", posix="a1;m120777"), 1, 2) == 1 and entry_mode(node(), 1, 2) == 2


def test_damaged_or_foreign_records_give_defaults() -> None:
    for value in ("junk", "a9;m100777", "a1;mZZ"):
        assert node_attrs(node(posix=value), OWNER) == node_attrs(node(), OWNER)
