"""Client credentials for a data dir without serving it (``acdfuse serve --credentials-only``).

The usual case: a server already runs on the data dir and holds its lock, and the self-hoster wants a
client config (maybe for another account) without stopping it. This process then writes straight into
the shared SQLite database (WAL; its write waits for the server's short transactions through the busy
timeout) and starts no listener. Everything it writes is safe next to the server's in-memory state:
- tokens are rows the server looks up on a cache miss;
- a missing account gets its row and root folder; the root reuses the newest committed change number
  instead of taking a new one (``Drive`` in guest mode, see ``Drive._root_seq``).
The URL written is the one the running server advertises in its lock file (or ``public_url`` if given).

With no server running, this process holds the lock itself while it works (a server starting meanwhile
gets "in use" and can be started again), and the URL is the one ``acdfuse serve`` with the same
``--host``/``--port``/``--public-url`` will advertise.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from acdfuse.common.locks import take_lock
from acdfuse.server.accounts import hash_password
from acdfuse.server.auth import Auth
from acdfuse.server.blobs import BlobStore
from acdfuse.server.config import ServerConfig
from acdfuse.server.db import SCHEMA_VERSION, Database
from acdfuse.server.drive import Drive
from acdfuse.server.server import (
    LOCK_FILE,
    advertised_url,
    make_data_dir,
    read_lock_info,
    write_client_files,
)

log = logging.getLogger(__name__)


class ProvisionError(Exception):
    """The credentials or the account cannot be written (no URL to put in them, a foreign data dir, a
    running server older than this version)."""


def write_credentials_only(
    config: ServerConfig, cdir: Path, account: str = "default", token_lifetime: float | None = None
) -> str:
    """Write Contract 2's files for ``account`` into ``cdir``; returns the base URL written."""
    data = Path(config.data_dir)
    make_data_dir(data)
    try:
        fd = take_lock(data / LOCK_FILE)
    except BlockingIOError:
        return _via_running_server(config, data, cdir, account, token_lifetime)
    try:
        return _while_stopped(config, cdir, account, token_lifetime)
    finally:
        os.close(fd)  # drops our flock


def _via_running_server(
    config: ServerConfig, data: Path, cdir: Path, account: str, token_lifetime: float | None
) -> str:
    base = config.public_url or read_lock_info(data).get("base_url")
    if not isinstance(base, str) or not base:
        raise ProvisionError(
            f"the server running on {data} does not say its URL (an older version?); pass --public-url"
        )
    db_path = data / "drive.sqlite3"
    if not db_path.exists():
        raise ProvisionError(f"{data} is locked but holds no drive database")
    db = Database(db_path)  # no open(): the running server owns the schema
    try:
        auth = Auth(db, config.token_lifetime)
        auth.open()
        drive = Drive(
            db,
            BlobStore(data),
            quota=config.quota,
            next_token_lifetime=config.next_token_lifetime,
            guest=True,
        )
        acc = drive.ensure_account(account)
        tokens = auth.issue(acc.id, token_lifetime)
        write_client_files(cdir, base.rstrip("/"), tokens, auth.client_id, auth.client_secret)
    finally:
        db.close()
    log.info("credentials for account %s written to %s (server running at %s)", account, cdir, base)
    return base.rstrip("/")


def _while_stopped(config: ServerConfig, cdir: Path, account: str, token_lifetime: float | None) -> str:
    if not config.public_url and config.port == 0:
        raise ProvisionError(
            "no server is running on this data dir and --port is 0: give the --port (or --public-url) "
            "the server will use, or start it with --credentials-out"
        )
    data = Path(config.data_dir)
    db = Database(data / "drive.sqlite3")
    try:
        db.open()
        auth = Auth(db, config.token_lifetime)
        auth.open()
        # we hold the lock, so this is the only writer: the ordinary change counter is right
        drive = Drive(db, BlobStore(data), quota=config.quota, next_token_lifetime=config.next_token_lifetime)
        drive.open()
        base = advertised_url(config, config.port)
        acc = drive.ensure_account(account)
        tokens = auth.issue(acc.id, token_lifetime)
        write_client_files(cdir, base, tokens, auth.client_id, auth.client_secret)
    finally:
        db.close()
    log.info("credentials for account %s written to %s (for %s)", account, cdir, base)
    return base


@dataclass(frozen=True)
class AccountInfo:
    name: str
    has_password: bool
    created_ms: int


def _check_running_schema(db: Database, data: Path) -> None:
    """A server holds the data dir: refuse when its database is older than this version, which only
    that server may migrate (and which it would not know how to use: an older server ignores account
    passwords). Raises ProvisionError saying what to do."""
    try:
        found = db.get_meta("schema")
    except sqlite3.Error:
        db.close()
        raise
    if found is not None and int(found) < SCHEMA_VERSION:
        db.close()
        raise ProvisionError(
            f"the server running on {data} is older than this acdfuse (its database has schema {found}, "
            f"this version needs {SCHEMA_VERSION}): stop it (kill $(cat {data / 'server.pid'})), start it "
            f"again with this acdfuse (`acdfuse serve --data {data} ...`), then run this command again")


def _open(config: ServerConfig) -> tuple[Database, Drive, int | None]:
    """The data dir's database and a Drive on it; the lock fd when no server holds it, else None."""
    data = Path(config.data_dir)
    make_data_dir(data)
    try:
        fd: int | None = take_lock(data / LOCK_FILE)
    except BlockingIOError:
        fd = None
    db = Database(data / "drive.sqlite3")
    if fd is not None:
        db.open()  # we are the only user: create or migrate the schema
    else:
        _check_running_schema(db, data)
    drive = Drive(
        db,
        BlobStore(data),
        quota=config.quota,
        next_token_lifetime=config.next_token_lifetime,
        guest=fd is None,
    )
    if fd is not None:
        drive.open()
    return db, drive, fd


def add_account(config: ServerConfig, name: str, password: str | None) -> bool:
    """Create account ``name`` (if missing) and set its password (None: leave it). True if it was new."""
    db, drive, fd = _open(config)
    try:
        existed = drive.account_by_name(name) is not None
        drive.ensure_account(name)
        if password is not None:
            with db.write() as c:
                c.execute("UPDATE accounts SET password=? WHERE name=?", (hash_password(password), name))
        return not existed
    finally:
        db.close()
        if fd is not None:
            os.close(fd)


def revoke_account_tokens(config: ServerConfig, name: str) -> int:
    """Delete every token of account ``name`` (access, refresh, unused sign-in codes): each client of
    it must sign in again. Returns how many went. A running server refuses them once its token cache
    lets go of them (``auth.CACHE_TTL``, 30 s). ProvisionError when there is no such account."""
    db, drive, fd = _open(config)
    try:
        account = drive.account_by_name(name)
        if account is None:
            raise ProvisionError(f"there is no account {name!r} in {config.data_dir} "
                                 f"(`account list` shows them)")
        return Auth(db, config.token_lifetime).revoke(account.id)
    finally:
        db.close()
        if fd is not None:
            os.close(fd)


def list_accounts(config: ServerConfig) -> list[AccountInfo]:
    db, _drive, fd = _open(config)
    try:
        rows = db.conn().execute("SELECT name, password, created FROM accounts ORDER BY name").fetchall()
        return [AccountInfo(str(r[0]), r[1] is not None, int(r[2])) for r in rows]
    finally:
        db.close()
        if fd is not None:
            os.close(fd)
