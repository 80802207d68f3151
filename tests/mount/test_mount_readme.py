"""The README stays true to the code: its options table is the one the code writes (every option of the
config file, -o and the flags), its two commands are what install.sh and CI run, and it names every
sub-command."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from acdfuse.cli import COMMANDS
from acdfuse.cli_mount import _add_mount_arguments, options_table
from acdfuse.runtime.config import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def table_rows() -> list[str]:
    start = README.index("<!-- options table:")
    end = README.index("<!-- end of the options table -->")
    return [line for line in README[start:end].splitlines() if line.startswith("| ")]


def test_the_options_table_is_the_one_the_code_writes() -> None:
    assert options_table() in README, "README.md's options table is out of date: run scripts/readme_options.py"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_options.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_every_option_has_a_row() -> None:
    rows = table_rows()
    keys = {m.group(1) for row in rows if (m := re.match(r"\| `(\w+)` \|", row))}
    assert keys == set(SETTINGS)
    parser = argparse.ArgumentParser()
    _add_mount_arguments(parser)
    flags = {opt for action in parser._actions if action.help != argparse.SUPPRESS
             for opt in action.option_strings if opt not in ("-h", "--help")}
    in_table = set(re.findall(r"`(-{1,2}[\w-]+)", "\n".join(rows)))
    assert flags <= in_table, flags - in_table


def test_the_two_commands_are_what_install_and_ci_run() -> None:
    assert "scripts/install.sh && .venv/bin/acdfuse mount ~/CloudDrive" in README
    assert "scripts/install.sh --dev && .venv/bin/python -m pytest" in README
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "scripts/install.sh --dev" in ci and ".venv/bin/python -m pytest" in ci
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert '[ "${1:-}" = "--dev" ] && dev=1' in install and "python3 -m venv .venv" in install
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["acdfuse"] == "acdfuse.cli:main"


def test_every_sub_command_is_in_the_readme() -> None:
    for name in COMMANDS:
        assert f"`acdfuse {name}" in README, name
