"""Logging of a mount process: a rotating file in the cache dir, verbose with --debug."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: Path, debug: bool, to_stderr: bool) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=20 << 20, backupCount=3)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if to_stderr:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.DEBUG if debug else logging.WARNING)
        console.setFormatter(logging.Formatter("acdfuse: %(levelname)s %(message)s"))
        root.addHandler(console)
    # mfusepy (logger "fuse") logs a traceback at DEBUG for most errnos it returns: far too much even
    # for --debug. Its real problems come at ERROR and above.
    logging.getLogger("fuse").setLevel(logging.INFO)
    # urllib3 at DEBUG logs every connection and request line; keep it for --debug only
    logging.getLogger("urllib3").setLevel(logging.DEBUG if debug else logging.WARNING)
