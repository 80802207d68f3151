"""The config file and ``-o key=value``: precedence (default < file < -o < flag), parsing, and the
one-line errors for a wrong key or value, also as the real command line prints them."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from acdfuse.cli import build_parser
from acdfuse.cli_mount import build_options, child_argv
from acdfuse.common.xdg import XdgDirs
from acdfuse.runtime.config import ConfigError, load_config, parse_o_options
from acdfuse.runtime.options import Options
from acdfuse.runtime.paths import ClientDirs
from acdfuse.vfs import GiB, MiB


@pytest.fixture(autouse=True)
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))


def options(*argv: str) -> Options:
    dirs = ClientDirs.from_xdg(XdgDirs.from_environ(os.environ, Path.home()))
    args: argparse.Namespace = build_parser().parse_args(list(argv))
    return build_options(args, dirs)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xdg_config_home" / "acdfuse" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_precedence_default_file_o_flag(tmp_path: Path) -> None:
    mnt = str(tmp_path / "m")
    assert options("mount", mnt).interval == Options.interval
    write_config(tmp_path, 'interval = 15\ncache_size = "8G"\nstreams = 2\nread_only = true\n'
                           'umask = "027"\nfuse_options = ["noatime"]\n')
    opts = options("mount", mnt)
    assert (opts.interval, opts.cache_size, opts.streams, opts.umask) == (15, 8 * GiB, 2, 0o027)
    assert opts.read_only and opts.fuse_options == ("noatime",)
    # -o beats the file; a flag beats -o
    opts = options("mount", mnt, "-o", "interval=20,cache-size=1G,rw,max_read=65536")
    assert (opts.interval, opts.cache_size, opts.streams) == (20, GiB, 2)
    assert not opts.read_only
    assert opts.fuse_options == ("noatime", "max_read=65536")
    opts = options("mount", mnt, "-o", "interval=20", "--interval", "25", "--streams", "3")
    assert (opts.interval, opts.streams) == (25, 3)
    # another file with --config; the default one is then not read
    other = tmp_path / "other.toml"
    other.write_text("timeout = 9\n")
    opts = options("mount", mnt, "--config", str(other))
    assert opts.timeout == 9 and opts.interval == Options.interval


def test_file_paths_choose_the_drive(tmp_path: Path) -> None:
    cdir, cache = tmp_path / "cdir", tmp_path / "cache"
    write_config(tmp_path, f'config_dir = "{cdir}"\ncache_dir = "{cache}"\n')
    opts = options("mount", str(tmp_path / "m"))
    assert opts.config_dir == cdir and opts.cache_dir == cache and opts.embedded is None


def test_o_options() -> None:
    ours, fuse = parse_o_options(["ro,allow_other,uid=7,gid=8,umask=077", "memory-cache=64M,debug",
                                  "fsname=drive,_netdev,defaults,nonempty,x-systemd.automount"])
    assert ours == {"read_only": True, "allow_other": True, "uid": 7, "gid": 8, "umask": 0o077,
                    "memory_cache": 64 * MiB, "debug": True, "nonempty": True}
    # fstab's own words never reach libfuse; unknown options do, as given
    assert fuse == ("fsname=drive",)
    for bad, words in (("interval=0", "interval=0: must be positive"), ("interval", "needs a value"),
                       ("cache_size=lots", "not a size"), ("allow_other=maybe", "not true or false")):
        with pytest.raises(ConfigError, match=words):
            parse_o_options([bad])


def test_child_of_a_configured_mount_gets_the_same_options(tmp_path: Path) -> None:
    write_config(tmp_path, 'interval = 15\nfuse_options = "noatime"\ndebug = true\n')
    opts = options("mount", str(tmp_path / "m"), "-o", "max_read=65536")
    argv = child_argv(opts)
    assert "--no-config" in argv
    assert options(*argv[3:]) == Options(**{**opts.__dict__, "foreground": True})


@pytest.mark.parametrize(("text", "line", "words"), [
    ("interval = 5\ncache_siz = 1\n", 2, "'cache_siz' is not a mount option"),
    ("interval = 5\n\nstreams = 0\n", 3, "streams: must be at least 1"),
    ("# defaults\ninterval = -1\n", 2, "interval: must be positive"),
    ("read_only = 1\n", 1, "read_only: not true or false"),
    ('cache_size = "lots"\n', 1, "cache_size: not a size"),
    ("interval = 5\ntimeout = \n", 2, "not valid TOML"),
    ("[mount]\ninterval = 5\n", 1, "'mount' is not a mount option"),
])
def test_wrong_file_names_file_line_and_key(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}, line {line}: ") and words in message
    assert "\n" not in message


def run_cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "acdfuse", *argv], capture_output=True, text=True,
                          timeout=60, check=False, env=os.environ.copy())


def test_the_command_line_prints_one_line(tmp_path: Path) -> None:
    mnt = tmp_path / "m"
    path = write_config(tmp_path, "interval = 5\nintervall = 6\n")
    done = run_cli(tmp_path, "mount", str(mnt))
    assert done.returncode == 1
    assert done.stderr.startswith(f"acdfuse mount: {path}, line 2: 'intervall' is not a mount option")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not mnt.exists()
    path.unlink()
    done = run_cli(tmp_path, "mount", str(mnt), "-o", "timeout=never")
    assert done.returncode == 1
    assert done.stderr == "acdfuse mount: -o timeout=never: not a number: 'never'\n"
    done = run_cli(tmp_path, "mount", str(mnt), "--config", str(tmp_path / "nope.toml"))
    assert done.returncode == 1 and "nope.toml: no such config file" in done.stderr
