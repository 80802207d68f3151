"""Command line entry point: ``acdfuse serve|mount|umount|status|sync|cache|init``, and ``mount.acdfuse``.

Each sub-command lives in its own module, which adds its arguments and runs it; this module only
dispatches, so importing it starts nothing. It is also the one place that reads the environment: the
XDG base dirs are resolved here once and handed to the sub-command.

``mount.acdfuse SOURCE MOUNTPOINT -o OPTS`` is how mount(8) runs a helper for an fstab line of type
``fuse.acdfuse`` (as /sbin/mount.fuse.acdfuse); fuse3's stock /sbin/mount.fuse runs ``acdfuse SOURCE
MOUNTPOINT -o OPTS`` for the same line, so ``acdfuse`` takes that form too when SOURCE is ``acdfuse`` or
a path. Both become ``acdfuse mount MOUNTPOINT -o OPTS`` (SOURCE other than ``acdfuse``: the client
config dir); fstab's own words (defaults, _netdev, noauto, user...) are dropped by the -o parser.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

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
    "init": "acdfuse.cli_init",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a wrong flag or value is one line naming the way out, not the whole usage text
    (sub-commands get this class too: ``add_subparsers`` makes its parsers of its parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (`{self.prog} --help` lists the options)\n")


class _NotHelperForm(Exception):
    pass


class _QuietParser(argparse.ArgumentParser):
    """For trying whether argv has the helper's form: a mismatch is an answer, not a message."""

    def error(self, message: str) -> NoReturn:
        raise _NotHelperForm(message)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="acdfuse",
        description="Mount a Cloud Drive as a local directory, or serve a Cloud-Drive-compatible drive.",
    )
    parser.add_argument("--version", action="version", version=f"acdfuse {__version__}")
    parser.add_argument("--debug", action="store_true", dest="debug_cli",
                        help="show the traceback of an unexpected error (`acdfuse mount --debug` also "
                             "logs verbosely)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        module = importlib.import_module(modname)
        module.add_arguments(name, sub)
    return parser


HELPER_SOURCES = ("acdfuse", "none")    # fstab's first field for the default drive


def helper_argv(argv: Sequence[str]) -> list[str] | None:
    """``SOURCE MOUNTPOINT [-o OPTS] [-n] [-s] [-f] [-v] [-t TYPE]`` as ``acdfuse mount`` arguments;
    None when ``argv`` is not that form."""
    helper = _QuietParser(prog="mount.acdfuse", add_help=False)
    helper.add_argument("source")
    helper.add_argument("mountpoint")
    helper.add_argument("-o", dest="options", action="append", default=[])
    helper.add_argument("-t", dest="type")
    for flag in ("-n", "-s", "-f", "-v"):   # no mtab, sloppy, fake, verbose: mount(8)'s, not ours
        helper.add_argument(flag, action="store_true")
    try:
        ns, rest = helper.parse_known_args(list(argv))
    except _NotHelperForm:
        return None
    if rest or not (ns.source in HELPER_SOURCES or "/" in ns.source) or "," in ns.source:
        return None
    out = ["mount", ns.mountpoint]
    # mount(8) makes a SOURCE that names an existing path absolute (`acdfuse` run in a dir holding an
    # `acdfuse` dir): a path ending in /acdfuse is the default drive too. The config dir goes as the
    # first -o, so an explicit -o config_dir=... in the fstab line still wins.
    if ns.source not in HELPER_SOURCES and Path(ns.source).name not in HELPER_SOURCES:
        out += ["-o", f"config_dir={ns.source}"]
    for group in ns.options:
        out += ["-o", group]
    return out


def mount_helper() -> int:
    """The ``mount.acdfuse`` console script: mount(8)'s helper for fstab lines of type fuse.acdfuse."""
    argv = helper_argv(sys.argv[1:])
    if argv is None:
        print("usage: mount.acdfuse acdfuse|CONFIG_DIR MOUNTPOINT [-o OPTIONS]", file=sys.stderr)
        return 1
    return main(argv)


def _sub_error(command: str, message: str) -> NoReturn:
    prog = f"acdfuse {command}"
    print(f"{prog}: {message} (`{prog} --help` lists the options)", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        # fuse3's /sbin/mount.fuse runs `acdfuse SOURCE MOUNTPOINT -o OPTS` for an fstab line
        translated = helper_argv(argv)
        if translated is not None:
            argv = translated
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest:
        # said by the sub-command, whose --help lists its options (argparse would blame `acdfuse`)
        message = f"unrecognized arguments: {' '.join(rest)}"
        if not args.command:
            parser.error(message)
        _sub_error(args.command, message)
    if not getattr(args, "run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args, XdgDirs.from_environ(os.environ, Path.home())))
    except KeyboardInterrupt:
        print(f"acdfuse {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # every error a user can meet has its own one-line message where it happens; this is the net
        # under a bug of ours: still one line, and the traceback only when asked for
        debug = bool(args.debug_cli or getattr(args, "debug", False))
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"acdfuse {args.command}: unexpected error: {type(exc).__name__}: {exc} "
              f"({'the traceback is above' if debug else 'run it again with --debug for the traceback'}"
              f"; please report it)", file=sys.stderr)
        return 1
