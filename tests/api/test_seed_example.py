"""The seed's module usage example, run as written (``acdfuse.api`` in place of ``acdcli.api``),
in a fresh interpreter whose working directory is the config dir (``ACDClient()`` uses path '')."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from api_helpers import put_file

from acdfuse.api.client import ACDClient

SEED_EXAMPLE = textwrap.dedent(
    """
    from acdfuse.api import client
    acd_client = client.ACDClient()
    root = acd_client.get_root_id()
    children = acd_client.list_children(root)
    for child in children:
        print(child['name'])
    # ...
    """
)


def test_seed_usage_example_runs_as_written(client: ACDClient, cdir: Path) -> None:
    client.create_folder("Documents")
    put_file(client, "notes.txt", b"hello")
    put_file(client, "Ünïcode name.txt", b"x")
    done = subprocess.run(
        [sys.executable, "-c", SEED_EXAMPLE],
        cwd=cdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(["Documents", "notes.txt", "Ünïcode name.txt"])
