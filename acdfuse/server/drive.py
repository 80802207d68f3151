"""The drive itself: accounts and the node tree (create, upload, patch, parents, trash, purge, lists).

Everything here works on rows of ``db.Database`` and knows nothing of HTTP except ``ApiError``.
Lock order: ``Database.write_lock`` -> ``Drive._seq_lock`` (a leaf). Helpers taking the transaction's
connection ``c`` run inside ``db.write()``; ``_purge_locked`` and friends are never called outside one.
Every write runs in one short transaction under the writer lock and gives the touched nodes a new
change sequence number (``seq``), which is what ``changes`` pages through.

Decisions where acd-api.md is uncertain (⚠), chosen so a client can rely on them:
- Trashing a folder marks only that folder TRASH. Its descendants keep status AVAILABLE but are
  unreachable from the root until it is restored; restore therefore brings the subtree back exactly
  as it was, and trashing a huge folder costs one row. Lists with ``parents:<trashed folder>`` still
  show the children (they are AVAILABLE); clients resolve paths from the root, where they vanish.
- Restoring into a parent that meanwhile got an AVAILABLE child with the same name → 409
  NAME_ALREADY_EXISTS (nothing changes); the client renames one of them and retries.
- Removing the last parent of a node → 400: a node never ends with no parents (use trash instead).
- Folders may have several parents (Amazon allowed folder hard links), but the tree stays a DAG:
  moving a folder into its own subtree, or adding it as a child of itself or of one of its
  descendants → 400, so every client can walk paths without cycle detection.
  ``ServerConfig(allow_cycles=True)`` lets add_child make cycles (for testing clients that must
  survive them); a folder as its own parent stays 400.
- Duplicate content: an upload (POST) without ``suppress=deduplication`` whose md5 equals that of an
  AVAILABLE file of the same account gets 409 ``DUPLICATE_FILE`` with ``info.nodeId``. Empty files and
  overwrites are never checked (every empty file would collide; acd_cli's clear_file sends no suppress).
- Purge: ``DELETE nodes/{id}`` is refused with 403 (as for third-party apps). Nodes are purged for
  real by the trash sweeper (trash older than ``trash_retention``) or in process by
  ``DriveServer.purge``; a purged node stays as a PURGED tombstone that ``changes`` reports with
  ``includePurged``. ``DriveServer.forget_purged`` drops tombstones; checkpoints older than that get a
  reset.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
from collections.abc import Generator, Sequence
from typing import Any

from acdfuse.server import changes as changes_stream
from acdfuse.server import listing
from acdfuse.server.blobs import BlobStore
from acdfuse.server.db import Database
from acdfuse.server.errors import ApiError, bad_request, not_found
from acdfuse.server.model import (
    MAX_DESCRIPTION,
    MAX_PROPERTY_KEYS,
    MAX_PROPERTY_VALUE,
    Account,
    ContentCondition,
    NewContent,
    check_id,
    conflict,
    content_type_for,
    content_version,
    validate_labels,
    validate_name,
)
from acdfuse.server.nodejson import NODE_COLUMNS, NODE_JSON, OWNER_PREFIX, Page
from acdfuse.server.util import format_date, is_valid_id, new_etag, new_id, now_ms

__all__ = ["Account", "Drive", "NewContent", "Page"]

log = logging.getLogger(__name__)


class Drive:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        *,
        quota: int,
        next_token_lifetime: float,
        allow_cycles: bool = False,
        guest: bool = False,
    ) -> None:
        self.allow_cycles = allow_cycles
        # guest: this process is not the data dir's server (``acdfuse serve --credentials-only`` next to
        # a running one) and must not hand out change numbers; see ensure_account
        self.guest = guest
        self.db = db
        self.blobs = blobs
        self.quota = quota
        self.next_token_lifetime = next_token_lifetime
        self._seq = 0
        self._seq_lock = threading.Lock()
        self.epoch = ""
        self._token_key = b""
        self._accounts: dict[int, Account] = {}
        self._used: dict[int, int] = {}  # account -> stored bytes; changed only under the writer lock

    def open(self) -> None:
        conn = self.db.conn()
        row = conn.execute("SELECT MAX(seq) FROM nodes").fetchone()
        hrow = conn.execute("SELECT MAX(horizon) FROM accounts").fetchone()
        # never below 1: a guest may give a new account's root number 1 in an empty drive (ensure_account)
        self._seq = max(int(row[0] or 0), int(hrow[0] or 0), 1)
        with self.db.write() as c:
            epoch = self.db.get_meta("epoch")
            if epoch is None:
                epoch = secrets.token_hex(4)
                c.execute("INSERT INTO meta(key, value) VALUES ('epoch', ?)", (epoch,))
            key = self.db.get_meta("token_key")
            if key is None:
                key = secrets.token_hex(16)
                c.execute("INSERT INTO meta(key, value) VALUES ('token_key', ?)", (key,))
        self.epoch = epoch
        self._token_key = key.encode()

    @property
    def token_key(self) -> bytes:
        """Secret of this data dir for signed tokens (list pages, tempLinks)."""
        return self._token_key

    def next_seq(self) -> int:
        """Next change number; only called inside a write transaction, so commit order == seq order."""
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def reserve_seqs(self, n: int) -> int:
        """Reserve ``n`` numbers at once (bulk generator); returns the first."""
        with self._seq_lock:
            first = self._seq + 1
            self._seq += n
            return first

    @property
    def current_seq(self) -> int:
        return self._seq

    # -- accounts ---------------------------------------------------------------------------------
    def ensure_account(self, name: str) -> Account:
        if not name or len(name) > 64 or not all(ch.isalnum() or ch in "._-@" for ch in name):
            raise bad_request("account names are 1-64 characters of letters, digits and ._-@")
        row = self.db.conn().execute("SELECT id FROM accounts WHERE name=?", (name,)).fetchone()
        if row is not None:
            return self.account(int(row[0]))
        with self.db.write() as c:
            row = c.execute("SELECT id FROM accounts WHERE name=?", (name,)).fetchone()
            if row is None:
                root = new_id()
                now = now_ms()
                cur = c.execute(
                    "INSERT INTO accounts(name, user_id, root, quota, created) VALUES (?, '', ?, ?, ?)",
                    (name, root, self.quota, now),
                )
                acc_id = int(cur.lastrowid or 0)
                c.execute(
                    "UPDATE accounts SET user_id=? WHERE id=?", (f"amzn1.account.ACDFUSE{acc_id:08d}", acc_id)
                )
                c.execute(
                    "INSERT INTO nodes(id, account, kind, name, lname, status, version, created_by, created, "
                    "modified, etag, is_root, seq) "
                    "VALUES (?, ?, 'FOLDER', NULL, NULL, 'AVAILABLE', 1, ?, ?, ?, ?, 1, ?)",
                    (root, acc_id, self.owner_of(acc_id), now, now, new_etag(), self._root_seq(c)),
                )
                log.info("created account %s (root %s)", name, root)
            else:
                acc_id = int(row[0])
        return self.account(acc_id)

    def _root_seq(self, c: sqlite3.Connection) -> int:
        """The change number of a new account's root.

        The server takes the next number. A guest cannot: the server keeps its counter in memory and
        would hand that number out again, maybe within this very account. A guest reuses the newest
        committed number instead (inside its write transaction every number the server handed out is
        committed): numbers are only compared within one account, where the root is the only node;
        and it is <= the server's counter, so the account's first ``changes`` dump includes it.
        """
        if not self.guest:
            return self.next_seq()
        row = c.execute(
            "SELECT MAX(m) FROM (SELECT (SELECT MAX(seq) FROM nodes WHERE account = a.id) AS m "
            "FROM accounts a UNION ALL SELECT horizon FROM accounts)"
        ).fetchone()
        return max(int(row[0] or 0), 1)

    def blobs_with_prefix(self, prefix: str) -> set[str]:
        """Blob ids of committed nodes that start with ``prefix`` (index range on ``nodes_blob``)."""
        rows = (
            self.db.conn()
            .execute("SELECT blob FROM nodes WHERE blob >= ? AND blob < ?", (prefix, prefix + "~"))
            .fetchall()
        )
        return {str(r[0]) for r in rows}

    @staticmethod
    def owner_of(account: int) -> str:
        return f"{OWNER_PREFIX}{account}"   # the node JSON shows this owner's properties

    def account(self, acc_id: int) -> Account:
        acc = self._accounts.get(acc_id)
        if acc is None:
            row = (
                self.db.conn()
                .execute("SELECT id, name, user_id, root, quota FROM accounts WHERE id=?", (acc_id,))
                .fetchone()
            )
            if row is None:
                raise ApiError(401, "Token has expired", bare=True)
            acc = Account(int(row[0]), row[1], row[2], row[3], int(row[4]), self.owner_of(int(row[0])))
            self._accounts[acc_id] = acc
        return acc

    def account_by_name(self, name: str) -> Account | None:
        row = self.db.conn().execute("SELECT id FROM accounts WHERE name=?", (name,)).fetchone()
        return None if row is None else self.account(int(row[0]))

    def used_bytes(self, acc: Account) -> int:
        """Bytes stored by the account (trash included). Summed once, then kept up to date in memory,
        so an upload into a million-node drive does not scan it for the quota check."""
        used = self._used.get(acc.id)
        if used is None:
            row = (
                self.db.conn()
                .execute(
                    "SELECT COALESCE(SUM(size), 0) FROM nodes "
                    "WHERE account=? AND kind='FILE' AND status != 'PURGED'",
                    (acc.id,),
                )
                .fetchone()
            )
            used = self._used[acc.id] = int(row[0])
        return used

    def _add_used(self, acc: Account, delta: int) -> None:
        if acc.id in self._used:
            self._used[acc.id] += delta

    def forget_usage(self, acc: Account) -> None:
        self._used.pop(acc.id, None)

    def usage(self, acc: Account) -> dict[str, Any]:
        rows = (
            self.db.conn()
            .execute(
                "SELECT content_type, COUNT(*), COALESCE(SUM(size), 0) FROM nodes "
                "WHERE account=? AND kind='FILE' AND status != 'PURGED' GROUP BY content_type",
                (acc.id,),
            )
            .fetchall()
        )
        cats = {k: [0, 0] for k in ("doc", "other", "photo", "video")}
        for raw_type, count, size in rows:
            ctype = raw_type or ""
            if ctype.startswith("image/"):
                cat = "photo"
            elif ctype.startswith("video/"):
                cat = "video"
            elif (
                ctype.startswith("text/")
                or ctype in ("application/pdf", "application/msword")
                or ("document" in ctype)
            ):
                cat = "doc"
            else:
                cat = "other"
            cats[cat][0] += int(count)
            cats[cat][1] += int(size)
        out: dict[str, Any] = {"lastCalculated": format_date(now_ms())}
        for cat, (count, size) in cats.items():
            u = {"bytes": size, "count": count}
            out[cat] = {"total": dict(u), "billable": dict(u)}
        return out

    # -- reading and rendering --------------------------------------------------------------------
    def row(self, acc: Account, node_id: str, conn: sqlite3.Connection | None = None) -> sqlite3.Row:
        """The node row, or 404 for unknown ids, other accounts' nodes and purged tombstones."""
        check_id(node_id)
        c = conn or self.db.conn()
        r = c.execute(
            f"SELECT {NODE_COLUMNS} FROM nodes n WHERE n.id=? AND n.account=?", (node_id, acc.id)
        ).fetchone()
        if r is None or r["status"] == "PURGED":
            raise not_found(f"Node {node_id} does not exist")
        return r

    def parents_of(self, ids: Sequence[str], conn: sqlite3.Connection | None = None) -> dict[str, list[str]]:
        c = conn or self.db.conn()
        out: dict[str, list[str]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            part = list(ids[start : start + 500])
            q = "SELECT child, parent FROM parents WHERE child IN (%s)" % ",".join("?" * len(part))  # noqa: UP031
            for child, parent in c.execute(q, part):
                out[child].append(parent)
        return out

    def node(self, acc: Account, node_id: str) -> dict[str, Any]:
        self.row(acc, node_id)
        return self._fetch(self.db.conn(), node_id)

    # -- helpers used inside write transactions -------------------------------------------------
    def _folder(
        self, c: sqlite3.Connection, acc: Account, node_id: Any, *, missing: str = "parent"
    ) -> sqlite3.Row:
        if not isinstance(node_id, str) or not is_valid_id(node_id):
            raise bad_request("One of the parentId doesn't exists")
        r = c.execute(
            f"SELECT {NODE_COLUMNS} FROM nodes n WHERE n.id=? AND n.account=?", (node_id, acc.id)
        ).fetchone()
        if r is None or r["status"] == "PURGED":
            if missing == "parent":
                raise bad_request("One of the parentId doesn't exists")
            raise not_found(f"Node {node_id} does not exist")
        if r["kind"] != "FOLDER":
            raise bad_request(f"Parent {node_id} is not a folder")
        return r

    @staticmethod
    def _find_conflict(c: sqlite3.Connection, parent: str, lname: str, exclude: str = "") -> str | None:
        row = c.execute(
            "SELECT p.child FROM parents p JOIN nodes n ON n.id = p.child "
            "WHERE p.parent=? AND p.lname=? AND n.status='AVAILABLE' AND p.child != ? LIMIT 1",
            (parent, lname, exclude),
        ).fetchone()
        return None if row is None else str(row[0])

    def _check_free(
        self, c: sqlite3.Connection, parents: Sequence[str], lname: str, exclude: str = ""
    ) -> None:
        for p in parents:
            other = self._find_conflict(c, p, lname, exclude)
            if other is not None:
                raise conflict(lname, p, other)

    @staticmethod
    def _sync_parents(c: sqlite3.Connection, node_id: str) -> None:
        """Refresh ``nodes.parents_json`` after this node's rows in ``parents`` changed."""
        c.execute(
            "UPDATE nodes SET parents_json = (SELECT json_group_array(parent) FROM parents WHERE child = ?) "
            "WHERE id = ?",
            (node_id, node_id),
        )

    def _touch(
        self, c: sqlite3.Connection, node_id: str, extra: str = "", params: Sequence[Any] = ()
    ) -> None:
        """Bump version, etag, modifiedDate and change number of a node (plus ``extra`` SET clauses)."""
        sets = "version = version + 1, etag = ?, modified = ?, seq = ?" + (", " + extra if extra else "")
        c.execute(
            f"UPDATE nodes SET {sets} WHERE id = ?", (new_etag(), now_ms(), self.next_seq(), *params, node_id)
        )

    def _ancestors_include(self, c: sqlite3.Connection, start: str, target: str) -> bool:
        """True if ``target`` is ``start`` or one of its ancestors (walks every parent path once)."""
        seen = {start}
        frontier = [start]
        while frontier:
            if target in frontier:
                return True
            q = "SELECT DISTINCT parent FROM parents WHERE child IN (%s)" % ",".join("?" * len(frontier))  # noqa: UP031
            nxt = [r[0] for r in c.execute(q, frontier) if r[0] not in seen]
            seen.update(nxt)
            frontier = nxt[:500] if len(nxt) > 500 else nxt
        return False

    @staticmethod
    def _fetch(c: sqlite3.Connection, node_id: str) -> dict[str, Any]:
        r = c.execute(f"SELECT {NODE_JSON} FROM nodes n WHERE n.id=?", (node_id,)).fetchone()
        return dict(json.loads(r[0]))

    def _parents_arg(self, acc: Account, value: Any) -> list[str]:
        if value is None:
            return [acc.root]
        if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
            raise bad_request("parents must be a non-empty list of node ids")
        return list(dict.fromkeys(value))

    # -- create -----------------------------------------------------------------------------------
    def create_folder(self, acc: Account, body: dict[str, Any]) -> dict[str, Any]:
        kind = body.get("kind", "FOLDER")
        if kind != "FOLDER":
            raise bad_request("kind must be FOLDER here; files are uploaded to the content URL")
        return self.create_node(acc, body, kind="FOLDER")

    def check_new_file(self, acc: Account, meta: dict[str, Any], local_id: str | None) -> None:
        """Validate upload metadata before the content is streamed, so bad uploads fail fast."""
        c = self.db.conn()
        name = validate_name(meta.get("name"))
        for p in self._parents_arg(acc, meta.get("parents")):
            self._folder(c, acc, p)
        self._check_free(c, self._parents_arg(acc, meta.get("parents")), name.lower())
        if local_id is not None:
            self._check_local_id(c, acc, local_id)

    @staticmethod
    def _check_local_id(c: sqlite3.Connection, acc: Account, local_id: str) -> None:
        if not local_id or len(local_id) > 128:
            raise bad_request("localId must be 1-128 characters")
        row = c.execute("SELECT id FROM nodes WHERE account=? AND local_id=?", (acc.id, local_id)).fetchone()
        if row is not None:
            raise ApiError(
                409,
                f"localId {local_id} is already used by node {row[0]}",
                "DUPLICATE_LOCAL_ID",
                {"nodeId": row[0]},
            )

    def create_node(
        self,
        acc: Account,
        body: dict[str, Any],
        *,
        kind: str,
        content: NewContent | None = None,
        dedup: bool = False,
        local_id: str | None = None,
    ) -> dict[str, Any]:
        allowed = {
            "name",
            "kind",
            "parents",
            "labels",
            "description",
            "properties",
            "contentProperties",
            "createdDate",
            "modifiedDate",
        }
        unknown = set(body) - allowed
        if unknown:
            raise bad_request(f"Unknown field(s): {', '.join(sorted(unknown))}")
        name = validate_name(body.get("name"))
        labels = validate_labels(body.get("labels", []))
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise bad_request(f"description must be a string of at most {MAX_DESCRIPTION} characters")
        props = body.get("properties", {})
        if not isinstance(props, dict):
            raise bad_request("properties must be an object")
        parents = self._parents_arg(acc, body.get("parents"))
        lname = name.lower()
        with self.db.write() as c:
            for p in parents:
                self._folder(c, acc, p)
            self._check_free(c, parents, lname)
            if local_id is not None:
                self._check_local_id(c, acc, local_id)
            ctype = ext = None
            if kind == "FILE":
                assert content is not None
                if dedup and content.size > 0:
                    row = c.execute(
                        "SELECT id FROM nodes "
                        "WHERE account=? AND md5=? AND status='AVAILABLE' AND kind='FILE' LIMIT 1",
                        (acc.id, content.md5),
                    ).fetchone()
                    if row is not None:
                        raise ApiError(409, "Duplicate file exists", "DUPLICATE_FILE", {"nodeId": row[0]})
                if content.size and self.used_bytes(acc) + content.size > acc.quota:
                    raise ApiError(
                        403, "File size exceeds account allowance.", "NO_ACTIVE_SUBSCRIPTION_FOUND"
                    )
                ctype, ext = content_type_for(name)
            node_id = new_id()
            now = now_ms()
            c.execute(
                "INSERT INTO nodes(id, account, kind, name, lname, status, version, labels, description, "
                "created_by, created, modified, etag, size, md5, content_type, extension, content_version, "
                "content_date, blob, local_id, seq) VALUES (?, ?, ?, ?, ?, 'AVAILABLE', 1, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    node_id,
                    acc.id,
                    kind,
                    name,
                    lname,
                    json.dumps(labels),
                    description,
                    acc.owner,
                    now,
                    now,
                    new_etag(),
                    content.size if content else None,
                    content.md5 if content else None,
                    ctype,
                    ext,
                    1 if content else None,
                    now if content else None,
                    content.blob if content else None,
                    local_id,
                    self.next_seq(),
                ),
            )
            c.executemany(
                "INSERT INTO parents(parent, child, lname) VALUES (?, ?, ?)",
                [(p, node_id, lname) for p in parents],
            )
            self._sync_parents(c, node_id)
            for owner, kv in props.items():
                self._put_properties(c, node_id, owner, kv)
            node = self._fetch(c, node_id)
            if content is not None:
                self._add_used(acc, content.size)  # still under the writer lock, nothing can fail now
        return node

    def _put_properties(self, c: sqlite3.Connection, node_id: str, owner: Any, kv: Any) -> None:
        if not isinstance(owner, str) or not owner or not isinstance(kv, dict):
            raise bad_request("properties must map owner -> {key: value}")
        for k, v in kv.items():
            self.set_property_row(c, node_id, owner, k, v)

    def _change_properties(self, c: sqlite3.Connection, node_id: str, props: Any) -> None:
        """owner -> key -> value, or None to delete the key (absent: nothing to do). The deletes go
        first, so a change that swaps keys stays within the per-owner limit."""
        if not isinstance(props, dict):
            raise bad_request("properties must map owner -> {key: value}")
        for owner, kv in props.items():
            if not isinstance(owner, str) or not owner or not isinstance(kv, dict):
                raise bad_request("properties must map owner -> {key: value}")
            for k, v in kv.items():
                if v is None:
                    c.execute(
                        "DELETE FROM properties WHERE node=? AND owner=? AND key=?", (node_id, owner, k)
                    )
            self._put_properties(c, node_id, owner, {k: v for k, v in kv.items() if v is not None})

    # -- content ----------------------------------------------------------------------------------
    def file_row(self, acc: Account, node_id: str) -> sqlite3.Row:
        r = self.row(acc, node_id)
        if r["kind"] != "FILE":
            raise bad_request(f"Node {node_id} is not a file")
        return r

    def overwrite(
        self,
        acc: Account,
        node_id: str,
        content: NewContent,
        condition: ContentCondition | None = None,
        properties: Any = None,
    ) -> tuple[dict[str, Any], str | None]:
        """Replace the content; returns the node and the old blob id (deleted by the caller after reply).

        ``condition`` (an If-Match) is checked in the same transaction as the write, so two
        conditional overwrites of one version cannot both succeed. ``properties`` (the extension
        "properties with the content", routes.py): owner -> key -> value or None (delete), written in
        that same transaction, so a refused property leaves the content as it was too.
        """
        with self.db.write() as c:
            r = self.row(acc, node_id, c)
            if r["kind"] != "FILE":
                raise bad_request(f"Node {node_id} is not a file")
            if condition is not None:
                condition.check(node_id, content_version(r))
            if r["status"] == "TRASH":
                raise ApiError(409, f"Node {node_id} is in the trash; restore it first", "NODE_IN_TRASH")
            grow = content.size - (r["size"] or 0)
            if grow > 0 and self.used_bytes(acc) + grow > acc.quota:
                raise ApiError(403, "File size exceeds account allowance.", "NO_ACTIVE_SUBSCRIPTION_FOUND")
            self._touch(
                c,
                node_id,
                # +1 on what the node JSON reported (1 for a file that never had content)
                "size = ?, md5 = ?, blob = ?, content_version = COALESCE(content_version, 1) + 1, "
                "content_date = ?, status = CASE status WHEN 'PENDING' THEN 'AVAILABLE' ELSE status END",
                (content.size, content.md5, content.blob, now_ms()),
            )
            if properties is not None:
                self._change_properties(c, node_id, properties)
            node = self._fetch(c, node_id)
            self._add_used(acc, grow)
        return node, r["blob"]

    # -- metadata updates ---------------------------------------------------------------------------
    def patch(self, acc: Account, node_id: str, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"name", "description", "labels", "parents", "status"}
        unknown = set(body) - allowed
        if unknown:
            raise bad_request(f"Unknown or read-only field(s): {', '.join(sorted(unknown))}")
        sets: list[str] = []
        params: list[Any] = []
        with self.db.write() as c:
            r = self.row(acc, node_id, c)
            cur_parents = self.parents_of([node_id], c)[node_id]
            lname = r["name"].lower() if r["name"] else None
            new_parents = None
            if "parents" in body:
                if r["is_root"]:
                    raise bad_request("The root folder has no parents")
                new_parents = self._parents_arg(acc, body["parents"])
                for p in new_parents:
                    self._folder(c, acc, p)
                    if r["kind"] == "FOLDER" and self._ancestors_include(c, p, node_id):
                        raise bad_request("Cannot move a folder into itself or its own subtree")
            if "name" in body:
                if r["is_root"]:
                    raise bad_request("The root folder cannot be renamed")
                name = validate_name(body["name"])
                lname = name.lower()
                sets += ["name = ?", "lname = ?"]
                params += [name, lname]
            if "description" in body:
                d = body["description"]
                if not isinstance(d, str) or len(d) > MAX_DESCRIPTION:
                    raise bad_request(f"description must be a string of at most {MAX_DESCRIPTION} characters")
                sets.append("description = ?")
                params.append(d)
            if "labels" in body:
                sets.append("labels = ?")
                params.append(json.dumps(validate_labels(body["labels"])))
            if "status" in body:
                if body["status"] != "AVAILABLE" or r["status"] not in ("AVAILABLE", "PENDING"):
                    raise bad_request(
                        "status can only be set to AVAILABLE on a PENDING node; use trash/restore"
                    )
                sets.append("status = 'AVAILABLE'")
            if lname is not None and r["status"] != "TRASH":
                self._check_free(c, new_parents if new_parents is not None else cur_parents, lname, node_id)
            self._touch(c, node_id, ", ".join(sets), params)
            if new_parents is not None:
                c.execute("DELETE FROM parents WHERE child=?", (node_id,))
                c.executemany(
                    "INSERT INTO parents(parent, child, lname) VALUES (?, ?, ?)",
                    [(p, node_id, lname) for p in new_parents],
                )
                self._sync_parents(c, node_id)
            elif "name" in body:
                c.execute("UPDATE parents SET lname=? WHERE child=?", (lname, node_id))
            return self._fetch(c, node_id)

    def add_child(self, acc: Account, parent_id: str, child_id: str) -> dict[str, Any]:
        check_id(parent_id)
        check_id(child_id)
        with self.db.write() as c:
            self._folder(c, acc, parent_id, missing="404")
            r = self.row(acc, child_id, c)
            if r["is_root"]:
                raise bad_request("The root folder cannot get a parent")
            if parent_id == child_id:
                raise bad_request("A folder cannot be its own parent")
            if (
                not self.allow_cycles
                and r["kind"] == "FOLDER"
                and self._ancestors_include(c, parent_id, child_id)
            ):
                raise bad_request("Cannot add a folder below itself or its own subtree")
            if parent_id in self.parents_of([child_id], c)[child_id]:
                return self._fetch(c, child_id)  # already there: idempotent, nothing changes
            lname = r["name"].lower()
            if r["status"] != "TRASH":
                self._check_free(c, [parent_id], lname, child_id)
            c.execute(
                "INSERT INTO parents(parent, child, lname) VALUES (?, ?, ?)", (parent_id, child_id, lname)
            )
            self._sync_parents(c, child_id)
            self._touch(c, child_id)
            return self._fetch(c, child_id)

    def remove_child(self, acc: Account, parent_id: str, child_id: str) -> dict[str, Any]:
        check_id(parent_id)
        check_id(child_id)
        with self.db.write() as c:
            self.row(acc, parent_id, c)
            self.row(acc, child_id, c)
            parents = self.parents_of([child_id], c)[child_id]
            if parent_id not in parents:
                raise not_found(f"Node {child_id} is not a child of {parent_id}")
            if len(parents) == 1:
                raise bad_request(f"Cannot remove the last parent of {child_id}; move or trash it instead")
            c.execute("DELETE FROM parents WHERE parent=? AND child=?", (parent_id, child_id))
            self._sync_parents(c, child_id)
            self._touch(c, child_id)
            return self._fetch(c, child_id)

    def move(self, acc: Account, new_parent: str, body: dict[str, Any]) -> dict[str, Any]:
        check_id(new_parent)
        old_parent = body.get("fromParent")
        child_id = body.get("childId")
        if not isinstance(old_parent, str) or not isinstance(child_id, str):
            raise bad_request("fromParent and childId are required")
        check_id(old_parent, "fromParent")
        check_id(child_id, "childId")
        with self.db.write() as c:
            self._folder(c, acc, new_parent, missing="404")
            r = self.row(acc, child_id, c)
            if r["status"] == "TRASH":
                raise bad_request(f"Node {child_id} is in the trash and cannot be moved")
            parents = self.parents_of([child_id], c)[child_id]
            if old_parent not in parents:
                raise bad_request(f"Node {child_id} is not a child of {old_parent}")
            if old_parent == new_parent:
                return self._fetch(c, child_id)
            if r["kind"] == "FOLDER" and self._ancestors_include(c, new_parent, child_id):
                raise bad_request("Cannot move a folder into itself or its own subtree")
            lname = r["name"].lower()
            self._check_free(c, [new_parent], lname, child_id)
            c.execute("DELETE FROM parents WHERE parent=? AND child=?", (old_parent, child_id))
            c.execute(
                "INSERT OR IGNORE INTO parents(parent, child, lname) VALUES (?, ?, ?)",
                (new_parent, child_id, lname),
            )
            self._sync_parents(c, child_id)
            self._touch(c, child_id)
            return self._fetch(c, child_id)

    # -- trash ------------------------------------------------------------------------------------
    def trash(self, acc: Account, node_id: str) -> dict[str, Any]:
        with self.db.write() as c:
            r = self.row(acc, node_id, c)
            if r["is_root"]:
                raise bad_request("The root folder cannot be trashed")
            if r["status"] != "TRASH":
                self._touch(c, node_id, "status = 'TRASH', trashed = ?", (now_ms(),))
            return self._fetch(c, node_id)

    def restore(self, acc: Account, node_id: str) -> dict[str, Any]:
        with self.db.write() as c:
            r = self.row(acc, node_id, c)
            if r["status"] == "TRASH":
                parents = self.parents_of([node_id], c)[node_id]
                self._check_free(c, parents, r["name"].lower(), node_id)
                self._touch(c, node_id, "status = 'AVAILABLE', trashed = NULL")
            return self._fetch(c, node_id)

    def purge(self, acc: Account, node_id: str) -> int:
        """Purge a node and every descendant reachable only through it; returns the number purged."""
        with self.db.write() as c:
            r = self.row(acc, node_id, c)
            if r["is_root"]:
                raise bad_request("The root folder cannot be purged")
            doomed = self._purge_set(c, node_id)
            blobs = self._purge_locked(c, doomed)
            self.forget_usage(acc)
        for b in blobs:
            self.blobs.delete(b)
        return len(doomed)

    def _purge_set(self, c: sqlite3.Connection, node_id: str) -> list[str]:
        doomed = {node_id}
        order = [node_id]
        frontier = [node_id]
        while frontier:
            nxt = []
            for start in range(0, len(frontier), 500):
                part = frontier[start : start + 500]
                q = "SELECT DISTINCT child FROM parents WHERE parent IN (%s)" % ",".join("?" * len(part))  # noqa: UP031
                for (child,) in c.execute(q, part).fetchall():
                    if child in doomed:
                        continue
                    others = [
                        p
                        for (p,) in c.execute("SELECT parent FROM parents WHERE child=?", (child,))
                        if p not in doomed
                    ]
                    if not others:
                        doomed.add(child)
                        order.append(child)
                        nxt.append(child)
            frontier = nxt
        return order

    def _purge_locked(self, c: sqlite3.Connection, ids: list[str]) -> list[str]:
        blobs = []
        now = now_ms()
        for node_id in ids:
            row = c.execute("SELECT blob FROM nodes WHERE id=?", (node_id,)).fetchone()
            if row and row[0]:
                blobs.append(row[0])
            c.execute(
                "UPDATE nodes SET status='PURGED', version=version+1, modified=?, seq=?, blob=NULL, "
                "trashed=NULL, "
                "local_id=NULL WHERE id=?",
                (now, self.next_seq(), node_id),
            )
            c.execute("DELETE FROM parents WHERE child=?", (node_id,))
            c.execute("UPDATE nodes SET parents_json='[]' WHERE id=?", (node_id,))
            c.execute("DELETE FROM properties WHERE node=?", (node_id,))
        return blobs

    def sweep_trash(self, older_than_ms: int) -> int:
        """Purge trash older than the cutoff in every account (the retention sweeper)."""
        rows = (
            self.db.conn()
            .execute(
                "SELECT id, account FROM nodes WHERE trashed IS NOT NULL AND status='TRASH' AND trashed < ?",
                (older_than_ms,),
            )
            .fetchall()
        )
        total = 0
        for node_id, acc_id in rows:
            try:
                total += self.purge(self.account(int(acc_id)), node_id)
            except ApiError as e:  # gone meanwhile (purged with a parent): fine
                log.debug("sweep: %s: %s", node_id, e)
        if total:
            log.info("trash sweeper purged %d node(s)", total)
        return total

    def forget_purged(self, acc: Account) -> int:
        """Drop PURGED tombstones; checkpoints from before now will get a reset from ``changes``."""
        with self.db.write() as c:
            cur = c.execute("DELETE FROM nodes WHERE account=? AND status='PURGED'", (acc.id,))
            c.execute("UPDATE accounts SET horizon=? WHERE id=?", (self.next_seq(), acc.id))
            return cur.rowcount

    # -- properties -------------------------------------------------------------------------------
    def set_property_row(self, c: sqlite3.Connection, node_id: str, owner: str, key: Any, value: Any) -> None:
        if not isinstance(key, str) or not key or len(key) > 256 or "/" in key:
            raise bad_request("property keys are 1-256 characters without '/'")
        if not isinstance(value, str):
            raise bad_request("property values are strings")
        if len(value) > MAX_PROPERTY_VALUE:
            raise bad_request(f"property values are at most {MAX_PROPERTY_VALUE} characters")
        exists = c.execute(
            "SELECT 1 FROM properties WHERE node=? AND owner=? AND key=?", (node_id, owner, key)
        ).fetchone()
        if not exists:
            n = c.execute(
                "SELECT COUNT(*) FROM properties WHERE node=? AND owner=?", (node_id, owner)
            ).fetchone()[0]
            if n >= MAX_PROPERTY_KEYS:
                raise bad_request(f"at most {MAX_PROPERTY_KEYS} properties per owner and node")
        c.execute(
            "INSERT OR REPLACE INTO properties(node, owner, key, value) VALUES (?, ?, ?, ?)",
            (node_id, owner, key, value),
        )

    def set_property(self, acc: Account, node_id: str, owner: str, key: str, value: Any) -> None:
        with self.db.write() as c:
            self.row(acc, node_id, c)
            self.set_property_row(c, node_id, owner, key, value)
            self._touch(c, node_id)

    def get_properties(self, acc: Account, node_id: str, owner: str) -> dict[str, str]:
        self.row(acc, node_id)
        rows = (
            self.db.conn()
            .execute(
                "SELECT key, value FROM properties WHERE node=? AND owner=? ORDER BY key", (node_id, owner)
            )
            .fetchall()
        )
        return {k: v for k, v in rows}

    def delete_property(self, acc: Account, node_id: str, owner: str, key: str) -> None:
        with self.db.write() as c:
            self.row(acc, node_id, c)
            cur = c.execute(
                "DELETE FROM properties WHERE node=? AND owner=? AND key=?", (node_id, owner, key)
            )
            if cur.rowcount == 0:
                raise not_found(f"Property {key} does not exist")
            self._touch(c, node_id)

    # -- lists and changes (own modules) ----------------------------------------------------------
    def list_nodes(
        self, acc: Account, params: dict[str, str], *, parent: str | None = None, trash: bool = False
    ) -> Page:
        """One page of a listing; see ``listing.list_nodes``."""
        return listing.list_nodes(self, acc, params, parent=parent, trash=trash)

    def changes(
        self,
        acc: Account,
        checkpoint: str | None,
        *,
        chunk_size: int,
        max_nodes: int | None,
        include_purged: bool,
    ) -> Generator[bytes, None, None]:
        """The lines of one ``changes`` call; see ``changes.stream``."""
        return changes_stream.stream(
            self, acc, checkpoint, chunk_size=chunk_size, max_nodes=max_nodes, include_purged=include_purged
        )
