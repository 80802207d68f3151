"""The POSIX attribute codec (vfs/posixattrs.py): round trips, the property limits, ENOSPC; then the same
values through the real server's properties endpoints and node JSON."""

from __future__ import annotations

import errno
import io
import os
import random
import stat
from dataclasses import replace

import pytest

from acdfuse.api.common import RequestError
from acdfuse.vfs import posixattrs as pa
from acdfuse.vfs.posixattrs import PosixRecord


@pytest.mark.parametrize("record", [
    PosixRecord(),
    PosixRecord(mode=stat.S_IFREG | 0o644),
    PosixRecord(mode=stat.S_IFDIR | 0o1777, uid=0, gid=0),
    PosixRecord(mode=stat.S_IFREG | 0o4755, uid=4294967294, gid=65534, mtime_ns=1_700_000_000_123_456_789,
                mtime_cv=12),
    PosixRecord(mtime_ns=-1_500_000_000),   # before 1970
    PosixRecord(mode=stat.S_IFLNK | 0o777, link="../a;l;b/c=d%e"),
    PosixRecord(mode=stat.S_IFLNK | 0o777, link=""),
    PosixRecord(mode=stat.S_IFLNK | 0o777, link="ünïcødé/→/日本"),
    PosixRecord(mode=stat.S_IFLNK | 0o777, mtime_ns=5, ctime_ns=1_700_000_000_000_000_000, link="x;k9"),
])
def test_record_round_trip(record: PosixRecord) -> None:
    value = record.encode()
    assert value.startswith("a1") and len(value) <= pa.MAX_VALUE
    assert PosixRecord.decode(value) == record


def test_record_is_compact() -> None:
    value = PosixRecord(stat.S_IFREG | 0o644, 1000, 1000, 1_700_000_000_123_456_789, 3).encode()
    assert value == "a1;m100644;u1000;g1000;t1700000000123456789;c3"


def test_long_symlink_target_stays_in_content_only() -> None:
    head = PosixRecord(mode=stat.S_IFLNK | 0o777, uid=1000, gid=1000, mtime_ns=1_700_000_000_000_000_000,
                       mtime_cv=1)
    fits = "x" * (pa.MAX_VALUE - len(head.encode()) - 2)
    assert PosixRecord.decode(replace(head, link=fits).encode()) == replace(head, link=fits)
    for target in (fits + "y", "t" * pa.LINK_MAX):
        value = replace(head, link=target).encode()
        assert len(value) <= pa.MAX_VALUE
        back = PosixRecord.decode(value)
        assert back == head and back is not None and back.is_symlink and back.link is None


@pytest.mark.parametrize("value", ["", "a2;m644", "a10;m644", "junk", "a1;m9z", "a1;uX", "a1;t"])
def test_other_or_damaged_records_are_ignored(value: str) -> None:
    assert PosixRecord.decode(value) is None
    assert pa.stat_fields(value) is None


def test_unknown_fields_are_skipped() -> None:
    assert PosixRecord.decode("a1;m100600;z123;u5") == PosixRecord(mode=0o100600, uid=5)
    assert PosixRecord.decode("a1") == PosixRecord()


def test_stat_fields() -> None:
    assert pa.stat_fields("a1;m120777;t5;c2") == (0o777, None, None, 5, 2, True, None)
    assert pa.stat_fields("a1;u7;k9") == (None, 7, None, None, None, False, 9)


@pytest.mark.parametrize("name,value", [
    ("user.a", b""),
    ("user.mime_type", b"text/plain"),
    ("user.multi\nline", "tab\tnew\nline ünï".encode()),
    ("user.a=b%3Dc", b"x"),
    ("user.%", b"%25"),
    ("user.bin", bytes(range(256))),
    ("user.nul", b"a\x00b"),
    ("user.latin1", "café".encode("latin-1")),
])
def test_xattr_round_trip(name: str, value: bytes) -> None:
    slot = pa.encode_xattr(name, value)
    assert len(slot) <= pa.MAX_VALUE
    assert pa.decode_xattr(slot) == (name, value)


def test_xattr_text_stays_readable() -> None:
    assert pa.encode_xattr("user.mime_type", b"text/plain") == "mime_type=ttext/plain"
    assert pa.encode_xattr("user.b", b"\xff") == "b=b/w=="


def test_random_xattrs_round_trip() -> None:
    rnd = random.Random(7)   # noqa: S311 - test data, not secrets
    for _ in range(500):
        name = "user." + "".join(rnd.choice("ab=%.-_ü") for _ in range(rnd.randint(1, 20)))
        value = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
        assert pa.decode_xattr(pa.encode_xattr(name, value)) == (name, value)


