"""The write side below FUSE: writes at any offset, truncates, read-your-writes, shared spools, and
fetching base content only when it is needed. Real server, real store, real reader."""

from __future__ import annotations

import errno

import pytest
from vfs_helpers import pattern
from writes_helpers import KiB, MiB, WriteStack, leftover_spools, wait_until

from acdfuse.store import Node
from acdfuse.vfs.options import WriteOptions


def test_new_file_is_uploaded_with_its_reserved_inode(wstack: WriteStack) -> None:
    data = pattern(300 * KiB, seed=1)
    pending = wstack.write_file("new.bin", data)
    assert pending.id.startswith("local:")
    assert pending.size == len(data)
    assert wstack.w.wait_uploads(20)
    node = wstack.node("/new.bin")
    assert not node.id.startswith("local:")
    assert node.ino == pending.ino                 # st_ino stays across the upload
    assert node.size == len(data)
    assert wstack.server_bytes(node.id) == data
    assert wstack.w.lookup_pending(wstack.root.id, "new.bin") is None
    assert leftover_spools(wstack.cache) == []       # spool gone once confirmed
    assert wstack.w.pending_stats()["files"] == 0


def test_empty_new_file_is_uploaded(wstack: WriteStack) -> None:
    h = wstack.w.create(wstack.root.id, "empty")
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    node = wstack.node("/empty")
    assert node.size == 0
    assert node.md5 == "d41d8cd98f00b204e9800998ecf8427e"


def test_writes_at_any_offset_leave_zeros_in_holes(wstack: WriteStack) -> None:
    w = wstack.w
    h = w.create(wstack.root.id, "sparse")
    w.write(h, 1 * MiB, b"tail")
    w.write(h, 10, b"head")
    w.write(h, 12, b"XY")          # overlapping rewrite
    expect = bytearray(1 * MiB + 4)
    expect[10:14] = b"heXY"
    expect[1 * MiB:] = b"tail"
    assert wstack.read_all(h) == bytes(expect)
    w.release(h)
    assert w.wait_uploads(20)
    assert wstack.server_bytes(wstack.node("/sparse").id) == bytes(expect)


def test_partial_write_of_existing_file_fetches_the_rest_only_at_upload(wstack: WriteStack) -> None:
    base = pattern(1 * MiB + 77, seed=2)
    node = wstack.upload("existing.bin", base)
    downloads = wstack.stats()["download"]
    h = wstack.w.open(node, write=True)
    assert h is not None
    wstack.w.write(h, 1000, b"patched!")
    assert wstack.stats()["download"] == downloads          # a write needs no base bytes
    assert wstack.w.read(h, 1000, 8) == b"patched!"
    assert wstack.stats()["download"] == downloads          # nor a read of what was written
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    expect = base[:1000] + b"patched!" + base[1008:]
    after = wstack.node("/existing.bin")
    assert after.id == node.id and after.ino == node.ino
    assert after.content_version == node.content_version + 1
    assert wstack.server_bytes(node.id) == expect
    assert wstack.stats()["download"] > downloads           # the rest came from the server for the upload


def test_o_trunc_rewrite_downloads_nothing(wstack: WriteStack) -> None:
    node = wstack.upload("rewrite.txt", pattern(2 * MiB, seed=3))
    before = wstack.stats()["download"]
    h = wstack.w.open(node, write=True, truncate=True)
    assert h is not None
    wstack.w.write(h, 0, b"short")
    assert wstack.read_all(h) == b"short"
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    assert wstack.stats()["download"] == before
    assert wstack.server_bytes(node.id) == b"short"


def test_writes_covering_every_byte_read_later_download_nothing(wstack: WriteStack) -> None:
    base = pattern(512 * KiB, seed=4)
    node = wstack.upload("cover.bin", base)
    before = wstack.stats()["download"]
    h = wstack.w.open(node, write=True)
    assert h is not None
    new = pattern(512 * KiB, seed=5)
    for off in range(0, len(new), 64 * KiB):
        wstack.w.write(h, off, new[off:off + 64 * KiB])
    assert wstack.read_all(h) == new
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    assert wstack.stats()["download"] == before
    assert wstack.server_bytes(node.id) == new


