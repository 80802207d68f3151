"""The mount's settings, built once at the command line edge and passed down unchanged."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Options:
    mountpoint: Path
    config_dir: Path
    cache_dir: Path
    foreground: bool = False
    read_only: bool = False
    interval: float = 60.0           # seconds between background syncs
    allow_other: bool = False
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    fuse_options: tuple[str, ...] = ()     # extra "-o" options, passed to libfuse as given
    memory_cache: int = 256 * MiB
    cache_size: int = 4 * GiB
    read_ahead: int = 64 * MiB
    streams: int = 4
    timeout: float = 30.0
    debug: bool = False
    # kernel attribute/entry cache lifetime: short, so a synced change shows up quickly, yet long enough
    # that a warm `ls -lR` is answered by the kernel
    attr_timeout: float = 1.0
    quota_interval: float = 300.0    # statfs is refreshed this often, never per call
    embedded: bool = False           # the bundled server was started for this mount

    @property
    def log_file(self) -> Path:
        return self.cache_dir / "acdfuse.log"

    @property
    def db_path(self) -> Path:
        return self.cache_dir / "nodes.db"

    @property
    def chunk_dir(self) -> Path:
        return self.cache_dir / "chunks"