def test_xattr_limits() -> None:
    # the biggest text value: name + "=" + kind + payload is exactly 500 characters
    biggest = b"v" * (pa.MAX_VALUE - len("k=t"))
    assert len(pa.encode_xattr("user.k", biggest)) == pa.MAX_VALUE
    with pytest.raises(OSError) as info:
        pa.encode_xattr("user.k", biggest + b"v")
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as info:
        pa.encode_xattr("user.k", os.urandom(400))     # 400 bytes of base64 take 536 characters
    assert info.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as info:
        pa.encode_xattr("security.selinux", b"x")
    assert info.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as info:
        pa.set_xattr({}, "user." + "n" * 251, b"")
    assert info.value.errno == errno.ERANGE


def test_nine_xattrs_then_enospc() -> None:
    props: dict[str, str] = {pa.RECORD_KEY: "a1;m100644"}
    for i in range(9):
        change = pa.set_xattr(props, f"user.k{i}", b"v")
        assert not change.delete and len(change.put) == 1
        props = pa.apply_change(props, change)
    assert len(props) == pa.MAX_KEYS
    with pytest.raises(OSError) as info:
        pa.set_xattr(props, "user.tenth", b"v")
    assert info.value.errno == errno.ENOSPC
    # replacing one that exists still works, in its own slot
    change = pa.set_xattr(props, "user.k4", b"new")
    assert change.put == {"x4": "k4=tnew"}
    # the record's key stays reserved even while no record exists
    no_record = {k: v for k, v in props.items() if k != pa.RECORD_KEY}
    with pytest.raises(OSError):
        pa.set_xattr(no_record, "user.tenth", b"v")
    # foreign keys of the same owner count against the limit
    with pytest.raises(OSError):
        pa.set_xattr({f"other{i}": "v" for i in range(9)}, "user.a", b"v")


def test_xattr_flags_and_removal() -> None:
    props = pa.apply_change({}, pa.set_xattr({}, "user.a", b"1"))
    assert pa.xattr_slots(props) == {"user.a": ("x0", b"1")}
    assert pa.set_xattr(props, "user.a", b"1").is_empty   # unchanged: nothing to send
    for flags, name, code in ((os.XATTR_CREATE, "user.a", errno.EEXIST),
                              (os.XATTR_REPLACE, "user.b", errno.ENODATA)):
        with pytest.raises(OSError) as info:
            pa.set_xattr(props, name, b"2", flags)
        assert info.value.errno == code
    assert pa.set_xattr(props, "user.a", b"2", os.XATTR_REPLACE).put == {"x0": "a=t2"}
    assert pa.remove_xattr(props, "user.a") == pa.Change({}, ("x0",))
    with pytest.raises(OSError) as info:
        pa.remove_xattr(props, "user.b")
    assert info.value.errno == errno.ENODATA
    # a damaged slot is not an xattr, and its key is not free either
    assert pa.xattr_slots({"x0": "junk"}) == {} and pa.free_slot({"x0": "junk"}) == "x1"


def test_record_changes() -> None:
    assert pa.set_record({}, PosixRecord()).is_empty
    assert pa.set_record({}, PosixRecord(uid=1)).put == {pa.RECORD_KEY: "a1;u1"}
    assert pa.set_record({pa.RECORD_KEY: "a1;u1"}, PosixRecord(uid=1)).is_empty
    assert pa.set_record({pa.RECORD_KEY: "a1;u1"}, PosixRecord()).delete == (pa.RECORD_KEY,)
    assert pa.current_record({pa.RECORD_KEY: "a1;g3"}) == PosixRecord(gid=3)
    assert pa.current_record({pa.RECORD_KEY: "zz"}) == PosixRecord()


def test_pending_attrs_and_upload_binding() -> None:
    props = {pa.RECORD_KEY: PosixRecord(mode=0o100600, mtime_ns=5).encode(), "x0": "a=t1"}
    text = pa.pending_json(props)
    assert pa.pending_props(text) == props and pa.pending_props(None) == {} and pa.pending_props("") == {}
    sent = pa.properties_for_upload(text, content_version=1)
    assert PosixRecord.decode(sent[pa.RECORD_KEY]) == PosixRecord(mode=0o100600, mtime_ns=5, mtime_cv=1)
    assert sent["x0"] == "a=t1"
    # without an mtime there is nothing to bind
    assert pa.properties_for_upload(pa.pending_json({pa.RECORD_KEY: "a1;m100644"}), 3) == {
        pa.RECORD_KEY: "a1;m100644"}


