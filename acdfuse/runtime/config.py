"""The mount settings a user can give: their names, value parsers, the config file and ``-o key=value``.

One table (``SETTINGS``) names every mount option that can come from the config file
(``$XDG_CONFIG_HOME/acdfuse/config.toml``) or from ``-o``, with the parser of its value. The command line
(``acdfuse.cli_mount``) layers them: Options' defaults, then the file, then ``-o``, then explicit flags,
and builds one Options from the result. Nothing here reads the environment or touches a mount.

A wrong key or value in the file is a ``ConfigError`` whose text is one line naming the file, the line
and the key: tomllib does not keep line numbers of values, so the line is found by looking for the key's
assignment in the text (the file is flat ``key = value`` lines, so that is exact).
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAME = "config.toml"

_SIZE_UNITS = (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))


class BadValue(argparse.ArgumentTypeError):
    """A value that does not parse; its text says why (argparse prints it for a flag)."""


class ConfigError(Exception):
    """A wrong config file or ``-o`` option, told to the user in one line."""


# ----- value parsers: each takes the TOML value or the text of a flag / -o option ----------------------

def parse_size(text: Any) -> int:
    """Bytes from '512M', '4G', '1048576', '64KiB' style sizes (or a TOML integer)."""
    if isinstance(text, bool):
        raise BadValue(f"not a size: {text!r} (try 512M, 4G)")
    if isinstance(text, int):
        if text < 0:
            raise BadValue(f"size must not be negative: {text!r}")
        return text
    if not isinstance(text, str):
        raise BadValue(f"not a size: {text!r} (try 512M, 4G)")
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    factor = 1
    for suffix, mult in _SIZE_UNITS:
        if value.endswith(suffix):
            value, factor = value[:-1], mult
            break
    try:
        number = float(value)
    except ValueError as exc:
        raise BadValue(f"not a size: {text!r} (try 512M, 4G)") from exc
    if number < 0:
        raise BadValue(f"size must not be negative: {text!r}")
    return int(number * factor)


def format_size(size: int) -> str:
    """'256M' for 256 MiB: the largest unit that divides ``size``, as parse_size reads it back."""
    for suffix, mult in _SIZE_UNITS:
        if size and size % mult == 0:
            return f"{size // mult}{suffix}"
    return str(size)


def parse_octal(text: Any) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text            # TOML spells it 0o022; a plain integer is taken as the value itself
    try:
        return int(str(text), 8)
    except ValueError as exc:
        raise BadValue(f"not an octal mask: {text!r}") from exc


def _number(text: Any) -> float:
    """A number from the command line or the config file (a TOML boolean is none)."""
    if isinstance(text, bool):
        raise BadValue(f"not a number: {text!r}")
    try:
        return float(text)
    except (TypeError, ValueError) as exc:
        raise BadValue(f"not a number: {text!r}") from exc


def positive_float(text: Any) -> float:
    value = _number(text)
    if value <= 0:
        raise BadValue(f"must be positive: {text!r}")
    return value


def parse_int(text: Any) -> int:
    if isinstance(text, bool):
        raise BadValue(f"not a whole number: {text!r}")
    if isinstance(text, int):
        return text
    try:
        return int(str(text))
    except ValueError as exc:
        raise BadValue(f"not a whole number: {text!r}") from exc


def non_negative_float(text: Any) -> float:
    value = _number(text)
    if value < 0:
        raise BadValue(f"must not be negative: {text!r}")
    return value


def positive_int(text: Any) -> int:
    value = parse_int(text)
    if value < 1:
        raise BadValue(f"must be at least 1: {text!r}")
    return value


_TRUE = {"", "1", "true", "yes", "on"}      # "" is a bare `-o allow_other`
_FALSE = {"0", "false", "no", "off"}


def parse_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    if isinstance(text, str) and text.strip().lower() in _TRUE | _FALSE:
        return text.strip().lower() in _TRUE
    raise BadValue(f"not true or false: {text!r}")


def parse_path(text: Any) -> Path:
    if not isinstance(text, str) or not text.strip():
        raise BadValue(f"not a path: {text!r}")
    return Path(text).expanduser()


def parse_fuse_options(value: Any) -> tuple[str, ...]:
    """The file's ``fuse_options``: a list of libfuse options, or one comma separated string."""
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise BadValue(f"not a list of libfuse options: {value!r}")
    return tuple(o.strip() for item in items for o in item.split(",") if o.strip())


