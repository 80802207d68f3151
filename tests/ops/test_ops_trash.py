"""``/.Trash`` through the operations of a built stack (no kernel): the drive's trash as a read-only folder,
restore by moving out, the desktop trash folder GLib uses, and a real ``.Trash`` folder winning."""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

from ops_helpers import StackFactory, fails_with, fi, read_file, resync, upload

from acdfuse.mount import Stack


def names(stack: Stack, path: str) -> list[str]:
    return [e if isinstance(e, str) else e[0] for e in stack.ops.readdir(path, 0)][2:]


def trash_of(stack: Stack) -> str:
    return f"/.Trash/{os.getuid()}"


def test_deleted_files_show_in_the_trash_read_only(stacks: StackFactory, client: Any) -> None:
    folder = client.create_folder("docs")
    upload(client, "a.txt", b"alpha", folder["id"])
    inner = client.create_folder("inner", folder["id"])
    upload(client, "deep.txt", b"deep", inner["id"])
    stack = stacks()
    ops = stack.ops
    ops.unlink("/docs/a.txt")
    client.move_to_trash(inner["id"])       # trashed by another client
    resync(stack)
    assert ".Trash" not in names(stack, "/")            # hidden from the root listing, reachable by path
    assert set(names(stack, "/.Trash")) == {str(os.getuid()), "a.txt", "inner"}
    assert read_file(stack, "/.Trash/a.txt") == b"alpha"
    assert names(stack, "/.Trash/inner") == ["deep.txt"]
    assert read_file(stack, "/.Trash/inner/deep.txt") == b"deep"
    st = ops.getattr("/.Trash/a.txt")
    assert stat.S_ISREG(st["st_mode"]) and not st["st_mode"] & 0o222
    assert ops.getattr("/.Trash")["st_mode"] & stat.S_ISVTX
    fails_with(errno.EROFS, lambda: ops.unlink("/.Trash/a.txt"))
    fails_with(errno.EROFS, lambda: ops.create("/.Trash/new.txt", 0o644, fi(os.O_WRONLY | os.O_CREAT)))
    fails_with(errno.EROFS, lambda: ops.open("/.Trash/a.txt", fi(os.O_WRONLY)))
    fails_with(errno.EROFS, lambda: ops.mkdir("/.Trash/d", 0o755))
    fails_with(errno.EROFS, lambda: ops.rmdir("/.Trash/inner"))
    fails_with(errno.EROFS, lambda: ops.chmod("/.Trash/a.txt", 0o600))
    fails_with(errno.EROFS, lambda: ops.rename("/.Trash/a.txt", "/.Trash/b.txt"))
    fails_with(errno.EROFS, lambda: ops.truncate("/.Trash/a.txt", 0))
    fails_with(errno.ENOENT, lambda: ops.getattr("/.Trash/missing"))
    fails_with(errno.EEXIST, lambda: ops.mkdir("/.Trash", 0o755))   # never a real one from here


def test_moving_out_restores(stacks: StackFactory, client: Any) -> None:
    folder = client.create_folder("docs")
    other = client.create_folder("other")
    upload(client, "a.txt", b"alpha", folder["id"])
    upload(client, "b.txt", b"bravo", folder["id"])
    upload(client, "c.txt", b"new c", other["id"])
    stack = stacks()
    ops = stack.ops
    ops.unlink("/docs/a.txt")
    ops.unlink("/docs/b.txt")
    ops.rename("/.Trash/a.txt", "/docs/a.txt")               # back where it was: one restore
    assert read_file(stack, "/docs/a.txt") == b"alpha"
    ops.rename("/.Trash/b.txt", "/other/c.txt")              # elsewhere, over an existing file
    assert read_file(stack, "/other/c.txt") == b"bravo"
    assert names(stack, "/docs") == ["a.txt"]
    assert "c.txt" in names(stack, "/.Trash")                # the replaced file went to the trash
    node = stack.store.resolve("/other/c.txt")
    server = client.get_metadata(node.id)
    assert server["status"] == "AVAILABLE" and server["name"] == "c.txt"
    assert server["parents"] == [other["id"]]
    # a case-only clash at the destination is refused, as everywhere on the drive
    fails_with(errno.EEXIST, lambda: ops.rename("/.Trash/c.txt", "/other/C.TXT"))


