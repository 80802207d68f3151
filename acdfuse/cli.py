"""Command line entry point: ``acdfuse serve|mount|umount``.

Each sub-command lives in its own module, which adds its arguments and runs it; this module only
dispatches, so importing it starts nothing. It is also the one place that reads the environment: the
XDG base dirs are resolved here once and handed to the sub-command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from acdfuse import __version__
from acdfuse.common.xdg import XdgDirs

# sub-command name -> module with add_arguments(name, subparsers) and run(args, xdg) -> int.
# The client's (cli_mount) and the server's (server.command) fronts: this dispatcher is the only
# module that reaches both.
COMMANDS = {
    "serve": "acdfuse.server.command",
    "mount": "acdfuse.cli_mount",
    "umount": "acdfuse.cli_mount",
    "status": "acdfuse.cli_control",
    "sync": "acdfuse.cli_control",
    "cache": "acdfuse.cli_control",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acdfuse",
        description="Mount a Cloud Drive as a local directory, or serve a Cloud-Drive-compatible drive.",
    )
    parser.add_argument("--version", action="version", version=f"acdfuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        module = importlib.import_module(modname)
        module.add_arguments(name, sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    return int(args.run(args, XdgDirs.from_environ(os.environ, Path.home())))
