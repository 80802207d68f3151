"""POSIX attributes kept in node properties: the compact record, the xattr slots and their limits.

The drive knows no modes, owners, nanosecond mtimes, symlinks or xattrs. acdfuse keeps them in the
node's app-scoped properties (acd-api.md section 9: at most 10 keys per owner and node, values of at
most 500 characters), under the app's own owner id, so they survive remounts and other clients of the
same app see them after their next sync:

``posix`` -- one compact record of the stat-like fields, for example
    ``a1;m100644;u1000;g1000;t1700000000123456789;c3``

    - ``a1`` the format (a record of another format is ignored: the node shows the mount's defaults)
    - ``m`` st_mode in octal with the type bits (``S_IFLNK`` marks a symlink; a type that contradicts
      the node's kind, e.g. a regular-file mode on a folder, is ignored and only the permissions count)
    - ``u`` / ``g`` uid / gid
    - ``t`` mtime in integer nanoseconds since the epoch (an integer, so no float rounding)
    - ``c`` the file's content version that mtime was set for. A client that overwrites the content
      without knowing this record (another app, or an old acdfuse) bumps the content version, and the
      file then shows the server's modifiedDate again instead of a stale mtime, so make and rsync see
      the change. Folders carry no ``c``.
    - ``k`` when a tool last changed these fields (chmod, chown, utimens), in nanoseconds: the
      node's ctime is the later of it and the mtime. Not the server's modifiedDate, which every
      property request moves: a mirror that learns that time at its next sync would show a ctime
      that jumps after the change, and tar reading at that moment says "file changed as we read it".
    - ``l`` a symlink's target, always the last field (it may contain ``;``); see below.

    Absent fields mean "the mount's default" (``--uid``/``--gid``/``--umask``, the server's
    modifiedDate). Unknown fields are skipped, so a later format can add some.

Symlinks -- a FILE node whose content is the target (UTF-8) and whose record has ``S_IFLNK``. The
    content makes ``st_size`` the target's length, as POSIX wants for a symlink, holds targets of any
    length (Linux allows 4095 bytes; a property value only 500 characters), and shows other clients a
    small file naming the target. When the whole record fits in 500 characters the target is copied
    into ``l`` too, so ``readlink`` of the common short link needs no download.

``x0`` .. ``x8`` -- one ``user.*`` xattr per key: ``<name>=<kind><payload>`` with the name without its
    ``user.`` prefix (``%`` and ``=`` escaped as ``%25``/``%3D``), kind ``t`` for a value that is UTF-8
    text (stored as it is) or ``b`` for any other bytes (base64). One xattr per key keeps every
    setxattr/removexattr a single request (never a half-written set). Beyond nine xattrs, or one whose
    name and value do not fit in 500 characters, setxattr answers ENOSPC.

A file that is not on the server yet (the write side's pending files) keeps the same key -> value map
as JSON text (``PendingAttrs``) and sends it with its upload (``properties_for_upload``).
"""

from __future__ import annotations

import base64
import binascii
import errno
import functools
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, replace

from acdfuse.store.node import ATTRS_KEY

FORMAT = "a1"
MAX_KEYS = 10          # per owner and node (acd-api.md section 9)
MAX_VALUE = 500        # characters per value
RECORD_KEY = ATTRS_KEY
XATTR_KEYS = tuple(f"x{i}" for i in range(MAX_KEYS - 1))
USER_PREFIX = "user."
LINK_MAX = 4095        # bytes of a symlink target (PATH_MAX - 1), as Linux allows
XATTR_NAME_MAX = 255   # bytes, the kernel's limit (XATTR_NAME_MAX)

