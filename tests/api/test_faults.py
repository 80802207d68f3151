"""Back-off under the server's fault switches: 429 with Retry-After, 5xx, cut bodies, refused connections.

Correctness only (results complete and exactly once, retries bounded); no timing assertions.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_helpers import MakeClient, PatternReader, pattern_bytes, put_file

from acdfuse.api import backoff_req
from acdfuse.api.backoff_req import Backoff, RetryPolicy
from acdfuse.api.client import ACDClient
from acdfuse.api.common import (
    Conflict,
    ConnectionFailed,
    IncompleteResult,
    NotFound,
    RateLimited,
    RequestError,
    ServerError,
)
from acdfuse.server import DriveServer
from acdfuse.server.faults import Faults


@pytest.fixture
def faulty(drive_server: DriveServer) -> Iterator[Faults]:
    yield drive_server.faults
    drive_server.faults.reset()


def _names(client: ACDClient, folder: str) -> list[str]:
    return sorted(c["name"] for c in client.list_children(folder))


def test_4xx_is_not_retried(client: ACDClient, drive_server: DriveServer) -> None:
    client.get_root_id()
    drive_server.stats.reset()
    with pytest.raises(NotFound):
        client.get_metadata("AAAAAAAAAAAAAAAAAAAAAA")
    assert drive_server.stats.snapshot()["requests"] == 1


def test_errors_are_retried_and_retry_after_honoured(
    make_client, drive_server: DriveServer, faulty: Faults, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(retry_deadline=60)
    folder = client.create_folder("under-fire")
    caplog.set_level(logging.WARNING, logger="acdfuse.api")
    faulty.configure(error_rate=0.4, seed=11)
    for i in range(12):
        client.create_folder(f"d{i}", folder["id"])
        client.get_metadata(folder["id"])
    faulty.configure(error_rate=0.0)
    assert drive_server.stats.snapshot()["injected_errors"] > 0
    assert _names(client, folder["id"]) == sorted(f"d{i}" for i in range(12))
    waits = [
        (int(m.group(1)), float(m.group(2)))
        for r in caplog.records
        if (m := re.search(r"HTTP (\d+); retry \d+ in ([\d.]+)s", r.getMessage()))
    ]
    assert any(code == 429 for code, _ in waits)
    # the server sends Retry-After: 1 with 429 and 503
    assert all(delay >= 1.0 for code, delay in waits if code in (429, 503))


def test_retries_are_bounded(make_client: MakeClient, drive_server: DriveServer, faulty: Faults) -> None:
    client = make_client(retry_deadline=4)
    root = client.get_root_id()
    drive_server.stats.reset()
    faulty.configure(error_rate=1.0, seed=3)
    with pytest.raises((RateLimited, ServerError)) as info:
        client.list_children(root)
    faulty.configure(error_rate=0.0)
    assert drive_server.stats.snapshot()["requests"] <= RetryPolicy().max_retries + 1
    assert "list children (node " + root in info.value.msg


def test_backoff_state_is_per_request() -> None:
    policy = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=4.0, deadline=None)
    a, b = policy.start(), policy.start()
    delays = [a.next_delay() for _ in range(3)]
    assert a.next_delay() is None  # budget spent
    assert all(d is not None for d in delays)
    assert b.retries == 0 and b.next_delay() is not None  # untouched by a's failures
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 2.0 <= delays[2] <= 4.0  # type: ignore[operator]
    assert Backoff(RetryPolicy(deadline=0.5)).next_delay(retry_after=5) is None  # would overrun the deadline


def test_one_failing_thread_does_not_stall_others(make_client: MakeClient, drive_server: DriveServer) -> None:
    """A request retrying against a dead endpoint shares no back-off state with healthy requests."""
    client = make_client(retry_deadline=60)
    healthy_root = client.get_root_id()
    bo = client.BOReq
    assert not hasattr(bo, "_BackOffRequest__retries")  # no client-wide counter as in acd_cli
    started = threading.Event()
    outcome: list[BaseException] = []

    def doomed() -> None:
        started.set()
        try:
            bo.get("http://127.0.0.1:9/never", operation="doomed")
        except ConnectionFailed as exc:
            outcome.append(exc)

    t = threading.Thread(target=doomed)
    t.start()
    started.wait()
    for _ in range(20):  # these succeed at once while the other thread is backing off
        assert client.get_metadata(healthy_root)["id"] == healthy_root
    # ordering, not timing: the healthy calls did not wait for the doomed request to give up
    assert t.is_alive()
    bo.close()  # wakes the doomed thread's back-off wait
    t.join(timeout=30)
    assert not t.is_alive()
    assert outcome and isinstance(outcome[0], ConnectionFailed)


def test_connection_refused_is_clear(cdir: Path) -> None:
    data = json.loads((cdir / "endpoint_data").read_text())
    data["metadataUrl"] = "http://127.0.0.1:9/drive/v1/"
    (cdir / "endpoint_data").write_text(json.dumps(data))
    client = ACDClient(str(cdir), retry_deadline=2)
    with pytest.raises(ConnectionFailed) as info:
        client.get_metadata("AAAAAAAAAAAAAAAAAAAAAA")
    err = info.value
    assert err.status_code == RequestError.CODE.CONN_EXCEPTION
    assert err.request_sent is False
    assert err.msg.startswith("get metadata (node AAAAAAAAAAAAAAAAAAAAAA): 127.0.0.1:9: Connection refused")


def test_cut_bodies_downloads_stay_correct(
    make_client: MakeClient, drive_server: DriveServer, faulty: Faults, tmp_path: Path
) -> None:
    client = make_client(retry_deadline=60)
    data = pattern_bytes(2_000_000)
    node = put_file(client, "cut.bin", data)
    faulty.configure(cut_rate=0.5, seed=4)
    assert client.download_chunk(node["id"], 0, len(data)) == data
    assert client.download_chunk(node["id"], 123, 456_789) == data[123 : 123 + 456_789]
    client.download_file(node["id"], "cut.bin", str(tmp_path), length=len(data))
    assert (tmp_path / "cut.bin").read_bytes() == data
    assert client.get_metadata(node["id"])["contentProperties"]["size"] == len(data)
    faulty.configure(cut_rate=0.0)
    assert drive_server.stats.snapshot()["cut_bodies"] > 0


def test_cut_download_exhausted_raises_incomplete(make_client: MakeClient, faulty: Faults) -> None:
    client = make_client(retry_deadline=3)
    node = put_file(client, "always-cut.bin", pattern_bytes(500_000))
    faulty.configure(cut_rate=1.0, seed=1)
    with pytest.raises(IncompleteResult) as info:
        client.download_chunk(node["id"], 0, 500_000)
    faulty.configure(cut_rate=0.0)
    assert info.value.status_code == RequestError.CODE.INCOMPLETE_RESULT
    assert node["id"] in info.value.msg


def test_changes_survive_cuts(make_client: MakeClient, faulty: Faults) -> None:
    client = make_client(retry_deadline=60)
    folder = client.create_folder("chg")
    made = {client.create_folder(f"c{i}", folder["id"])["id"] for i in range(40)}
    faulty.configure(cut_rate=0.3, seed=8)
    seen = {n["id"] for cs in client.get_changes() for n in cs.nodes}
    faulty.configure(cut_rate=0.0)
    assert made <= seen


def test_truncated_changes_raise_incomplete(make_client: MakeClient, faulty: Faults) -> None:
    client = make_client(retry_deadline=3)
    client.create_folder("x")
    faulty.configure(cut_rate=1.0, seed=2)
    with pytest.raises(RequestError) as info:
        for _ in client.get_changes():
            pass
    faulty.configure(cut_rate=0.0)
    assert isinstance(info.value, IncompleteResult)
    assert info.value.status_code == RequestError.CODE.INCOMPLETE_RESULT
    assert "get changes" in info.value.msg


def test_uploads_under_faults_happen_exactly_once(
    make_client: MakeClient, drive_server: DriveServer, faulty: Faults
) -> None:
    """Errors and cut answers (the node was made, the reply lost) never yield duplicates or 409s."""
    client = make_client(retry_deadline=60)
    folder = client.create_folder("once")
    faulty.configure(error_rate=0.25, cut_rate=0.25, seed=21)
    expected = {}
    for i in range(15):
        data = pattern_bytes(50_000 + i, seed=i)
        node = client.upload_stream(io.BytesIO(data), f"f{i}.bin", folder["id"])
        assert node["contentProperties"]["md5"] == hashlib.md5(data).hexdigest()
        expected[f"f{i}.bin"] = node["id"]
        client.create_folder(f"sub{i}", folder["id"])
    faulty.configure(error_rate=0.0, cut_rate=0.0)
    stats = drive_server.stats.snapshot()
    assert stats["injected_errors"] > 0 and stats["cut_bodies"] > 0
    children = client.list_children(folder["id"])
    names = sorted(c["name"] for c in children)
    assert names == sorted([*expected, *(f"sub{i}" for i in range(15))])
    assert {c["name"]: c["id"] for c in children if c["kind"] == "FILE"} == expected


def test_non_seekable_upload_is_not_repeated(make_client: MakeClient, faulty: Faults) -> None:
    client = make_client(retry_deadline=10)
    faulty.configure(error_rate=1.0, seed=4)
    with pytest.raises(RequestError) as info:
        client.upload_stream(io.BufferedReader(PatternReader(300_000)), "once-only.bin")
    faulty.configure(error_rate=0.0)
    assert info.value.status_code in (429, 500, 503, RequestError.CODE.FAILED_SUBREQUEST)
    assert "once-only.bin" in info.value.msg


def test_retry_policy_defaults() -> None:
    p = RetryPolicy()
    assert p.max_retries >= 3 and p.deadline is not None and p.max_delay <= 60
    assert backoff_req.RETRY_STATUS == {429, 500, 502, 503, 504}


def test_cut_json_answer_raises_incomplete(make_client: MakeClient, faulty: Faults) -> None:
    client = make_client(retry_deadline=3)
    root = client.get_root_id()
    faulty.configure(cut_rate=1.0, seed=9)
    with pytest.raises(IncompleteResult) as info:
        client.get_metadata(root)
    faulty.configure(cut_rate=0.0)
    assert info.value.status_code == RequestError.CODE.INCOMPLETE_RESULT
    assert f"get metadata (node {root}): 127.0.0.1:" in info.value.msg and "answer cut" in info.value.msg


def test_conflict_after_unsure_try_is_checked(client: ACDClient) -> None:
    """acd-api.md 13.5: a try that failed unsure may finish late; the repeat then meets our own node."""
    existing = client.create_folder("late")
    sends: list[int] = []
    confirms: list[int] = []
    body = json.dumps({"kind": "FOLDER", "name": "late"})

    def send(backoff: Backoff) -> requests.Response:
        sends.append(1)
        if len(sends) == 1:
            raise ConnectionFailed(RequestError.CODE.CONN_EXCEPTION, "reply lost", request_sent=True)
        return client.BOReq.post(client.metadata_url + "nodes", acc_codes=[201], data=body, backoff=backoff)

    def confirm() -> dict | None:
        confirms.append(1)
        return None if len(confirms) == 1 else client._find_child(None, "late")  # "appears later"

    node = client.BOReq.request_confirmed(send, [201], confirm, operation="create folder 'late'")
    assert node["id"] == existing["id"]
    assert (len(sends), len(confirms)) == (2, 2)

    # without an unsure try before it, a 409 is just a conflict
    with pytest.raises(Conflict):
        client.BOReq.request_confirmed(
            lambda b: client.BOReq.post(client.metadata_url + "nodes", acc_codes=[201], data=body, backoff=b),
            [201],
            lambda: pytest.fail("no confirm without an unsure failure"),
            operation="create folder 'late'",
        )


def test_parent_and_property_edits_survive_faults(make_client: MakeClient, faulty: Faults) -> None:
    """Deletes whose repeat would answer 404 are confirmed, not repeated, after a lost reply."""
    client = make_client(retry_deadline=60)
    owner = client.get_owner_id()
    folder = client.create_folder("edits")
    node = put_file(client, "edited.txt", b"x")
    faulty.configure(error_rate=0.05, cut_rate=0.35, seed=13)
    for i in range(6):
        assert folder["id"] in client.add_child(folder["id"], node["id"])["parents"]
        assert folder["id"] not in client.remove_child(folder["id"], node["id"])["parents"]
        client.add_property(node["id"], owner, f"k{i}", "v")
        client.delete_property(node["id"], owner, f"k{i}")
        client.rename_node(node["id"], f"edited-{i}.txt")
        client.move_to_trash(node["id"])
        client.restore(node["id"])
    faulty.configure(error_rate=0.0, cut_rate=0.0)
    assert client.list_properties(node["id"], owner) == {}
    final = client.get_metadata(node["id"])
    assert final["name"] == "edited-5.txt" and final["status"] == "AVAILABLE"


def test_upload_slower_than_the_read_timeout_completes(make_client: MakeClient, drive_server: DriveServer,
                                                       faulty: Faults) -> None:
    # the whole body fits into the kernel's socket buffers at once; the answer comes when the server
    # has read it at 256 KiB/s, about 8 s after the client handed over its last byte: a read timeout
    # of 2 s alone gave up on every such upload (found by tests/mount/test_reliability_slow_network.py)
    client = make_client(timeout=(2, 2), retry_deadline=2)
    root = client.get_root_id()
    data = pattern_bytes(2 * 1024 * 1024)
    faulty.configure(bandwidth=256 * 1024)
    drive_server.stats.reset()
    node = client.upload_stream(io.BytesIO(data), "slow.bin", root)
    faulty.configure(bandwidth=0)
    assert drive_server.stats.snapshot()["upload"] == 1          # one try, no repeat
    assert node["contentProperties"]["md5"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
