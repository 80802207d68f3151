"""The XDG base directories, read from the environment once, at the command line edge.

Only ``acdfuse.cli`` calls ``XdgDirs.from_environ``; everything below gets the resolved paths (the
client's policy for them is ``acdfuse.runtime.paths``, the server's default data dir is in its command).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class XdgDirs:
    data_home: Path              # $XDG_DATA_HOME, else ~/.local/share
    config_home: Path            # $XDG_CONFIG_HOME, else ~/.config
    cache_home: Path             # $XDG_CACHE_HOME, else ~/.cache
    runtime_dir: Path | None     # $XDG_RUNTIME_DIR; None when unset (the caller picks a fallback)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], home: Path) -> XdgDirs:
        def base(var: str, fallback: str) -> Path:
            value = environ.get(var)
            return Path(value) if value else home / fallback

        runtime = environ.get("XDG_RUNTIME_DIR")
        return cls(data_home=base("XDG_DATA_HOME", ".local/share"),
                   config_home=base("XDG_CONFIG_HOME", ".config"),
                   cache_home=base("XDG_CACHE_HOME", ".cache"),
                   runtime_dir=Path(runtime) if runtime else None)
