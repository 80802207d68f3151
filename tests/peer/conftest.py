"""Fixtures of the peer tests: acd_cli 0.3.2 (the original client) as a subprocess against our server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from acdfuse.server import DriveServer, ServerConfig

REPO = Path(__file__).resolve().parents[2]
CANDIDATES = (REPO / ".venv-acdcli" / "bin" / "acd_cli.py", Path("/opt/acdcli/bin/acd_cli.py"))


def find_acd_cli() -> Path:
    """The acd_cli 0.3.2 script: the repo's venv (CI) first, then /opt/acdcli. Missing -> fail, never skip."""
    for c in CANDIDATES:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail(
        "acd_cli 0.3.2 not found at " + " or ".join(map(str, CANDIDATES)) + "; run scripts/dev-setup.sh"
    )


@dataclass
class AcdCli:
    script: Path
    cdir: Path
    home: Path

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "ACD_CLI_CACHE_PATH": str(self.cdir),
            "ACD_CLI_SETTINGS_PATH": str(self.cdir),
        }
        proc = subprocess.run(
            [str(self.script), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"acd_cli {' '.join(args)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    # acd_cli can only refresh against Amazon's hosts, so its token must outlive the test
    return ServerConfig(data_dir=tmp_path / "server-data", port=0, token_lifetime=30 * 86400)


@pytest.fixture
def acd_cli(drive_server: DriveServer, tmp_path: Path) -> Iterator[AcdCli]:
    cdir = tmp_path / "acd-cdir"
    drive_server.write_credentials(cdir)
    home = tmp_path / "home"
    home.mkdir()
    yield AcdCli(find_acd_cli(), cdir, home)
