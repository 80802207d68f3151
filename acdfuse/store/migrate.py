"""Schema migrations of acdfuse's SQLite files (the node mirror, database.py, and the write journal,
journal.py): one step a transaction, each recording its version as it commits.

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
            # a step's executescript commits what came before it, and a full disk can end the
            # transaction itself: a ROLLBACK then would hide the real error behind "no transaction"
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        log.info("%s: schema now at version %d", what, version)
    return version
