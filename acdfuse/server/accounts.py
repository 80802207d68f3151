"""Accounts of a data dir and their login passwords (``acdfuse serve account add|list``).

A password is stored as ``scrypt$N$r$p$salt$hash`` (hex salt of 16 random bytes per account), so a copy
of the database does not give the password away. The login page (oauth.py) checks it with
:func:`check_password`. The commands work while a server runs on the data dir: they write the shared
SQLite database (WAL) like ``--credentials-only`` does, in guest mode (``add_account`` and
``list_accounts`` in provision.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from acdfuse.server.db import Database

# scrypt cost: 16 MiB of memory and ~50 ms per login on this kind of machine
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (a :func:`hash_password` value)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
            dklen=len(digest) // 2,
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def password_of(db: Database, name: str) -> str | None:
    """The stored password hash of account ``name``, or None (no such account or no password)."""
    row = db.conn().execute("SELECT password FROM accounts WHERE name=?", (name,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def any_password(db: Database) -> bool:
    """Whether some account has a password: then the login page creates no new accounts."""
    row = db.conn().execute("SELECT 1 FROM accounts WHERE password IS NOT NULL LIMIT 1").fetchone()
    return row is not None