def test_read_of_unwritten_part_fetches_base_through_the_read_cache(wstack: WriteStack) -> None:
    base = pattern(256 * KiB, seed=6)
    node = wstack.upload("mixed.bin", base)
    h = wstack.w.open(node, write=True)
    assert h is not None
    wstack.w.write(h, 100, b"abc")
    assert wstack.w.read(h, 90, 20) == base[90:100] + b"abc" + base[103:110]
    assert wstack.read_all(h) == base[:100] + b"abc" + base[103:]
    assert wstack.w.stats["base_fetches"] >= 1
    wstack.w.release(h)


def test_o_append_writes_at_the_end_of_every_handle(wstack: WriteStack) -> None:
    node = wstack.upload("log.txt", b"line0\n")
    a = wstack.w.open(node, write=True, append=True)
    b = wstack.w.open(node, write=True, append=True)
    assert a is not None and b is not None
    wstack.w.write(a, 0, b"line1\n")      # the offset is ignored in append mode
    wstack.w.write(b, 0, b"line2\n")
    wstack.w.write(a, 3, b"line3\n")
    assert wstack.read_all(a) == b"line0\nline1\nline2\nline3\n"
    wstack.w.release(a)
    wstack.w.release(b)
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(node.id) == b"line0\nline1\nline2\nline3\n"


@pytest.mark.parametrize("sizes", [(100,), (5000,), (100, 5000), (0, 3000), (2 * MiB,)])
def test_truncate_smaller_larger_and_sparse(wstack: WriteStack, sizes: tuple[int, ...]) -> None:
    base = pattern(4096, seed=7)
    node = wstack.upload("trunc.bin", base)
    h = wstack.w.open(node, write=True)
    assert h is not None
    expect = bytearray(base)
    for size in sizes:
        wstack.w.truncate(h, size)
        if size < len(expect):
            del expect[size:]
        else:
            expect.extend(bytes(size - len(expect)))
        assert wstack.w.node_of(h).size == size
    assert wstack.read_all(h) == bytes(expect)
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(node.id) == bytes(expect)


def test_truncate_by_path_without_a_handle(wstack: WriteStack) -> None:
    node = wstack.upload("t.txt", b"0123456789")
    wstack.w.truncate_node(node, 4)
    assert wstack.w.overlay(node).size == 4
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(node.id) == b"0123"


def test_handles_share_one_spool(wstack: WriteStack) -> None:
    node = wstack.upload("shared.txt", b"aaaaaaaaaa")
    writer = wstack.w.open(node, write=True)
    reader = wstack.w.open(node, write=False)
    assert writer is not None and reader is not None
    assert reader.file is writer.file
    wstack.w.write(writer, 2, b"BB")
    assert wstack.w.read(reader, 0, 100) == b"aaBBaaaaaa"
    assert wstack.w.read_node(node.id, 0, 4) == b"aaBB"
    assert wstack.w.overlay(node).size == 10
    wstack.w.release(writer)
    wstack.w.release(reader)
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(node.id) == b"aaBBaaaaaa"


def test_read_only_open_of_clean_file_is_left_to_the_read_cache(wstack: WriteStack) -> None:
    node = wstack.upload("clean.txt", b"hello")
    assert wstack.w.open(node, write=False) is None


def _uploaded_and_reread(wstack: WriteStack, name: str, data: bytes) -> Node:
    """Wait for the upload of ``name`` (written with ``data``), and check that reading it back
    downloads nothing."""
    assert wstack.w.wait_uploads(20)
    node = wstack.node("/" + name)
    assert wstack.reader is not None
    before = wstack.stats()["download"]
    fh = wstack.reader.open(node.id, node.md5 or "", node.size)
    assert wstack.reader.read(fh, 0, node.size) == data
    wstack.reader.release(fh)
    assert wstack.stats()["download"] == before
    return node