# ----- the settings ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    name: str                            # the Options field (and the flag, with '-' for '_')
    parse: Callable[[Any], Any]
    doc: str


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("config_dir", parse_path, "client config dir with oauth_data/endpoint_data"),
    Setting("cache_dir", parse_path, "node mirror, chunk cache and log"),
    Setting("read_only", parse_bool, "mount read-only"),
    Setting("upload_delay", non_negative_float, "seconds after a file's last close before its upload"),
    Setting("interval", positive_float, "seconds between background syncs"),
    Setting("allow_other", parse_bool, "let other users access the mount"),
    Setting("nonempty", parse_bool, "mount over a folder that is not empty (its files are hidden meanwhile)"),
    Setting("uid", parse_int, "owner of all files"),
    Setting("gid", parse_int, "group of all files"),
    Setting("umask", parse_octal, "octal umask of the modes"),
    Setting("memory_cache", parse_size, "memory chunk cache budget"),
    Setting("cache_size", parse_size, "disk chunk cache budget"),
    Setting("read_ahead", parse_size, "largest read-ahead window per file"),
    Setting("streams", positive_int, "concurrent range requests of a read-ahead"),
    Setting("timeout", positive_float, "an uncached read fails with EIO after this long"),
    Setting("debug", parse_bool, "verbose log"),
    Setting("fuse_options", parse_fuse_options, "extra libfuse options"),
)}

# -o spellings of mount(8) and libfuse that mean one of our settings
_O_ALIASES = {"ro": ("read_only", "true"), "rw": ("read_only", "false")}

# what fstab and mount(8) put among the options for themselves: never for libfuse (`mount.acdfuse`)
FSTAB_ONLY = frozenset({"defaults", "_netdev", "auto", "noauto", "nofail", "user", "users", "nouser",
                        "owner", "group", "comment"})


def _key(name: str) -> str:
    return name.strip().replace("-", "_")


def parse_o_options(groups: Iterable[str]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``-o`` groups ('a=1,b') -> (our settings, libfuse options), like sshfs and rclone do.

    A known setting becomes a value (``-o interval=30``, ``-o cache-size=4G``, ``-o ro``); anything else
    goes to libfuse unchanged. Raises ConfigError for a known setting with a bad value.
    """
    ours: dict[str, Any] = {}
    fuse: list[str] = []
    for group in groups:
        for item in (o.strip() for o in group.split(",")):
            if not item:
                continue
            name, eq, text = item.partition("=")
            key = _key(name)
            if key in _O_ALIASES and not eq:
                key, text = _O_ALIASES[key]
            if name in FSTAB_ONLY or name.startswith("x-"):
                continue
            setting = SETTINGS.get(key)
            if setting is None or key == "fuse_options":
                fuse.append(item)
                continue
            if not eq and setting.parse is not parse_bool:
                raise ConfigError(f"-o {name} needs a value ({name}=...)")
            try:
                ours[key] = setting.parse(text)
            except BadValue as exc:
                raise ConfigError(f"-o {item}: {exc}") from exc
    return ours, tuple(fuse)


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"""^\s*(\[\s*)?["']?{re.escape(key)}["']?\s*(=|\])""")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def load_config(path: Path) -> dict[str, Any]:
    """The settings in the config file at ``path`` ({} when there is none), checked and parsed.

    Raises ConfigError with a one-line message naming the file, the line and the key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        where = f", line {found.group(1)}" if found else ""
        raise ConfigError(f"{path}{where}: not valid TOML ({exc})") from exc
    values: dict[str, Any] = {}
    for name, value in raw.items():
        line = _line_of(text, name)
        where = f"{path}, line {line}" if line else str(path)
        setting = SETTINGS.get(_key(name))
        if setting is None:
            raise ConfigError(f"{where}: {name!r} is not a mount option (known: {', '.join(SETTINGS)})")
        try:
            values[setting.name] = setting.parse(value)
        except BadValue as exc:
            raise ConfigError(f"{where}: {name}: {exc}") from exc
    return values
