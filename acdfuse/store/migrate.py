"""Schema migrations of acdfuse's SQLite files (the node mirror, database.py, and the write journal,
journal.py): one step a transaction, each recording its version as it commits; and ``rollback``,
which every writer of those files uses to end a failed transaction.

Each file keeps its schema version in ``PRAGMA user_version`` and marks itself as acdfuse's with
``PRAGMA application_id``; a step that fails rolls back whole, so a file is always at some version.
No lock of its own: the caller holds the only connection that writes the schema.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

Step = Callable[[sqlite3.Connection], None]


def rollback(con: sqlite3.Connection) -> None:
    """End the failed transaction on ``con``, if SQLite has not ended it itself: it rolls back on its
    own after some errors (a full disk), and a second ROLLBACK would then replace the real error with
    "cannot rollback - no transaction is active"."""
    if con.in_transaction:
        con.execute("ROLLBACK")


def migrate(con: sqlite3.Connection, steps: Mapping[int, Step], target: int, application_id: int,
            what: str) -> int:
    """Run ``steps[v]`` (from version v to v + 1) until the file is at ``target``; its version after.
    ``what`` names the file in the log line of each step."""
    version = int(con.execute("PRAGMA user_version").fetchone()[0])
    while version < target:
        con.execute("BEGIN IMMEDIATE")
        try:
            steps[version](con)
            version += 1
            con.execute(f"PRAGMA user_version={version}")
            con.execute(f"PRAGMA application_id={application_id}")
            con.execute("COMMIT")
        except BaseException:
            # a step's executescript commits what came before it (see rollback)
            rollback(con)
            raise
        log.info("%s: schema now at version %d", what, version)
    return version
