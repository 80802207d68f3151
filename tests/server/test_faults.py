"""Fault switches: latency, bandwidth cap, injected 429/500/503 (seeded), cut bodies; stats counters.

Only lower bounds of time are asserted (a sleep can never be shorter than asked), never speed.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from acdfuse.server import DriveServer

from .conftest import RawDrive


def test_defaults_are_off(drive_server: DriveServer) -> None:
    s = drive_server.faults.settings
    assert (s.latency_ms, s.bandwidth, s.error_rate, s.cut_rate) == (0, 0, 0.0, 0.0)


def test_latency(api: RawDrive, drive_server: DriveServer) -> None:
    drive_server.faults.configure(latency_ms=150)
    t0 = time.monotonic()
    for _ in range(3):
        assert api.get("account/info").status_code == 200
    assert time.monotonic() - t0 >= 0.45
    drive_server.faults.configure(latency_ms=0)


def test_bandwidth_cap_per_connection(api: RawDrive, drive_server: DriveServer) -> None:
    data = os.urandom(300_000)
    nid = api.upload("b.bin", data)["id"]
    drive_server.faults.configure(bandwidth=100_000)
    t0 = time.monotonic()
    r = api.download(nid)
    elapsed = time.monotonic() - t0
    assert r.content == data
    assert elapsed >= 300_000 / 100_000 - 0.6  # at most half a second of burst
    drive_server.faults.configure(bandwidth=0)


def test_error_rate_all_errors_and_retry_after(api: RawDrive, drive_server: DriveServer) -> None:
    root = api.root
    drive_server.stats.reset()
    drive_server.faults.configure(error_rate=1.0, seed=1)
    seen = set()
    for i in range(30):
        r = api.post("nodes", {"name": f"n{i}", "kind": "FOLDER"})
        seen.add(r.status_code)
        assert r.status_code in (429, 500, 503)
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "1"
            assert r.json() == {"message": "Rate exceeded"}
    assert seen == {429, 500, 503}
    assert drive_server.stats.snapshot()["injected_errors"] == 30
    # OAuth is not subject to injected errors
    assert (
        requests.get(
            drive_server.base_url + "/auth/o2/tokeninfo", params={"access_token": "x"}, timeout=10
        ).status_code
        == 400
    )
    drive_server.faults.configure(error_rate=0.0)
    # nothing was created by the failed calls
    assert api.list_all(f"nodes/{root}/children") == []


def test_error_rate_is_repeatable_with_a_seed(api: RawDrive, drive_server: DriveServer) -> None:
    def statuses() -> list[int]:
        return [api.get("account/info").status_code for _ in range(40)]

    drive_server.faults.configure(error_rate=0.5, seed=1234)
    first = statuses()
    drive_server.faults.configure(seed=1234)
    second = statuses()
    drive_server.faults.configure(error_rate=0.0)
    assert first == second
    assert 200 in first and any(s != 200 for s in first)


def test_cut_download_body(api: RawDrive, drive_server: DriveServer) -> None:
    data = os.urandom(500_000)
    nid = api.upload("c.bin", data)["id"]
    drive_server.stats.reset()
    drive_server.faults.configure(cut_rate=1.0, seed=3)
    for _ in range(3):
        with pytest.raises(requests.exceptions.RequestException):
            r = api.s.get(api.content + f"nodes/{nid}/content", timeout=10)
            # requests may hand back a short body instead of raising; both are a cut
            if len(r.content) < len(data):
                raise requests.exceptions.ChunkedEncodingError("short body")
    assert drive_server.stats.snapshot()["cut_bodies"] == 3
    drive_server.faults.configure(cut_rate=0.0)
    assert api.download(nid).content == data


def test_cut_changes_stream_lacks_end(api: RawDrive, drive_server: DriveServer) -> None:
    for i in range(30):
        api.mkdir(f"d{i}")
    drive_server.faults.configure(cut_rate=1.0, seed=9)
    for _ in range(5):
        lines = []
        try:
            with api.s.post(
                api.meta + "changes", data=json.dumps({"chunkSize": 5}), stream=True, timeout=10
            ) as r:
                for line in r.iter_lines():
                    lines.append(line)
        except requests.exceptions.RequestException:
            pass
        assert b'{"end":true}' not in lines
    drive_server.faults.configure(cut_rate=0.0)
    assert api.changes()[-1] == {"end": True}


def test_cut_json_reply(api: RawDrive, drive_server: DriveServer) -> None:
    drive_server.faults.configure(cut_rate=1.0, seed=5)
    broken = 0
    for _ in range(5):
        try:
            r = api.get("account/endpoint")
            r.json()
        except (requests.exceptions.RequestException, ValueError):
            broken += 1
    drive_server.faults.configure(cut_rate=0.0)
    assert broken == 5
    assert api.get("account/endpoint").status_code == 200


def test_configure_validates(drive_server: DriveServer) -> None:
    with pytest.raises(ValueError):
        drive_server.faults.configure(error_rate=1.5)
    with pytest.raises(ValueError):
        drive_server.faults.configure(bandwidth=-1)
    drive_server.faults.configure(latency_ms=5, bandwidth=10, error_rate=0.1, cut_rate=0.2, seed=7)
    s = drive_server.faults.settings
    assert (s.latency_ms, s.bandwidth, s.error_rate, s.cut_rate, s.seed) == (5, 10, 0.1, 0.2, 7)
    drive_server.faults.reset()
    assert drive_server.faults.settings.error_rate == 0.0


def test_stats_count_requests(api: RawDrive, drive_server: DriveServer) -> None:
    f = api.upload("s.txt", b"stats")
    drive_server.stats.reset()
    api.download(f["id"])
    api.download(f["id"], headers={"Range": "bytes=0-1"})
    api.overwrite(f["id"], b"new")
    api.upload("t.txt", b"t")
    api.changes()
    api.get(f"nodes/{f['id']}")
    snap = drive_server.stats.snapshot()
    assert snap["download"] == 2 and snap["overwrite"] == 1 and snap["upload"] == 1
    assert snap["changes"] == 1 and snap["metadata"] == 1 and snap["requests"] == 6
    drive_server.stats.reset()
    assert drive_server.stats.snapshot()["requests"] == 0
