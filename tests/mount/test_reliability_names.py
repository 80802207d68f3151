"""Names from the local side, through a real mount: each odd name gets a defined errno or is stored
faithfully on the server (checked through the API, not the mount).

The table this test holds is in RELIABILITY.md ("Names from the local side").
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from write_helpers import wait_uploaded, write_file

pytestmark = pytest.mark.mount

# Names the drive stores as they are: bytes through the mount == the name on the server.
FAITHFUL = {
    "255 ASCII bytes": "n" * 255,
    "255 bytes of 3-byte UTF-8": "\u20ac" * 85,
    "a newline": "line1\nline2",
    "a carriage return and a tab": "a\rb\tc",
    "control characters 0x01-0x1f": "c" + "".join(chr(i) for i in range(1, 32) if i != 10),
    "DEL 0x7f": "del\x7f",
    "a backslash, quotes, percent, asterisk, colon": "b\\s\"q'%*:?.txt",
    "leading and trailing spaces": "  spaced  ",
    "leading dash and dots": "-...",
    "three dots": "...",
    "combining characters (NFD)": "e\u0301te\u0301",
    "emoji (4-byte UTF-8)": "\U0001f600" * 63,            # 252 bytes
    "a lone BOM and zero-width joiner": "\ufeff\u200d",
}

# Names the mount refuses, with the errno; each refusal leaves nothing on the server.
REFUSED: dict[str, tuple[bytes, int]] = {
    "256 ASCII bytes": (b"n" * 256, errno.ENAMETOOLONG),
    "256 bytes of 2-byte UTF-8": (("\u00e9" * 128).encode(), errno.ENAMETOOLONG),
    "1024 bytes": (b"x" * 1024, errno.ENAMETOOLONG),
    "invalid UTF-8 (0xff 0xfe)": (b"bad\xff\xfe", errno.EINVAL),
    "a lone continuation byte": (b"\x80", errno.EINVAL),
    "an overlong encoding of '/'": (b"a\xc0\xafb", errno.EINVAL),
    "an encoded surrogate (CESU)": (b"\xed\xa0\x80", errno.EINVAL),
}
# the kernel's answer before any request reaches the mount (over its own 1024-byte FUSE name limit)
KERNEL_LIMIT = (b"y" * 1100, errno.ENAMETOOLONG)


def _errno_of(fn: Any) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def _server_names(client: Any, folder: str) -> set[str]:
    return {n["name"] for n in client.list_children(folder) if n.get("status") == "AVAILABLE"}


def _folder_id(client: Any, name: str) -> str:
    root = client.get_root_id()
    return next(n["id"] for n in client.list_children(root) if n["name"] == name)


def test_odd_names_are_stored_faithfully(cdir: Path, mounts: Any, client: Any) -> None:
    m = mounts(cdir).start("--upload-delay", "0.1")
    files, dirs = m.mnt / "files", m.mnt / "dirs"
    files.mkdir()
    dirs.mkdir()
    for label, name in FAITHFUL.items():
        write_file(files / name, name.encode("utf-8") + b"\n")
        (dirs / name).mkdir()
        assert name in os.listdir(files), label
        assert (files / name).read_bytes() == name.encode() + b"\n", label
    # a rename to each odd name, and back
    write_file(m.mnt / "plain.txt", b"plain")
    for label, name in FAITHFUL.items():
        os.rename(m.mnt / "plain.txt", m.mnt / name)
        assert (m.mnt / name).read_bytes() == b"plain", label
        os.rename(m.mnt / name, m.mnt / "plain.txt")
    wait_uploaded(m.cache_dir)
    assert _server_names(client, _folder_id(client, "files")) == set(FAITHFUL.values())
    assert _server_names(client, _folder_id(client, "dirs")) == set(FAITHFUL.values())
    # and a fresh mount (a new cache) lists and reads them from the server
    m.stop()
    fresh = mounts(cdir, name="fresh", cache="fresh-cache").start()
    assert set(os.listdir(fresh.mnt / "files")) == set(FAITHFUL.values())
    for name in FAITHFUL.values():
        assert (fresh.mnt / "files" / name).read_bytes() == name.encode() + b"\n"
        assert (fresh.mnt / "dirs" / name).is_dir()


def test_refused_names_get_a_defined_errno(cdir: Path, mounts: Any, client: Any) -> None:
    m = mounts(cdir).start("--upload-delay", "0.1")
    base = os.fsencode(m.mnt)
    write_file(m.mnt / "src.txt", b"source")
    (m.mnt / "srcdir").mkdir()
    seen: dict[str, dict[str, int]] = {}
    for label, (raw, want) in {**REFUSED, "over the kernel's limit": KERNEL_LIMIT}.items():
        path = base + b"/" + raw
        got = {
            "create": _errno_of(lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))),
            "mkdir": _errno_of(lambda: os.mkdir(path)),
            "rename": _errno_of(lambda: os.rename(base + b"/src.txt", path)),
            "rename dir": _errno_of(lambda: os.rename(base + b"/srcdir", path)),
            "symlink": _errno_of(lambda: os.symlink(b"src.txt", path)),
            "link": _errno_of(lambda: os.link(base + b"/src.txt", path)),
            "lookup": _errno_of(lambda: os.stat(path)),
        }
        seen[label] = got
        # a lookup of a name that cannot exist: ENOENT or the same refusal, never EIO
        assert got.pop("lookup") in (errno.ENOENT, want), (label, seen[label])
        assert got == dict.fromkeys(got, want), (label, got)
    # a symlink target is kept as text in the node's record: one that is not UTF-8 is refused too
    assert _errno_of(lambda: os.symlink(b"to-\xff", base + b"/link")) == errno.EINVAL
    assert _errno_of(lambda: os.symlink(b"t" * 4096, base + b"/link")) == errno.ENAMETOOLONG
    assert sorted(os.listdir(m.mnt)) == ["src.txt", "srcdir"]
    wait_uploaded(m.cache_dir)
    assert _server_names(client, client.get_root_id()) == {"src.txt", "srcdir"}


def test_dot_and_dotdot_and_the_case_rule(cdir: Path, mounts: Any, client: Any) -> None:
    m = mounts(cdir).start("--upload-delay", "0.1")
    (m.mnt / "d").mkdir()
    write_file(m.mnt / "d" / "f", b"f")
    d = str(m.mnt / "d")
    # "." and "..": the kernel answers these itself; they never reach the drive as names
    assert _errno_of(lambda: os.mkdir(d + "/.")) == errno.EEXIST
    assert _errno_of(lambda: os.mkdir(d + "/..")) == errno.EEXIST
    assert _errno_of(lambda: os.open(d + "/.", os.O_WRONLY | os.O_CREAT)) == errno.EISDIR
    assert _errno_of(lambda: os.rename(d + "/f", d + "/.")) in (errno.EBUSY, errno.EINVAL, errno.EISDIR)
    assert _errno_of(lambda: os.rename(d + "/f", d + "/..")) in (errno.EBUSY, errno.EINVAL, errno.EISDIR,
                                                                 errno.ENOTEMPTY)
    assert _errno_of(lambda: os.rmdir(d + "/.")) == errno.EINVAL
    assert _errno_of(lambda: os.rmdir(d + "/..")) == errno.ENOTEMPTY
    # names that merely contain dots are ordinary names
    write_file(m.mnt / "d" / "..x", b"dots")
    write_file(m.mnt / "d" / ".hidden", b"hidden")
    # the drive's names are unique regardless of case: a second name differing only in case is EEXIST
    write_file(m.mnt / "d" / "Case.txt", b"upper")
    assert _errno_of(lambda: os.open(d + "/case.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)) == errno.EEXIST
    assert _errno_of(lambda: os.mkdir(d + "/CASE.TXT")) == errno.EEXIST
    wait_uploaded(m.cache_dir)
    assert _server_names(client, _folder_id(client, "d")) == {"f", "..x", ".hidden", "Case.txt"}
    assert (m.mnt / "d" / "f").read_bytes() == b"f"
