"""The mount's settings, built once at the command line edge and passed down unchanged.

Each default is defined once: the read path's budgets are ``ReaderOptions``' own defaults, everything
else is defined here, and the command line takes its defaults (and their help texts) from this class.
Paths arrive resolved: nothing below the command line reads the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from acdfuse.runtime.paths import EmbeddedPaths
from acdfuse.vfs import ReaderOptions
from acdfuse.vfs.options import WriteOptions

_READER = ReaderOptions     # its class attributes are its field defaults
_WRITER = WriteOptions


@dataclass(frozen=True)
class Options:
    mountpoint: Path
    config_dir: Path
    cache_dir: Path
    run_dir: Path                        # pid and lock files of the mounts (see runtime/pidfiles.py)
    foreground: bool = False
    # "ro" in the mount table and every change refused with EROFS; without it the mount is writable
    read_only: bool = False
    # seconds of quiet after a file's last close before its upload starts (vfs/options.py)
    upload_delay: float = _WRITER.upload_delay
    interval: float = 60.0               # seconds between background syncs
    allow_other: bool = False
    # mount over a folder with files in it (hidden while mounted); refused without it, so a typo'd
    # mount point does not silently hide a folder's files
    nonempty: bool = False
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    fuse_options: tuple[str, ...] = ()   # extra "-o" options, passed to libfuse as given
    memory_cache: int = _READER.memory_cache
    cache_size: int = _READER.cache_size
    read_ahead: int = _READER.read_ahead
    streams: int = _READER.streams
    timeout: float = _READER.timeout     # an uncached read fails after this; also the client's deadline
    debug: bool = False
    # how long the kernel may keep entries, misses and attributes without asking: long, so a repeated
    # find, ls -l or git status is answered by the kernel; exact all the same, since every sync tells
    # the kernel what it changed (fs/kernelcache.py)
    attr_timeout: float = 3600.0
    quota_interval: float = 300.0        # statfs is refreshed this often, never per call
    embedded: EmbeddedPaths | None = None   # the bundled server this mount starts or joins, if any

    @property
    def log_file(self) -> Path:
        return self.cache_dir / "acdfuse.log"

    @property
    def db_path(self) -> Path:
        return self.cache_dir / "nodes.db"

    @property
    def chunk_dir(self) -> Path:
        return self.cache_dir / "chunks"

    @property
    def journal_path(self) -> Path:
        """The write journal: the only record of changes not uploaded yet (store/journal.py)."""
        return self.cache_dir / "journal.db"

    @property
    def spool_dir(self) -> Path:
        return self.cache_dir / "spool"

    def write_options(self) -> WriteOptions:
        """The write side's settings: the mount's upload delay, the rest at their defaults."""
        return WriteOptions(upload_delay=self.upload_delay)

    def reader_options(self) -> ReaderOptions:
        """The content reader's settings: the mount's budgets, the rest at their defaults."""
        return ReaderOptions(cache_dir=self.chunk_dir, memory_cache=self.memory_cache,
                             cache_size=self.cache_size, read_ahead=self.read_ahead,
                             streams=self.streams, timeout=self.timeout)
