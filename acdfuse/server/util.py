"""Small helpers shared by the server modules: ids, dates, JSON encoding."""

from __future__ import annotations

import calendar
import json
import re
import secrets
import string
import time
from typing import Any

ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")
_ETAG_ALPHABET = string.ascii_letters + string.digits


def new_id() -> str:
    """A 22-character node id from the alphabet ``[A-Za-z0-9_-]`` (~128 random bits).

    Amazon's ids could start with ``-``; ours never do, because command lines (acd_cli's argparse
    included) take such an id for an option. Clients must still accept any id of the format.
    """
    while True:
        node_id = secrets.token_urlsafe(16)
        if node_id[0] != "-":
            return node_id


def is_valid_id(value: str) -> bool:
    # every id from a URL or a body goes through this before it reaches SQL or the file system
    return bool(ID_RE.fullmatch(value))  # fullmatch: "$" alone would let a trailing newline through


def new_etag() -> str:
    return "".join(secrets.choice(_ETAG_ALPHABET) for _ in range(11))


def now_ms() -> int:
    return int(time.time() * 1000)


def format_date(ms: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` like Amazon's dates."""
    secs, millis = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?)?Z?$")


def parse_date(text: str) -> int:
    """Parse an ISO-8601 UTC date (date only or with time, optional fraction) to epoch ms."""
    m = _DATE_RE.match(text.strip())
    if not m:
        raise ValueError(f"invalid date: {text!r}")
    y, mo, d, h, mi, s, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), 0, 0, 0))
    millis = int((frac or "0").ljust(3, "0")[:3])
    return secs * 1000 + millis


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
