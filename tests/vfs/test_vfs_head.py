"""The first read of a file near its start fetches only the file's head (thumbnailers and previewers read
the first bytes of many files); reading on fetches the rest of the first chunk, never the head again."""

from __future__ import annotations

from vfs_helpers import KiB, MemoryDrive, MiB, ReaderFactory, pattern, read_all


def test_a_first_small_read_fetches_the_head_only(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    size = 3 * MiB
    data = pattern(size, seed=5)
    drive.add("photo", data)
    reader = make_reader(drive, chunk_size=1 * MiB, request_size=4 * MiB, head_size=128 * KiB)
    fh = reader.open("photo", "k", size)
    assert reader.read(fh, 0, 64 * KiB) == data[:64 * KiB]
    assert reader.read(fh, 64 * KiB, 64 * KiB) == data[64 * KiB:128 * KiB]     # the kernel's second request
    assert drive.calls_for("photo") == [(0, 128 * KiB)]                        # and no read-ahead
    reader.release(fh)
    again = reader.open("photo", "k", size)                                    # the next thumbnail look
    assert reader.read(again, 0, 128 * KiB) == data[:128 * KiB]
    assert drive.calls_for("photo") == [(0, 128 * KiB)]
    assert read_all(reader, again, size) == data                               # then opened for real
    calls = drive.calls_for("photo")
    assert calls[:2] == [(0, 128 * KiB), (128 * KiB, 1 * MiB - 128 * KiB)]
    assert sum(length for _, length in calls) == size                          # every byte once
    assert reader.stats()["head_fetches"] == 1


def test_small_files_and_later_reads_fetch_whole_chunks(drive: MemoryDrive, make_reader: ReaderFactory) -> None:
    drive.add("small", pattern(100 * KiB))
    drive.add("big", pattern(2 * MiB, seed=1))
    reader = make_reader(drive, chunk_size=1 * MiB, request_size=4 * MiB, head_size=128 * KiB)
    small = reader.open("small", "k", 100 * KiB)
    assert reader.read(small, 0, 4 * KiB) == pattern(100 * KiB)[:4 * KiB]
    assert drive.calls_for("small") == [(0, 100 * KiB)]          # no smaller than its one chunk
    big = reader.open("big", "k", 2 * MiB)
    assert reader.read(big, 1 * MiB, 4 * KiB) == pattern(2 * MiB, seed=1)[1 * MiB:1 * MiB + 4 * KiB]
    assert drive.calls_for("big")[0] == (1 * MiB, 1 * MiB)       # outside the head: the chunk as ever
