"""Where the client keeps things: the XDG path policy of ``mount`` and ``umount``, resolved once.

``ClientDirs.from_xdg`` is called at the command line edge with the XDG base dirs read there; the
paths it gives go into Options (a mount) or straight to ``umount``. No module reads the environment.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from acdfuse.common.privdir import make_private_dir
from acdfuse.common.xdg import XdgDirs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedPaths:
    """The bundled drive's files under ``root`` ($XDG_DATA_HOME/acdfuse)."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "drive"

    @property
    def cdir(self) -> Path:
        return self.root / "credentials"

    @property
    def state(self) -> Path:
        return self.root / "server.json"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def lock(self) -> Path:
        return self.root / "server.lock"

    @property
    def users(self) -> Path:
        return self.root / "users"

    @property
    def port_file(self) -> Path:
        # outlives server.json (removed when the server stops): the next start reuses the port, so
        # client configs copied from the credentials dir keep working across mounts
        return self.root / "port"


@dataclass(frozen=True)
class ClientDirs:
    """The client's default places, from the XDG base dirs."""

    config_dir: Path          # the default client config dir: $XDG_CONFIG_HOME/acdfuse
    cache_root: Path          # one cache dir per drive below it: $XDG_CACHE_HOME/acdfuse
    run_dir: Path             # pid and lock files of the mounts: $XDG_RUNTIME_DIR/acdfuse
    bundled: EmbeddedPaths    # the bundled drive: $XDG_DATA_HOME/acdfuse

    @classmethod
    def from_xdg(cls, xdg: XdgDirs) -> ClientDirs:
        # without XDG_RUNTIME_DIR (a su shell, cron) a per-user dir under /tmp, made 0700 on first use
        # (pidfiles.MountRecord refuses it when it is not this user's alone)
        run_base = xdg.runtime_dir or Path(f"/tmp/acdfuse-{os.getuid()}")  # noqa: S108
        return cls(config_dir=xdg.config_home / "acdfuse",
                   cache_root=xdg.cache_home / "acdfuse",
                   run_dir=run_base / "acdfuse",
                   bundled=EmbeddedPaths(xdg.data_home / "acdfuse"))

    def default_cache_dir(self, cdir: Path, embedded: bool) -> Path:
        # one cache per drive, so two accounts never share a mirror
        if embedded:
            return self.cache_root / "embedded"
        digest = hashlib.sha1(str(cdir).encode(), usedforsecurity=False).hexdigest()[:12]  # a dir name
        return self.cache_root / f"drive-{digest}"


def make_cache_dir(path: Path, cache_root: Path) -> None:
    """Create a mount's cache dir readable by the user alone: it holds drive content and names.

    Our own default cache dirs (under $XDG_CACHE_HOME/acdfuse) made open by an older version are
    closed; a cache dir the user chose is left as it is, with a warning when others can read it.
    """
    ours = (cache_root, path) if path.parent == cache_root else ()
    mode = make_private_dir(path, close_if_open=ours)
    if mode is not None:
        log.warning("%s is open to other users (mode %o); drive content cached there is readable by them "
                    "(chmod 700 %s)", path, mode, path)
