"""The first-sync notice: one line about the mount's first sync, from the mount process to the console.

A background mount's parent returns once the mount answers, which for a warm mirror is before the first
sync has ended; the mount process writes how that sync went to a file in the cache dir, and the parent
waits a little for it and prints it. A console that runs the mount in the foreground gets it at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from acdfuse.api.common import credentials_refused, is_offline
from acdfuse.runtime.options import Options

log = logging.getLogger(__name__)

FIRST_SYNC_FILE = "first-sync"     # the child's one-line notice about its first sync, for the parent
NOTICE_WAIT = 3.0                  # how long a background mount waits for that notice at most
_NOTICE_POLL = 0.05                # the notice is a file written by another process: looked at this often

def refused_message(opts: Options, exc: BaseException, server: str = "URL") -> str:
    """Refused (expired, revoked) credentials, and the two ways to new ones; ``server`` is the base URL
    of the server when it is known."""
    how = ("restart the mount so the bundled server writes new ones" if opts.embedded
           else f"sign in again with `acdfuse init --server {server} --config-dir {opts.config_dir}`, "
                f"or get new ones with `acdfuse serve --credentials-out {opts.config_dir}` where the "
                f"server runs")
    why = getattr(exc, "msg", None) or exc
    return f"the server refused the credentials in {opts.config_dir} ({why}); {how}"


def first_sync_notice(opts: Options, exc: BaseException | None) -> str:
    """One line for the console about the first sync of a warm mirror; '' when it went well."""
    if exc is None:
        return ""
    refused = credentials_refused(exc)
    if refused is not None:
        return (f"mounted offline from the local mirror (only cached files can be read): "
                f"{refused_message(opts, refused)}")
    if not is_offline(exc):
        # the server answered, or acdfuse itself failed: waiting for the network will not cure it
        return (f"mounted from the local mirror, but its first sync failed and the server is not "
                f"unreachable (see {opts.log_file}); new changes do not show until it works: {exc}")
    return (f"mounted offline from the local mirror (only cached files can be read; it syncs when "
            f"the server answers): {exc}")


class FirstSyncReport:
    """Tells the console once how the first sync went (see the module docstring).

    ``say`` prints one line to a console that is not a terminal (a terminal already got the warning
    through logging); it comes from the command line, the only place that prints.
    """

    def __init__(self, opts: Options, say: Callable[[str], None] | None = None) -> None:
        self._opts = opts
        self._say = say
        self.said_offline = False     # "offline" was said before the mount, at once

    def synced(self) -> None:
        """The first sync ran before the mount and succeeded: nothing to say."""
        self._write("")

    def unreachable(self, exc: BaseException) -> None:
        """Said at once: the first sync of an unreachable server ends only after the client's retries."""
        self._write(first_sync_notice(self._opts, exc))
        self.said_offline = True

    def first_sync_done(self, exc: BaseException | None) -> None:
        """The sync loop's first sync ended (``exc`` None: it succeeded)."""
        if exc is not None and self.said_offline and credentials_refused(exc) is None:
            return      # "offline" was said already, before the mount
        self._write(first_sync_notice(self._opts, exc))

    def _write(self, notice: str) -> None:
        if notice:
            log.warning("%s", notice)
            if self._say is not None:
                self._say(notice)
        path = self._opts.cache_dir / FIRST_SYNC_FILE
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(notice)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)


def forget_first_sync_notice(cache_dir: Path) -> None:
    """Before a background start: a notice left by an earlier mount must not be taken for this one's."""
    try:
        (cache_dir / FIRST_SYNC_FILE).unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.debug("cannot remove the old first-sync notice: %s", exc)


def read_first_sync_notice(opts: Options) -> list[str]:
    """The mount process's first-sync notice, waited for a little: [] prints nothing."""
    path = opts.cache_dir / FIRST_SYNC_FILE
    deadline = time.monotonic() + min(opts.timeout, NOTICE_WAIT)
    while True:
        try:
            text = path.read_text().strip()
        except OSError:
            text = None
        if text is not None:
            return [text] if text else []
        if time.monotonic() >= deadline:
            return ["the first sync with the server is still running; until it ends the mount serves the "
                    f"local mirror (see {opts.log_file})"]
        time.sleep(_NOTICE_POLL)
