"""Fixtures of the server tests: a small raw-HTTP client (``api``) bound to the ``drive_server`` fixture.

The server tests speak plain HTTP with requests, not through acdfuse.api, so they check the wire
format itself (status codes, headers, JSON shapes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from acdfuse.server import DriveServer


class RawDrive:
    """Thin helper: metadata calls under /drive/v1/, content calls under /cdproxy/, with a bearer token."""

    def __init__(self, srv: DriveServer, token: str) -> None:
        self.srv = srv
        self.base = srv.base_url
        self.meta = srv.base_url + "/drive/v1/"
        self.content = srv.base_url + "/cdproxy/"
        self.s = requests.Session()
        self.s.headers["Authorization"] = "Bearer " + token
        self._root: str | None = None

    def close(self) -> None:
        self.s.close()

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.s.get(self.meta + path, timeout=30, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        data = json.dumps(body) if body is not None else kw.pop("data", None)
        return self.s.post(self.meta + path, data=data, timeout=30, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        data = json.dumps(body) if body is not None else kw.pop("data", None)
        return self.s.put(self.meta + path, data=data, timeout=30, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.s.patch(self.meta + path, data=json.dumps(body), timeout=30, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.s.delete(self.meta + path, timeout=30, **kw)

    @property
    def root(self) -> str:
        if self._root is None:
            r = self.get("nodes", params={"filters": "isRoot:true"})
            assert r.status_code == 200, r.text
            self._root = r.json()["data"][0]["id"]
        return self._root

    def mkdir(self, name: str, parent: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "kind": "FOLDER"}
        if parent:
            body["parents"] = [parent]
        r = self.post("nodes", body)
        assert r.status_code == 201, r.text
        return r.json()

    def upload_raw(
        self,
        name: str,
        data: bytes,
        parent: str | None = None,
        *,
        dedup: bool = False,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        meta: dict[str, Any] = {"name": name, "kind": "FILE"}
        if parent:
            meta["parents"] = [parent]
        q = dict(params or {})
        if not dedup:
            q["suppress"] = "deduplication"
        files = {
            "metadata": (None, json.dumps(meta)),
            "content": ("ignored", data, "application/octet-stream"),
        }
        return self.s.post(self.content + "nodes", params=q, files=files, timeout=60)

    def upload(self, name: str, data: bytes, parent: str | None = None) -> dict[str, Any]:
        r = self.upload_raw(name, data, parent)
        assert r.status_code == 201, r.text
        return r.json()

    def overwrite(self, node_id: str, data: bytes) -> requests.Response:
        files = {"content": ("ignored", data, "application/octet-stream")}
        return self.s.put(self.content + f"nodes/{node_id}/content", files=files, timeout=60)

    def download(self, node_id: str, **kw: Any) -> requests.Response:
        return self.s.get(self.content + f"nodes/{node_id}/content", timeout=60, **kw)

    def changes(self, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        r = self.s.post(self.meta + "changes", data=json.dumps(body or {}), timeout=60)
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines() if line.strip()]

    def list_all(self, path: str, **params: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        q = dict(params)
        while True:
            r = self.get(path, params=q)
            assert r.status_code == 200, r.text
            page = r.json()
            out.extend(page["data"])
            if "nextToken" not in page:
                return out
            q["startToken"] = page["nextToken"]


@pytest.fixture
def api(drive_server: DriveServer) -> Iterator[RawDrive]:
    d = RawDrive(drive_server, drive_server.access_token())
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def other_api(drive_server: DriveServer) -> Iterator[RawDrive]:
    """A client of a second account on the same server."""
    d = RawDrive(drive_server, drive_server.access_token("other"))
    try:
        yield d
    finally:
        d.close()