def test_same_names_in_the_trash(stacks: StackFactory, client: Any) -> None:
    stack = stacks()
    ops = stack.ops
    first = upload(client, "x.txt", b"first")
    resync(stack)
    ops.unlink("/x.txt")
    upload(client, "x.txt", b"second")
    resync(stack)
    ops.unlink("/x.txt")
    shown = names(stack, "/.Trash")
    assert "x.txt" in shown and f"x ({first['id']}).txt" in shown
    assert read_file(stack, "/.Trash/x.txt") == b"second"          # the last trashed keeps the name
    ops.rename(f"/.Trash/x ({first['id']}).txt", "/x.txt")
    assert read_file(stack, "/x.txt") == b"first"
    assert names(stack, "/.Trash") == [str(os.getuid()), "x.txt"]


def test_the_desktop_trash_as_glib_uses_it(stacks: StackFactory, client: Any) -> None:
    photo = upload(client, "photo.jpg", b"jpeg")
    stack = stacks()
    ops = stack.ops
    home = trash_of(stack)
    st = ops.getattr(home)
    assert stat.S_ISDIR(st["st_mode"]) and st["st_uid"] == os.getuid()
    fails_with(errno.EEXIST, lambda: ops.mkdir(home, 0o700))
    fails_with(errno.EEXIST, lambda: ops.mkdir(home + "/info", 0o700))
    info = fi(os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    ops.create(home + "/info/photo.jpg.trashinfo", 0o666, info)
    ops.release(home + "/info/photo.jpg.trashinfo", info)
    ops.rename("/photo.jpg", home + "/files/photo.jpg")
    assert client.get_metadata(photo["id"])["status"] == "TRASH"
    # GLib then writes the info file through a temp file renamed over it
    tmp = home + "/info/photo.jpg.trashinfo.ABC123"
    f = fi(os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    ops.create(tmp, 0o666, f)
    text = b"[Trash Info]\nPath=photo.jpg\nDeletionDate=2026-12-07T01:00:00\n"
    assert ops.write(tmp, text, 0, f) == len(text)
    ops.release(tmp, f)
    ops.rename(tmp, home + "/info/photo.jpg.trashinfo")
    assert names(stack, home + "/files") == ["photo.jpg"]
    assert names(stack, home + "/info") == ["photo.jpg.trashinfo"]
    assert read_file(stack, home + "/info/photo.jpg.trashinfo") == text
    listed = dict(ops.readdir_plus(home + "/info", 0)[2:])      # READDIRPLUS says what a lookup says
    assert listed["photo.jpg.trashinfo"] == ops.getattr(home + "/info/photo.jpg.trashinfo")
    assert read_file(stack, "/.Trash/photo.jpg") == b"jpeg"
    assert ".Trash-%d" % os.getuid() not in names(stack, "/")


def test_a_generated_info_file_names_the_original_place(stacks: StackFactory, client: Any) -> None:
    folder = client.create_folder("my docs")
    upload(client, "r.pdf", b"pdf", folder["id"])
    stack = stacks()
    stack.ops.unlink("/my docs/r.pdf")
    text = read_file(stack, trash_of(stack) + "/info/r.pdf.trashinfo").decode()
    assert text.startswith("[Trash Info]\nPath=my%20docs/r.pdf\nDeletionDate=")


def test_a_real_trash_folder_wins(stacks: StackFactory, client: Any) -> None:
    real = client.create_folder(".Trash")
    upload(client, "kept.txt", b"mine", real["id"])
    upload(client, "gone.txt", b"x")
    stack = stacks()
    stack.ops.unlink("/gone.txt")
    assert names(stack, "/.Trash") == ["kept.txt"]
    assert read_file(stack, "/.Trash/kept.txt") == b"mine"
    assert not stack.ops.getattr("/.Trash")["st_mode"] & stat.S_ISVTX


def test_a_read_only_mount_shows_the_trash_and_restores_nothing(stacks: StackFactory, client: Any) -> None:
    node = upload(client, "t.txt", b"trashed")
    client.move_to_trash(node["id"])
    stack = stacks(read_only=True)
    assert read_file(stack, "/.Trash/t.txt") == b"trashed"
    assert stack.ops.getattr("/.Trash")["st_mode"] & 0o7777 == 0o1555
    fails_with(errno.EROFS, lambda: stack.ops.rename("/.Trash/t.txt", "/t.txt"))
    fails_with(errno.EROFS, lambda: stack.ops.create(trash_of(stack) + "/info/t.txt.trashinfo", 0o600,
                                                     fi(os.O_WRONLY | os.O_CREAT)))