# text stored as it is: no control characters other than tab and newlines (those go as base64, so
# a value never holds a NUL that some store on the way might cut)
_PLAIN_TEXT = re.compile(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*")


class NoSpace(OSError):
    """The attributes do not fit in the node's properties (ENOSPC, as a full xattr block on ext4)."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.ENOSPC, message)


@dataclass(frozen=True, slots=True)
class PosixRecord:
    """The stat-like fields of one node; None means "not stored, use the mount's default"."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None
    mtime_cv: int | None = None   # content version the mtime belongs to (files only)
    link: str | None = None       # inline symlink target; None with S_IFLNK: the target is the content
    ctime_ns: int | None = None   # when a tool last changed these fields (chmod, chown, utimens)

    @property
    def is_symlink(self) -> bool:
        return self.mode is not None and stat.S_ISLNK(self.mode)

    @property
    def is_empty(self) -> bool:
        return self == _EMPTY

    def encode(self) -> str:
        """The property value; the inline target is left out when the record would not fit."""
        parts = [FORMAT]
        if self.mode is not None:
            parts.append(f"m{self.mode:o}")
        if self.uid is not None:
            parts.append(f"u{self.uid}")
        if self.gid is not None:
            parts.append(f"g{self.gid}")
        if self.mtime_ns is not None:
            parts.append(f"t{self.mtime_ns}")
        if self.mtime_cv is not None:
            parts.append(f"c{self.mtime_cv}")
        if self.ctime_ns is not None:
            parts.append(f"k{self.ctime_ns}")
        head = ";".join(parts)
        if self.link is not None and len(head) + 2 + len(self.link) <= MAX_VALUE:
            return f"{head};l{self.link}"
        return head

    @classmethod
    def decode(cls, value: str | None) -> PosixRecord | None:
        """The record in a property value, or None for a value of another format or a damaged one."""
        if not value or not value.startswith(FORMAT):
            return None
        if len(value) > len(FORMAT) and value[len(FORMAT)] != ";":
            return None   # "a10..." is another format, not this one
        fields: dict[str, int] = {}
        link = None
        pos = len(FORMAT) + 1
        try:
            while pos < len(value):
                tag = value[pos]
                if tag == "l":
                    link = value[pos + 1:]
                    break
                end = value.find(";", pos)
                end = len(value) if end < 0 else end
                text = value[pos + 1:end]
                if tag in "ugtck":
                    fields[tag] = int(text, 10)
                elif tag == "m":
                    fields[tag] = int(text, 8)
                pos = end + 1
        except ValueError:
            return None
        return cls(fields.get("m"), fields.get("u"), fields.get("g"), fields.get("t"), fields.get("c"), link,
                   fields.get("k"))


_EMPTY = PosixRecord()


# ---- the stat path ---------------------------------------------------------------------------------

StatFields = tuple["int | None", "int | None", "int | None", "int | None", "int | None", bool, "int | None"]


@functools.lru_cache(maxsize=4096)
def stat_fields(value: str) -> StatFields | None:
    """(permission bits, uid, gid, mtime_ns, mtime content version, is symlink, ctime_ns) of a record.

    Cached by the value: getattr is the hottest call and most nodes of a tree share few records
    (``cp -a`` of a tree gives most files the same mode and owner, only mtimes differ)."""
    rec = PosixRecord.decode(value)
    if rec is None:
        return None
    perms = None if rec.mode is None else stat.S_IMODE(rec.mode)
    return perms, rec.uid, rec.gid, rec.mtime_ns, rec.mtime_cv, rec.is_symlink, rec.ctime_ns


# ---- xattrs ----------------------------------------------------------------------------------------

def _escape_name(name: str) -> str:
    return name.replace("%", "%25").replace("=", "%3D")


def _unescape_name(text: str) -> str:
    return text.replace("%3D", "=").replace("%25", "%")


def encode_xattr(name: str, value: bytes) -> str:
    """The slot value of one ``user.*`` xattr; NoSpace when it cannot fit in one property value."""
    if not name.startswith(USER_PREFIX):
        raise OSError(errno.ENOTSUP, f"only user.* xattrs are stored, not {name!r}")
    try:
        text: str | None = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _PLAIN_TEXT.fullmatch(text):
        kind, payload = "t", text
    else:
        kind, payload = "b", base64.b64encode(value).decode("ascii")
    slot = f"{_escape_name(name[len(USER_PREFIX):])}={kind}{payload}"
    if len(slot) > MAX_VALUE:
        raise NoSpace(f"xattr {name!r} of {len(value)} bytes takes {len(slot)} characters; a property "
                      f"value holds {MAX_VALUE}")
    return slot


def decode_xattr(slot: str) -> tuple[str, bytes] | None:
    """(name, value) of a slot value, or None for a damaged one."""
    sep = slot.find("=")
    if sep < 1 or sep + 1 >= len(slot):
        return None
    name = USER_PREFIX + _unescape_name(slot[:sep])
    kind, payload = slot[sep + 1], slot[sep + 2:]
    if kind == "t":
        return name, payload.encode("utf-8")
    if kind == "b":
        try:
            return name, base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def xattr_slots(props: Mapping[str, str]) -> dict[str, tuple[str, bytes]]:
    """name -> (property key, value) of every readable xattr slot in an owner's properties."""
    found: dict[str, tuple[str, bytes]] = {}
    for key in XATTR_KEYS:
        slot = props.get(key)
        if slot is None:
            continue
        item = decode_xattr(slot)
        if item is not None and item[0] not in found:
            found[item[0]] = (key, item[1])
    return found


def free_slot(props: Mapping[str, str]) -> str | None:
    """A property key for a new xattr, within the owner's key limit; None when all are taken."""
    used = sum(1 for key in props if key != RECORD_KEY)
    if used >= MAX_KEYS - 1:   # the record's key stays reserved, also while it is absent
        return None
    return next((key for key in XATTR_KEYS if key not in props), None)


# ---- changes to one node's properties ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Change:
    """What to send for one attribute change: keys to put (key -> value) and keys to delete."""

    put: dict[str, str]
    delete: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.put and not self.delete


def set_xattr(props: Mapping[str, str], name: str, value: bytes, flags: int = 0) -> Change:
    """The change that stores ``name`` = ``value`` (``flags``: os.XATTR_CREATE / os.XATTR_REPLACE)."""
    if len(name.encode("utf-8", "surrogateescape")) > XATTR_NAME_MAX:
        raise OSError(errno.ERANGE, f"xattr name longer than {XATTR_NAME_MAX} bytes")
    slot = encode_xattr(name, value)
    current = xattr_slots(props).get(name)
    if current is not None and flags & os.XATTR_CREATE:
        raise OSError(errno.EEXIST, f"xattr {name!r} exists")
    if current is None and flags & os.XATTR_REPLACE:
        raise OSError(errno.ENODATA, f"no xattr {name!r}")
    if current is not None:
        return Change({} if props.get(current[0]) == slot else {current[0]: slot})
    free = free_slot(props)
    if free is None:
        raise NoSpace(f"no room for xattr {name!r}: {len(XATTR_KEYS)} xattrs per node at most")
    return Change({free: slot})


def remove_xattr(props: Mapping[str, str], name: str) -> Change:
    current = xattr_slots(props).get(name)
    if current is None:
        raise OSError(errno.ENODATA, f"no xattr {name!r}")
    return Change({}, (current[0],))


def set_record(props: Mapping[str, str], record: PosixRecord) -> Change:
    value = record.encode()
    if props.get(RECORD_KEY) == value:
        return Change({})
    if record.is_empty:
        return Change({}, (RECORD_KEY,) if RECORD_KEY in props else ())
    return Change({RECORD_KEY: value})


def apply_change(props: Mapping[str, str], change: Change) -> dict[str, str]:
    out = {k: v for k, v in props.items() if k not in change.delete}
    out.update(change.put)
    return out


def current_record(props: Mapping[str, str]) -> PosixRecord:
    return PosixRecord.decode(props.get(RECORD_KEY)) or _EMPTY


# ---- files that are not on the server yet ---------------------------------------------------------

# the id the write side gives a new file until its upload (vfs/writes.py PENDING_PREFIX)
LOCAL_PREFIX = "local:"


def is_local_id(node_id: str) -> bool:
    return node_id.startswith(LOCAL_PREFIX)


def without_mtime(props: Mapping[str, str]) -> dict[str, str]:
    """``props`` with the record's mtime dropped (kept for a file being rewritten: see attrops)."""
    out = dict(props)
    record = PosixRecord.decode(out.get(RECORD_KEY))
    if record is not None and record.mtime_ns is not None:
        rest = replace(record, mtime_ns=None, mtime_cv=None)
        if rest.is_empty:
            del out[RECORD_KEY]
        else:
            out[RECORD_KEY] = rest.encode()
    return out


def pending_record(attrs_json: str | None, server_record: str | None, local_mtime_ns: int) -> str:
    """The record a file with local content shows: the one kept for its upload, else the server's
    without its mtime (which described the old content); either with the time of the last local write
    as mtime, in nanoseconds, unless a tool set one."""
    if attrs_json:
        record = PosixRecord.decode(pending_props(attrs_json).get(RECORD_KEY)) or _EMPTY
    else:
        record = PosixRecord.decode(server_record) or _EMPTY
        record = replace(record, mtime_ns=None, mtime_cv=None)
    if record.mtime_ns is None:
        record = replace(record, mtime_ns=local_mtime_ns)
    return replace(record, mtime_cv=None).encode()


def pending_props(attrs_json: str | None) -> dict[str, str]:
    """The property map kept for a pending file (``WriteSide.get_attrs``), {} when none."""
    if not attrs_json:
        return {}
    data = json.loads(attrs_json)
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def pending_json(props: Mapping[str, str]) -> str:
    """The text ``WriteSide.set_attrs`` keeps for a pending file."""
    return json.dumps(dict(sorted(props.items())), separators=(",", ":"))


def properties_for_upload(attrs_json: str | None, content_version: int,
                          local_mtime_ns: int | None = None) -> dict[str, str]:
    """The properties (key -> value, under the app's owner) to send with, or right after, an upload.

    ``content_version`` is the content version the upload creates (1 for a new node): the record's
    mtime is bound to it, so the mtime a tool set on the pending file (``cp -p``, ``rsync -a``) is the
    one shown after the upload. A record without an mtime gets ``local_mtime_ns`` when given, and so
    does a file with no record at all: it shows the time of its last write, as on a local disk, not
    the time of the upload.
    """
    props = pending_props(attrs_json)
    record = PosixRecord.decode(props.get(RECORD_KEY))
    if record is None and local_mtime_ns is not None:
        record = PosixRecord()      # a file without attributes still keeps its local mtime
    if record is not None:
        if record.mtime_ns is None and local_mtime_ns is not None:
            record = replace(record, mtime_ns=local_mtime_ns)
        if record.mtime_ns is not None:
            props[RECORD_KEY] = replace(record, mtime_cv=content_version).encode()
    return props