# ---- against the real server -------------------------------------------------------------------

def test_values_at_the_limits_fit_the_servers_properties(client) -> None:  # type: ignore[no-untyped-def]
    """A record and nine xattr slots, each as long as the codec allows, are exactly what the server
    takes; they come back through list_properties and the node JSON, and decode to what was stored."""
    node = client.upload_stream(io.BytesIO(b"x"), "limits.txt")
    owner = node["createdBy"]
    record = PosixRecord(stat.S_IFLNK | 0o777, 4294967294, 4294967294, -(10 ** 18), 10 ** 6)
    record = replace(record, link="L" * (pa.MAX_VALUE - len(record.encode()) - len(";l")))
    props: dict[str, str] = {pa.RECORD_KEY: record.encode()}
    values = {}
    for i in range(9):
        name = f"user.{i}" + "n" * 40
        values[name] = ("ü" * (pa.MAX_VALUE - len(name) - 2 + len("user."))).encode()
        props = pa.apply_change(props, pa.set_xattr(props, name, values[name]))
    assert len(props) == pa.MAX_KEYS and all(len(v) == pa.MAX_VALUE for v in props.values())
    for key, value in props.items():
        client.add_property(node["id"], owner, key, value)
    assert client.list_properties(node["id"], owner) == props
    shown = client.get_metadata(node["id"])["properties"][owner]
    assert PosixRecord.decode(shown[pa.RECORD_KEY]) == record
    assert {n: v for n, (_, v) in pa.xattr_slots(shown).items()} == values
    # one character more is refused by the server, as the codec refuses it first
    with pytest.raises(RequestError) as info:
        client.add_property(node["id"], owner, "x0", "v" * (pa.MAX_VALUE + 1))
    assert info.value.status_code == 400
    with pytest.raises(RequestError):
        client.add_property(node["id"], owner, "eleventh", "v")


def test_local_content_records() -> None:
    server = PosixRecord(mode=0o100750, uid=3, mtime_ns=5, mtime_cv=2).encode()
    # a file being rewritten: the server's record without its mtime, the local write time instead
    shown = PosixRecord.decode(pa.pending_record(None, server, 99))
    assert shown == PosixRecord(mode=0o100750, uid=3, mtime_ns=99)
    assert PosixRecord.decode(pa.pending_record(None, None, 99)) == PosixRecord(mtime_ns=99)
    # what a tool set while the content was local wins, unbound until the upload
    kept = pa.pending_json({pa.RECORD_KEY: PosixRecord(mode=0o100600, mtime_ns=7).encode()})
    assert PosixRecord.decode(pa.pending_record(kept, server, 99)) == PosixRecord(mode=0o100600, mtime_ns=7)
    kept = pa.pending_json({pa.RECORD_KEY: PosixRecord(mode=0o100600).encode()})
    assert PosixRecord.decode(pa.pending_record(kept, server, 99)) == PosixRecord(mode=0o100600, mtime_ns=99)
    assert pa.without_mtime({pa.RECORD_KEY: server, "x0": "a=t1"}) == {
        pa.RECORD_KEY: PosixRecord(mode=0o100750, uid=3).encode(), "x0": "a=t1"}
    assert pa.without_mtime({pa.RECORD_KEY: "a1;t5;c1"}) == {}
    assert pa.is_local_id("local:3") and not pa.is_local_id("AbC")


def test_upload_gets_the_local_mtime_unless_a_tool_set_one() -> None:
    only_xattr = pa.pending_json({"x0": "a=t1"})
    sent = pa.properties_for_upload(only_xattr, 4, local_mtime_ns=1234)
    assert PosixRecord.decode(sent[pa.RECORD_KEY]) == PosixRecord(mtime_ns=1234, mtime_cv=4)
    set_by_tool = pa.pending_json({pa.RECORD_KEY: PosixRecord(mtime_ns=9).encode()})
    sent = pa.properties_for_upload(set_by_tool, 4, local_mtime_ns=1234)
    assert PosixRecord.decode(sent[pa.RECORD_KEY]) == PosixRecord(mtime_ns=9, mtime_cv=4)
    # no attributes at all: the time of the last write still goes up (not the time of the upload)
    assert pa.properties_for_upload(None, 4, local_mtime_ns=1234) == {pa.RECORD_KEY: "a1;t1234;c4"}
    assert pa.properties_for_upload(None, 4) == {}
