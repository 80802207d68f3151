"""Settings of one server instance (``ServerConfig``), built once at the edge and never mutated.

The fault fields are only the start values: tests change them at run time via ``DriveServer.faults``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GiB = 1024**3


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    # the base URL clients elsewhere reach this server at (a name of this machine, a reverse proxy);
    # used for discovery answers and written credentials instead of one derived from host/port
    public_url: str | None = None
    token_lifetime: float = 3600
    # fault switches (off by default), see faults.py
    latency_ms: float = 0
    bandwidth: int = 0
    error_rate: float = 0.0
    cut_rate: float = 0.0
    fault_seed: int | None = None
    # storage quota reported by account/quota and enforced on uploads
    quota: int = 1024 * GiB
    # Amazon accepted about 50,000 MiB per file; bigger uploads get 413 before any byte is stored
    max_file_size: int = 50_000 * 1024**2
    # JSON request bodies are small; anything bigger is a mistake or an attack -> 413
    max_json_body: int = 1024 * 1024
    # nextToken of a listing expires like Amazon's (10 min) -> 400 "Next token is expired"
    next_token_lifetime: float = 600
    # Trashed nodes older than this are purged (Amazon: 30 days); None disables the sweeper.
    trash_retention: float | None = 30 * 86400
    # how often the sweeper looks for expired trash at most (a shorter retention sweeps as often as
    # it is long, so trash goes within about twice the retention; see DriveServer.sweep_interval)
    purge_interval: float = 3600
    # if set, the /ap/oa login page asks for this password (the server is loopback-only by default)
    login_password: str | None = None
    # nodes per object in a `changes` stream unless the client sends chunkSize
    changes_chunk_size: int = 1000
    # tempLink URLs (GET nodes/{id}?tempLink=true) work without a token for this long (Amazon: 48 h)
    templink_lifetime: float = 48 * 3600
    # add_child refuses to link a folder below itself or its own descendant (400, like a move), so
    # the tree stays a DAG; True allows such cycles (tests of clients that must survive them)
    allow_cycles: bool = False
    # idle keep-alive connections are closed after this many seconds
    idle_timeout: float = 120
    # acdfuse's extensions of the protocol (see routes.py): the conditional overwrite (If-Match with
    # the content version) and max_file_size, both advertised in the account/endpoint answer. False
    # behaves like Amazon (no advertisement, If-Match ignored): for tests of clients' fallbacks.
    extensions: bool = True