def test_reread_after_upload_needs_no_download(wstack: WriteStack) -> None:
    data = pattern(200 * KiB, seed=8)
    wstack.write_file("reread.bin", data)
    _uploaded_and_reread(wstack, "reread.bin", data)
    assert wstack.reader is not None
    assert wstack.reader.stats()["adopted_chunks"] == 4


def test_a_small_uploaded_file_moves_its_spool_into_the_read_cache(wstack: WriteStack) -> None:
    # A file of one chunk at most: the spool file itself becomes the cached chunk (renamed, not copied),
    # so the upload of a small file leaves no new file behind and costs no second write of its bytes
    data = pattern(50 * KiB, seed=9)
    h = wstack.w.create(wstack.root.id, "small.bin")
    wstack.w.write(h, 0, data)
    spool_ino = (wstack.cache / "spool" / str(h.file.local_id)).stat().st_ino   # no upload while open
    wstack.w.release(h)
    _uploaded_and_reread(wstack, "small.bin", data)
    assert wstack.reader is not None
    assert wstack.reader.stats()["adopted_chunks"] == 1
    assert not [p for p in (wstack.cache / "spool").iterdir() if p.stat().st_size]   # the pool's empties
    chunks = list((wstack.cache / "chunks" / "chunks").glob("*.c"))
    assert [c.read_bytes() for c in chunks] == [data]
    assert chunks[0].stat().st_ino == spool_ino                                     # moved, not copied


def test_store_holds_the_answer_and_md5_matches(wstack: WriteStack) -> None:
    import hashlib

    data = b"x" * 12345
    wstack.write_file("md5.txt", data)
    assert wstack.w.wait_uploads(20)
    node = wstack.node("/md5.txt")
    assert node.md5 == hashlib.md5(data).hexdigest()
    assert node.size == len(data)


@pytest.fixture
def small_limit_opts() -> WriteOptions:
    return WriteOptions(upload_delay=0.2, retry_first=0.1, retry_cap=0.5, max_file_size=1 * MiB)


def test_write_or_truncate_past_the_size_limit_is_efbig(client, drive_server, tmp_path,  # type: ignore[no-untyped-def]
                                                         small_limit_opts: WriteOptions) -> None:
    stack = WriteStack(client, drive_server, tmp_path / "c", small_limit_opts).open()
    try:
        h = stack.w.create(stack.root.id, "big")
        stack.w.write(h, 0, b"x" * 1000)
        with pytest.raises(OSError) as info:
            stack.w.write(h, 1 * MiB - 10, b"y" * 11)
        assert info.value.errno == errno.EFBIG
        with pytest.raises(OSError) as info:
            stack.w.truncate(h, 1 * MiB + 1)
        assert info.value.errno == errno.EFBIG
        stack.w.write(h, 1 * MiB - 10, b"y" * 10)      # up to the limit is fine
        stack.w.release(h)
        assert stack.w.wait_uploads(20)
        assert stack.node("/big").size == 1 * MiB
    finally:
        stack.close()


def test_new_files_take_spool_files_made_ahead(wstack: WriteStack) -> None:
    spool_dir = wstack.cache / "spool"
    # wait for the whole batch (the pool's high mark): then no file is made after the snapshot, and
    # whichever one the create takes is in it
    wait_until(lambda: len(list(spool_dir.iterdir())) >= 256, what="spool files made ahead")
    ahead = {p.name for p in spool_dir.iterdir()}
    h = wstack.w.create(wstack.root.id, "fast.txt")
    assert h.file.spool.path.name in ahead          # no file created on the create's path
    wstack.w.write(h, 0, b"data")
    wstack.w.release(h)
    assert wstack.w.wait_uploads(20)
    assert wstack.server_bytes(wstack.node("/fast.txt").id) == b"data"
    # files made ahead and never used have no journal row: the next start removes them
    wstack.remount()
    wait_until(lambda: len(list(spool_dir.iterdir())) >= 64, what="spool files made ahead again")
    assert not ahead & {p.name for p in spool_dir.iterdir()} - {h.file.spool.path.name}
