"""The page-cache rules of the handle table: keep_cache only for pages of one content version, and
direct_io for a file opened while files of another version are still open on the inode (QA F6)."""

from __future__ import annotations

from acdfuse.fs.handles import HandleTable, OpenFile, OpenMode

INO = 42


def entry(key: str) -> OpenFile:
    return OpenFile("node", key, object(), INO)


def test_same_content_keeps_the_page_cache_a_new_one_drops_it() -> None:
    table = HandleTable()
    fh, mode = table.add_file(entry("k1"))
    assert mode == OpenMode(keep_cache=False, direct_io=False)   # nothing known of the kernel's pages
    table.note_read(table.file(fh))  # type: ignore[arg-type]
    table.pop_file(fh)
    assert table.add_file(entry("k1"))[1] == OpenMode(keep_cache=True, direct_io=False)
    assert table.add_file(entry("k2"))[1].keep_cache is False


def test_a_new_version_opened_while_the_old_is_open_bypasses_the_page_cache() -> None:
    table = HandleTable()
    old, _ = table.add_file(entry("v3"))
    new, mode = table.add_file(entry("v2"))
    assert mode == OpenMode(keep_cache=False, direct_io=True)
    assert table.file(new).direct  # type: ignore[union-attr]
    table.note_read(table.file(old))  # type: ignore[arg-type]
    table.note_read(table.file(new))  # type: ignore[arg-type]
    table.pop_file(old)
    table.pop_file(new)
    # back to v3's md5: a v2 read happened since the pages were dropped, so they go again
    assert table.add_file(entry("v3"))[1] == OpenMode(keep_cache=False, direct_io=False)


def test_the_old_versions_pages_are_kept_for_its_own_reopen() -> None:
    table = HandleTable()
    old, _ = table.add_file(entry("v3"))
    table.note_read(table.file(old))  # type: ignore[arg-type]
    _, mode = table.add_file(entry("v2"))          # direct: fills no pages
    assert mode.direct_io
    # another open of the old version: the pages hold v3 only
    assert table.add_file(entry("v3"))[1] == OpenMode(keep_cache=True, direct_io=False)


def test_forget_content_drops_the_pages_at_the_next_open() -> None:
    table = HandleTable()
    fh, _ = table.add_file(entry("k"))
    table.pop_file(fh)
    table.forget_content(INO)
    assert table.add_file(entry("k"))[1].keep_cache is False
