"""The mount command line: option parsing, the Options it builds, the FUSE options it passes on, and the
foreground command a background mount re-runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from mount_helpers import log_problems

from acdfuse.cli import build_parser
from acdfuse.cli_mount import build_options, child_argv, format_size, parse_size
from acdfuse.common.xdg import XdgDirs
from acdfuse import mount
from acdfuse.mount import fuse_options
from acdfuse.runtime.options import Options
from acdfuse.runtime.paths import ClientDirs
from acdfuse.vfs import GiB, MiB, ReaderOptions


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def options(*argv: str) -> Options:
    """What `acdfuse mount ARGV` would mount, with the XDG dirs of this test's environment."""
    dirs = ClientDirs.from_xdg(XdgDirs.from_environ(os.environ, Path.home()))
    return build_options(parse(*argv), dirs)


@pytest.fixture(autouse=True)
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))


def test_sizes() -> None:
    assert parse_size("512M") == 512 * MiB
    assert parse_size("4G") == 4 * GiB
    assert parse_size("64KiB") == 64 << 10
    assert parse_size("1048576") == MiB
    assert parse_size("1.5G") == 3 * GiB // 2
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")
    for size in (256 * MiB, 4 * GiB, 64 * MiB, 1 << 40, 1536, 12345):
        assert parse_size(format_size(size)) == size
    assert (format_size(256 * MiB), format_size(4 * GiB)) == ("256M", "4G")


def test_each_default_is_defined_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the read path's budgets: ReaderOptions' defaults are the mount's and the command line's
    opts = options("mount", str(tmp_path / "m"))
    reader = ReaderOptions()
    for name in ("memory_cache", "cache_size", "read_ahead", "streams", "timeout"):
        assert getattr(opts, name) == getattr(reader, name), name
    assert opts.reader_options().cache_dir == opts.chunk_dir
    with pytest.raises(SystemExit):
        parse("mount", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    for default in ("(default 256M)", "(default 4G)", "(default 64M)", "(default 4)", "(default 30)",
                    "(default 60)", "(default 022)"):
        assert default in help_text, default


def test_defaults_choose_the_embedded_drive(tmp_path: Path) -> None:
    opts = options("mount", str(tmp_path / "m"))
    assert opts.embedded
    assert opts.config_dir == tmp_path / "xdg_data_home" / "acdfuse" / "credentials"
    assert opts.cache_dir == tmp_path / "xdg_cache_home" / "acdfuse" / "embedded"
    assert opts.log_file.parent == opts.cache_dir
    assert opts.timeout == 30 and opts.read_ahead == 64 * MiB and opts.streams == 4
    assert not opts.foreground and not opts.read_only


def test_a_configured_account_is_used(tmp_path: Path) -> None:
    cdir = tmp_path / "xdg_config_home" / "acdfuse"
    cdir.mkdir(parents=True)
    (cdir / "oauth_data").write_text("{}")
    opts = options("mount", str(tmp_path / "m"))
    assert not opts.embedded and opts.config_dir == cdir
    assert opts.cache_dir.parent == tmp_path / "xdg_cache_home" / "acdfuse"


def test_every_flag(tmp_path: Path) -> None:
    opts = options("mount", str(tmp_path / "m"), "--config-dir", str(tmp_path / "c"), "--cache-dir",
                 str(tmp_path / "cache"), "--foreground", "--read-only", "--interval", "5",
                 "--allow-other", "--uid", "12", "--gid", "34", "--umask", "027", "-o", "max_read=65536",
                 "-o", "nonempty,fsname=x", "--memory-cache", "64M", "--cache-size", "1G",
                   "--read-ahead", "8M", "--streams", "6", "--timeout", "7", "--debug")
    assert opts.config_dir == tmp_path / "c" and opts.cache_dir == tmp_path / "cache"
    assert opts.foreground and opts.read_only and opts.allow_other and opts.debug
    assert (opts.interval, opts.uid, opts.gid, opts.umask) == (5, 12, 34, 0o027)
    assert opts.fuse_options == ("max_read=65536", "fsname=x") and opts.nonempty
    assert (opts.memory_cache, opts.cache_size, opts.read_ahead) == (64 * MiB, GiB, 8 * MiB)
    assert (opts.streams, opts.timeout) == (6, 7)

    kw = fuse_options(opts)
    assert kw["use_ino"] is True and kw["ro"] is True and kw["allow_other"] is True
    assert kw["max_read"] == "65536" and kw["nonempty"] is True and kw["fsname"] == "x"
    assert kw["attr_timeout"] == kw["entry_timeout"] == opts.attr_timeout

    # the background mount re-runs itself with exactly these settings
    again = options(*child_argv(opts)[3:])
    assert again == opts


def test_read_only_is_honoured(tmp_path: Path) -> None:
    ro = options("mount", str(tmp_path / "m"), "--read-only")
    default = options("mount", str(tmp_path / "m"))
    assert ro.read_only and not default.read_only
    assert fuse_options(ro)["ro"] is True and "ro" not in fuse_options(default)
    assert not mount.writable(ro) and mount.writable(default)
    # libfuse 3 takes 1 MiB writes and O_TRUNC with the open by itself: no libfuse 2 option that it
    # would refuse (fs/binding.py adds them when only libfuse 2 is there)
    assert not {"big_writes", "max_write", "atomic_o_trunc"} & (fuse_options(default).keys()
                                                                | fuse_options(ro).keys())


def test_upload_delay_reaches_the_write_side(tmp_path: Path) -> None:
    opts = options("mount", str(tmp_path / "m"), "--upload-delay", "0.5")
    assert opts.upload_delay == 0.5 and opts.write_options().upload_delay == 0.5
    assert options("mount", str(tmp_path / "m")).upload_delay == 3.0
    assert options(*child_argv(opts)[3:]).upload_delay == 0.5


def test_child_of_an_embedded_mount_stays_embedded(tmp_path: Path) -> None:
    opts = options("mount", str(tmp_path / "m"))
    argv = child_argv(opts)
    assert "--config-dir" not in argv and "--foreground" in argv
    assert options(*argv[3:]) == opts.__class__(**{**opts.__dict__, "foreground": True})


def test_bad_values_are_refused(tmp_path: Path) -> None:
    for bad in (["--interval", "0"], ["--timeout", "-1"], ["--umask", "99"], ["--cache-size", "x"]):
        with pytest.raises(SystemExit):
            parse("mount", str(tmp_path), *bad)


def test_log_check_catches_errors_and_tracebacks(tmp_path: Path) -> None:
    log = tmp_path / "acdfuse.log"
    log.write_text(
        "2026-01-01 10:00:00,000 1 MainThread INFO acdfuse.mount: mounting\n"
        "2026-01-01 10:00:01,000 1 Dummy-1 WARNING acdfuse.fs.operations: read /x: EIO\n"
        "2026-01-01 10:00:02,000 1 Dummy-1 ERROR acdfuse.fs.operations: getattr /y failed\n"
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n")
    problems = log_problems(log, [])
    assert len(problems) == 2
    assert "getattr /y" in problems[0] and "ValueError: boom" in problems[1]
    assert log_problems(log, ["getattr /y", "boom"]) == []
