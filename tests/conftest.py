"""Shared fixtures: a real Cloud Drive server on a loopback port, credentials for it, a client.

Every tier talks HTTP to ``acdfuse.server.DriveServer``; nothing here mocks HTTP.
A test also fails if code under test logged an ERROR it did not expect (see ``expect_errors``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from acdfuse.server import DriveServer, ServerConfig


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    """Override in a module to start the server with other settings (token lifetime, faults)."""
    return ServerConfig(data_dir=tmp_path / "server-data", host="127.0.0.1", port=0)


@pytest.fixture
def drive_server(server_config: ServerConfig) -> Iterator[DriveServer]:
    srv = DriveServer(server_config)
    srv.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def cdir(drive_server: DriveServer, tmp_path: Path) -> Path:
    """A client config dir for the server's default account (endpoint_data, oauth_data, ...)."""
    path = tmp_path / "cdir"
    drive_server.write_credentials(path)
    return path


@pytest.fixture
def client(cdir: Path):  # -> ACDClient
    from acdfuse.api.client import ACDClient

    return ACDClient(str(cdir))


class _ErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def expect_errors() -> list[str]:
    """Append substrings of ERROR messages this test provokes on purpose."""
    return []


@pytest.fixture(autouse=True)
def _fail_on_logged_errors(expect_errors: list[str]) -> Iterator[None]:
    collector = _ErrorCollector()
    logger = logging.getLogger("acdfuse")
    logger.addHandler(collector)
    try:
        yield
    finally:
        logger.removeHandler(collector)
    unexpected = [
        r for r in collector.records
        if not any(s in r.getMessage() for s in expect_errors)
    ]
    if unexpected:
        lines = "\n".join(f"{r.name}: {r.getMessage()}" for r in unexpected[:10])
        pytest.fail(f"code under test logged {len(unexpected)} unexpected ERROR(s):\n{lines}")
