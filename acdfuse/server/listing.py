"""Listings (``GET nodes``, ``GET nodes/{id}/children``, ``GET trash``): filters, paging, counts.

``nextToken`` is a signed JSON state (query, account, count, keyset position or offset, expiry), so
paging needs no server-side cursor and a token cannot be replayed against another query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

from acdfuse.server import filters
from acdfuse.server.errors import bad_request
from acdfuse.server.model import Account
from acdfuse.server.nodejson import NODE_JSON, Page

if TYPE_CHECKING:
    from acdfuse.server.drive import Drive

MAX_LIMIT = 200


def encode_token(key: bytes, data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    sig = hmac.new(key, raw, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(raw + sig).decode().rstrip("=")


def decode_token(key: bytes, token: str) -> dict[str, Any]:
    try:
        blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        raw, sig = blob[:-12], blob[-12:]
        if not hmac.compare_digest(sig, hmac.new(key, raw, hashlib.sha256).digest()[:12]):
            raise ValueError("bad signature")
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        return data
    except (ValueError, TypeError):
        raise bad_request("Invalid startToken") from None


def list_nodes(
    drive: Drive,
    acc: Account,
    params: dict[str, str],
    *,
    parent: str | None = None,
    trash: bool = False,
) -> Page:
    """One page of ``GET nodes``, ``GET nodes/{id}/children`` or ``GET trash``.

    Paging without ``sort`` is keyset paging (page N costs what page 1 costs, even on a million
    nodes): children in (parent, child) index order, everything else in rowid order. With ``sort``
    the token carries an offset. ``+n.account`` keeps SQLite from driving the query through an
    index that merely starts with the (unselective) account column.
    """
    try:
        limit = int(params.get("limit", MAX_LIMIT))
    except ValueError:
        raise bad_request("limit must be a number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}")
    ftext = params.get("filters", "") or ""
    stext = params.get("sort", "") or ""
    where = ["+n.account = ?", "n.status != 'PURGED'"]
    args: list[Any] = [acc.id]
    mentions_status = False
    if ftext.strip():
        sql, mentions_status = filters.compile_filter(filters.parse(ftext), args)
        where.append(sql)
    if trash:
        where.append("n.status = 'TRASH' AND n.trashed IS NOT NULL")
    elif not mentions_status:
        where.append("n.status = 'AVAILABLE'")
    order = filters.compile_sort(stext)
    query_key = json.dumps([ftext, stext, parent, trash])
    conn = drive.db.conn()
    if parent is not None:
        drive.row(acc, parent)
        # CROSS JOIN: SQLite keeps the parents table as the outer loop (the folder's index range)
        frm = "parents p CROSS JOIN nodes n ON n.id = p.child"
        where.insert(0, "p.parent = ?")
        args.insert(0, parent)
        key_col = "p.child"
    else:
        frm = "nodes n"
        key_col = "n.rowid"
    state: dict[str, Any] = {}
    start = params.get("startToken")
    if start:
        state = decode_token(drive.token_key, start)
        if state.get("q") != query_key or state.get("a") != acc.id:
            raise bad_request("startToken does not belong to this query")
        if time.time() > float(state.get("t", 0)):
            raise bad_request("Next token is expired")
    where_sql = " AND ".join(where)
    # one read snapshot for the count and the page: between two statements another client's upload
    # could land, and a first page would then hold more nodes than its count says
    conn.execute("BEGIN")
    try:
        count, rows, nxt = _page_rows(conn, frm, where_sql, key_col, args, order, state, limit, parent)
    finally:
        conn.execute("COMMIT")
    token = None
    if len(rows) > limit:
        nxt.update(q=query_key, a=acc.id, c=count, t=time.time() + drive.next_token_lifetime)
        token = encode_token(drive.token_key, nxt)
    return Page(count, [r[1] for r in rows[:limit]], token)


def _page_rows(  # noqa: PLR0917 - the parts of one query, computed by the caller
    conn: Any,
    frm: str,
    where_sql: str,
    key_col: str,
    args: list[Any],
    order: list[str],
    state: dict[str, Any],
    limit: int,
    parent: str | None,
) -> tuple[int, list[Any], dict[str, Any]]:
    """(count, up to limit + 1 rows, the next token's position) of one page; inside a snapshot."""
    if "c" in state:
        count = int(state["c"])  # counted once, on the first page
    else:
        count = int(conn.execute(f"SELECT COUNT(*) FROM {frm} WHERE {where_sql}", args).fetchone()[0])
    nxt: dict[str, Any]
    if order:
        offset = int(state.get("o", 0))
        sql = (
            f"SELECT {key_col} AS k, {NODE_JSON} AS js FROM {frm} WHERE {where_sql} "
            f"ORDER BY {', '.join(order)}, {key_col} LIMIT ? OFFSET ?"
        )
        rows = conn.execute(sql, [*args, limit + 1, offset]).fetchall()
        nxt = {"o": offset + limit}
    else:
        after = state.get("k", 0 if parent is None else "")
        sql = (
            f"SELECT {key_col} AS k, {NODE_JSON} AS js FROM {frm} WHERE {where_sql} AND {key_col} > ? "
            f"ORDER BY {key_col} LIMIT ?"
        )
        rows = conn.execute(sql, [*args, after, limit + 1]).fetchall()
        nxt = {"k": rows[limit - 1][0] if len(rows) > limit else 0}
    return count, rows, nxt
