"""``changes``: checkpoints and the streamed change objects of one call.

A checkpoint is ``base64(<db epoch>.<account>.<seq>)``: everything of the account with a higher change
number comes next. A checkpoint from another data dir, another account, the future or from before
forgotten tombstones (``DriveServer.forget_purged``) cannot be continued and gets a full dump with
``reset: true`` on its first object only (so a client wipes its mirror once, not per object).
The stream is never gzipped, even when asked: on loopback, compressing ~0.5 GB for a million nodes
would cost more time than it saves.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Generator
from typing import TYPE_CHECKING

from acdfuse.server.model import Account
from acdfuse.server.nodejson import NODE_JSON

if TYPE_CHECKING:
    from acdfuse.server.drive import Drive

log = logging.getLogger(__name__)


def encode_checkpoint(drive: Drive, acc: Account, seq: int) -> str:
    raw = f"{drive.epoch}.{acc.id}.{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_checkpoint(drive: Drive, acc: Account, checkpoint: str | None) -> int | None:
    """The sequence number after which to continue, or None when a reset (full dump) is needed."""
    if not checkpoint:
        return None
    try:
        raw = base64.urlsafe_b64decode(checkpoint + "=" * (-len(checkpoint) % 4)).decode()
        epoch, acc_id, seq_text = raw.split(".")
        seq = int(seq_text)
    except (ValueError, UnicodeDecodeError):
        log.info("changes: invalid checkpoint %r -> reset", checkpoint[:40])
        return None
    if epoch != drive.epoch or int(acc_id) != acc.id or seq > drive.current_seq or seq < 0:
        log.info("changes: foreign or future checkpoint -> reset")
        return None
    horizon = drive.db.conn().execute("SELECT horizon FROM accounts WHERE id=?", (acc.id,)).fetchone()[0]
    if seq < int(horizon):
        log.info("changes: checkpoint older than forgotten tombstones -> reset")
        return None
    return seq


def stream(
    drive: Drive,
    acc: Account,
    checkpoint: str | None,
    *,
    chunk_size: int,
    max_nodes: int | None,
    include_purged: bool,
) -> Generator[bytes, None, None]:
    """The lines (JSON objects) of one ``changes`` call, without the final ``{"end": true}``.

    Runs in one read transaction, so a full dump is a consistent snapshot of the tree even while
    clients keep writing; later writes get higher numbers and come with the next call.
    """
    after = decode_checkpoint(drive, acc, checkpoint)
    reset = after is None
    cursor = 0 if after is None else after
    conn = drive.db.conn()
    with drive.db.write_lock:
        # Under the writer lock no write is in flight, so every number <= top is committed and
        # inside the snapshot that the first SELECT pins; later writes get numbers > top.
        conn.execute("BEGIN")
        conn.execute("SELECT 1 FROM accounts LIMIT 1").fetchone()
        top = drive.current_seq
    try:
        status_sql = "" if include_purged and not reset else " AND status != 'PURGED'"
        emitted = 0
        first = True
        while True:
            n = chunk_size
            if max_nodes is not None:
                n = max(1, min(n, max_nodes - emitted))
            rows = conn.execute(
                f"SELECT n.seq, {NODE_JSON} FROM nodes n "
                f"WHERE account=? AND seq > ? AND seq <= ?{status_sql} "
                "ORDER BY seq LIMIT ?",
                (acc.id, cursor, top, n),
            ).fetchall()
            if rows:
                cursor = rows[-1][0]
            emitted += len(rows)
            done = len(rows) < n
            capped = max_nodes is not None and emitted >= max_nodes
            if done:
                cursor = top
            if rows or first:
                head = '{"checkpoint":"%s","reset":%s,"statusCode":200,"nodes":[' % (  # noqa: UP031
                    encode_checkpoint(drive, acc, cursor),
                    "true" if reset and first else "false",
                )
                yield (head + ",".join(r[1] for r in rows) + "]}\n").encode("utf-8")
            first = False
            if done or capped:
                return
    finally:
        conn.execute("COMMIT")
