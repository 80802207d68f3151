#!/usr/bin/env python3
"""Writes the README's table of mount options from the code (``acdfuse.cli_mount.options_table``).

    .venv/bin/python scripts/readme_options.py          rewrite the table in README.md
    .venv/bin/python scripts/readme_options.py --check  exit 1 when README.md's table is out of date

The table sits between the two marker lines below; tests/mount/test_mount_readme.py fails when it
differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from acdfuse.cli_mount import options_table

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- options table: written by scripts/readme_options.py from the code, do not edit -->\n"
END = "<!-- end of the options table -->\n"


def with_table(text: str) -> str:
    head, sep, rest = text.partition(START)
    if not sep:
        raise SystemExit(f"{README}: no line {START.strip()!r}")
    _, sep, tail = rest.partition(END)
    if not sep:
        raise SystemExit(f"{README}: no line {END.strip()!r}")
    return head + START + options_table() + END + tail


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = with_table(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            print(f"{README}: the options table is out of date; run scripts/readme_options.py",
                  file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
