"""Tunables of the content read path, built once at the CLI edge and passed down unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class ReaderOptions:
    """Budgets and limits of a :class:`~acdfuse.vfs.ContentReader`.

    ``cache_dir`` holds the disk tier (``None`` means memory only).  ``memory_cache`` and
    ``cache_size`` are byte budgets of the two tiers; ``read_ahead`` is the largest window one
    sequential reader may run ahead; ``read_ahead_budget`` bounds the bytes of all read-ahead
    chunks in flight or waiting for the disk tier together, whatever the number of open files
    (the stat ``readahead_inflight_bytes`` counts both); ``streams`` is how many
    read-ahead range requests run concurrently; ``timeout`` is how long one ``read`` may wait
    before it fails with EIO.
    """

    cache_dir: Path | None = None
    # the defaults of a mount too (runtime/options.py takes them from here)
    memory_cache: int = 256 * MiB
    cache_size: int = 4 * GiB
    # Unit of the caches and of one disk-tier file.  Large: every chunk file costs an inode allocation,
    # a crc pass and a write call, and on a fast link those, not the bytes, bound a cold read
    # (1 GiB cold through the mount: 1 MiB chunks ~440 MiB/s, 8 MiB chunks ~650 MiB/s).  But the
    # read-ahead window is counted in whole chunks, so large chunks ramp a slow link up late: with a
    # 16 MiB/s per-connection cap, 8 MiB chunks gave 2.69x the single-stream rate, 4 MiB 3.38x and
    # 2 MiB 3.77x, while cold uncapped reads were 0.37x / 0.35x / 0.33x the minimal FUSE FS
    # (scripts/bench_read.py --only capped,cold --runs 3, same hour).  4 MiB keeps both.  A random
    # read fetches the whole chunk it touches.
    chunk_size: int = 4 * MiB
    read_ahead: int = 64 * MiB
    streams: int = 4
    read_ahead_budget: int = 128 * MiB
    timeout: float = 30.0
    # Largest single range request; read-ahead joins adjacent chunks up to this size because each
    # HTTP request costs far more Python time than the bytes it carries on a fast link.
    request_size: int = 8 * MiB
    # Workers beyond ``streams`` kept free for reads the caller is waiting on.
    demand_workers: int = 2
    # Window a sequential reader starts with; it doubles up to ``read_ahead``.
    initial_window: int = 1 * MiB
    # The first read of an open file, when it lies in the file's first ``head_size`` bytes, fetches only
    # those bytes rather than the whole first chunk, and starts no read-ahead: a file manager's
    # thumbnailer or a previewer reads the first few KiB of many files (a folder of 1,000 photos of
    # 256 KiB: 128 KiB each rather than whole files, scripts/bench_thumbnails.py). The head is kept in
    # memory (``head_count`` of them), and a later fetch of the first chunk fetches only the rest.
    # 128 KiB: one kernel read request, what the kernel asks first for a small read. 0 turns it off.
    head_size: int = 128 * 1024
    head_count: int = 256
    # Fetched chunks waiting to be written to the disk tier (memory they may hold beyond
    # ``memory_cache``).  When it is full, fetches wait for the disk, so every chunk read is cached
    # and a re-read after a restart needs no network; ``disk_skip_when_full`` skips the disk instead
    # (reads keep the network's pace when the disk is slower, e.g. a loopback server).
    disk_queue: int = 64 * MiB
    disk_skip_when_full: bool = False

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        if self.streams < 1 or self.demand_workers < 1:
            raise ValueError("streams and demand_workers must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        for name in ("memory_cache", "cache_size", "read_ahead", "read_ahead_budget", "disk_queue",
                     "head_size", "head_count"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.request_size < self.chunk_size:
            raise ValueError("request_size must be at least chunk_size")


# Amazon accepted about 50,000 MiB per file (acd-api.md section 11). Until the client reports its
# server's limit (``client.max_file_size``), this one constant is the limit a write is checked against.
DEFAULT_MAX_FILE_SIZE = 50_000 * MiB


@dataclass(frozen=True)
class WriteOptions:
    """Tunables of the write side (:class:`~acdfuse.vfs.writes.WriteSide`).

    ``upload_delay``: seconds of quiet after a file's last release before its upload starts (a file
    rewritten in that time is uploaded once; a temporary file deleted in it never). ``workers``: uploads
    running at once. ``retry_first``/``retry_cap``: back-off of failed uploads. ``max_file_size``: a
    write or truncate past it gets EFBIG at once. ``adopt_limit``: files up to this size go into the
    read cache as the new content right after their upload, so a re-read needs no download.
    """

    upload_delay: float = 3.0
    workers: int = 3
    retry_first: float = 2.0
    retry_cap: float = 300.0
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    # adopting costs a second local write of the bytes (crc + chunk files; a file of one chunk at most is
    # renamed into the cache instead): worth it for the small files that get re-read (sources,
    # databases), not for big ones a re-read may as well download
    adopt_limit: int = 64 * MiB
    # a file written front to back starts its upload at this size, while it is still being written
    # (vfs/stream.py); 0 turns that off
    stream_min: int = 16 * MiB
    # ... and gives that up (uploading after the close instead) when no write came for this long
    stream_stall: float = 5.0

    def __post_init__(self) -> None:
        if self.upload_delay < 0:
            raise ValueError("upload_delay must not be negative")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.retry_first <= 0 or self.retry_cap < self.retry_first:
            raise ValueError("retry_first must be positive and at most retry_cap")
        if self.stream_min < 0:
            raise ValueError("stream_min must not be negative")
        if self.max_file_size <= 0:
            raise ValueError("max_file_size must be positive")
