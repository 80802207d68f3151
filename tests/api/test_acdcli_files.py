"""Config files our client rewrites (oauth_data after a refresh, endpoint_data after discovery) stay
readable by acd_cli 0.3.2, the original client, run from its own venv against the same server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from acdfuse.api.client import ACDClient

REPO = Path(__file__).resolve().parents[2]
PYTHONS = (REPO / ".venv-acdcli" / "bin" / "python", Path("/opt/acdcli/bin/python"))

PEER = """
import sys
from acdcli.api import client
c = client.ACDClient(sys.argv[1])
print(c.get_root_id())
"""


def _acdcli_python() -> Path:
    for p in PYTHONS:
        if p.is_file() and os.access(p, os.X_OK):
            return p
    pytest.fail("acd_cli 0.3.2 venv not found at " + " or ".join(map(str, PYTHONS)))


@pytest.mark.peer
def test_acd_cli_reads_the_files_we_wrote(cdir: Path) -> None:
    data = json.loads((cdir / "oauth_data").read_text())
    data["exp_time"] = 0  # make our client refresh and rewrite the token file
    (cdir / "oauth_data").write_text(json.dumps(data))
    (cdir / "endpoint_data").unlink()  # and fetch + write the endpoints itself
    client = ACDClient(str(cdir))
    root = client.get_root_id()
    assert json.loads((cdir / "oauth_data").read_text())["access_token"] != data["access_token"]
    assert (cdir / "endpoint_data").exists()
    done = subprocess.run(
        [str(_acdcli_python()), "-c", PEER, str(cdir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [root]
