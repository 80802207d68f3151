"""``acdfuse init --server URL``: sign in to a Cloud Drive server and store the tokens in the config dir.

Interactive: prints the login URL (and opens it when a browser is available), then waits for the
browser's redirect to a one-shot listener on 127.0.0.1. Non-interactive (scripts, tests):
``--account NAME --password-file F`` posts the login form itself. Either way the config dir
(default $XDG_CONFIG_HOME/acdfuse, which ``acdfuse mount MNT`` uses when it holds tokens) gets
``acdfuse_server``, ``oauth_data`` and ``endpoint_data``, mode 0600.
"""

from __future__ import annotations

import argparse
import sys
import time
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from acdfuse.api.client import ACDClient
from acdfuse.api.common import RequestError
from acdfuse.api.login import LoginError, LoginRequest, RedirectListener, save_tokens
from acdfuse.common.xdg import XdgDirs
from acdfuse.runtime.paths import ClientDirs

DEFAULT_TIMEOUT = 300.0

EPILOG = """\
examples:
  acdfuse init --server http://127.0.0.1:8080        sign in through the browser, then: acdfuse mount ~/drive
  acdfuse init --server URL --account alice --password-file ~/.drive-pw     (no browser: for scripts)
  acdfuse init --server URL --config-dir ~/.config/acdfuse-work     then: acdfuse mount MNT --config-dir ...
On an acdfuse server, accounts and their passwords come from: acdfuse serve account add NAME
"""


def add_arguments(name: str, subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help="sign in to a Cloud Drive server and store the tokens",
        description="Sign in to a Cloud Drive server (OAuth authorization code with PKCE, as the\n"
        "public client acdfuse-cli) and store the tokens in the config dir (files mode 0600),\n"
        "so that `acdfuse mount MNT` uses that account with no other flag. The login URL is\n"
        "printed (and opened when a browser is available); the browser's redirect comes back\n"
        "to a one-shot listener on 127.0.0.1.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--server", required=True, metavar="URL", help="the server's base URL, e.g. http://host:8080")
    p.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="CDIR",
        help="where to store the tokens (default: $XDG_CONFIG_HOME/acdfuse)",
    )
    p.add_argument("--account", metavar="NAME", default=None, help="sign in without a browser as NAME")
    p.add_argument(
        "--password-file",
        type=Path,
        default=None,
        metavar="F",
        help="with --account: the password is the first line of F (default: no password)",
    )
    p.add_argument("--no-browser", action="store_true", help="only print the login URL, open no browser")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="seconds to wait for the browser (default: %(default)s)",
    )
    p.set_defaults(run=run)
    return p


def _fail(text: str, code: int = 1) -> int:
    print(f"acdfuse init: {text}", file=sys.stderr)
    return code


def _open_browser(url: str) -> None:
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return  # no browser here (a server, ssh): the printed URL is enough
    browser.open_new_tab(url)


def run(args: argparse.Namespace, xdg: XdgDirs) -> int:
    url = urlsplit(args.server)
    if url.scheme not in ("http", "https") or not url.netloc or url.query or url.fragment:
        return _fail(f"--server must be a base URL such as http://host:8080, not {args.server!r}", 2)
    if args.password_file is not None and args.account is None:
        return _fail("--password-file needs --account NAME", 2)
    password = ""
    if args.password_file is not None:
        try:
            lines = args.password_file.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            return _fail(f"cannot read {args.password_file}: {e.strerror}", 2)
        password = lines[0] if lines else ""
    cdir = (args.config_dir or ClientDirs.from_xdg(xdg).config_dir).expanduser().absolute()
    base = args.server.rstrip("/")
    try:
        with RedirectListener() as listener:
            request = LoginRequest.new(base, listener.redirect_uri)
            listener.expect(request.state)
            if args.account is not None:
                request.submit_form(args.account, password)
            else:
                print(f"Sign in at:\n  {request.url}\nWaiting for the browser (Ctrl-C stops)...", flush=True)
                if not args.no_browser:
                    _open_browser(request.url)
            params = listener.wait(args.timeout)
        started = time.time()
        tokens = request.exchange(request.code_from(params))
        save_tokens(cdir, base, tokens, started)
        # endpoint discovery with the new token writes endpoint_data, and proves the token works
        ACDClient(str(cdir)).server_extensions()
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except LoginError as e:
        return _fail(str(e))
    except RequestError as e:
        return _fail(f"signed in, but the drive does not answer: {e}")
    except OSError as e:
        return _fail(f"cannot write {cdir}: {e}")
    print(f"signed in; tokens stored in {cdir}", flush=True)
    return 0
