"""The sync loop's bookkeeping, called directly (no thread, no signal): online/offline transitions,
the quota cache, and a failing after-sync step that must not stop syncing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from acdfuse.api.common import make_error
from acdfuse.runtime.syncloop import QuotaCache, SyncLoop
from acdfuse.store import SyncError, SyncResult


class Script:
    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.calls = 0

    def __call__(self) -> Any:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def loop_with(sync: Any, quota: QuotaCache, on_synced: Any = None, fetch_quota: Any = None) -> SyncLoop:
    loop = SyncLoop(sync, fetch_quota=fetch_quota or (lambda: (100, 40)), quota=quota,
                    interval=60, quota_interval=300)
    if on_synced is not None:
        loop.add_listener(on_synced)
    return loop


def test_offline_then_online(caplog: pytest.LogCaptureFixture) -> None:
    down = make_error(1000, "connection refused")
    quota = QuotaCache()
    loop = loop_with(Script([down, down, "result"]), quota)
    with caplog.at_level(logging.INFO, logger="acdfuse.runtime.syncloop"):
        assert loop.run_once() is False
        assert loop.online is False
        assert loop.run_once() is False
        assert quota.sizes() == (0, 0)           # nothing known yet
        assert loop.run_once() is True
    assert loop.online is True and loop.syncs == 1
    assert quota.sizes() == (100, 40)            # refreshed with the first successful sync
    text = caplog.text
    assert text.count("serving the local mirror (offline)") == 1   # said once, not per attempt
    assert "back online" in text


def test_quota_is_refreshed_now_and_then_not_per_sync() -> None:
    quota = QuotaCache()
    asked = Script([(100, 40), (100, 30)])
    loop = loop_with(Script(["r"]), quota, fetch_quota=asked)
    loop.run_once()
    loop.run_once()
    loop.run_once()
    assert asked.calls == 1 and quota.sizes() == (100, 40)


def test_a_sync_that_brought_changes_refreshes_the_quota_at_once() -> None:
    """QA: df showed the old usage for up to 5 minutes after an upload, SIGUSR1 or not."""
    def result(stored: int, purged: int = 0) -> SyncResult:
        return SyncResult(checkpoint="c", reset=False, changesets=1, received=stored + purged, stored=stored,
                          purged=purged, skipped=0, seconds=0.0)

    quota = QuotaCache()
    asked = Script([(100, 40), (100, 30), (100, 35)])
    loop = loop_with(Script([result(0), result(0), result(1), result(0), result(0, purged=1)]), quota,
                     fetch_quota=asked)
    loop.run_once()
    loop.run_once()                                  # nothing changed: the quota is not asked again
    assert asked.calls == 1
    loop.run_once()                                  # a new file: usage asked at once
    assert asked.calls == 2 and quota.sizes() == (100, 30)
    loop.run_once()
    loop.run_once()                                  # a purge frees space
    assert asked.calls == 3 and quota.sizes() == (100, 35)


def test_failed_quota_keeps_the_last_numbers() -> None:
    quota = QuotaCache()
    quota.set(10, 5)
    loop = loop_with(Script(["r"]), quota, fetch_quota=Script([make_error(500, "boom")]))
    loop.refresh_quota()
    assert quota.sizes() == (10, 5)


def test_a_failing_after_sync_step_does_not_stop_syncing(expect_errors: list[str]) -> None:
    expect_errors.append("after-sync step failed")

    def broken(result: Any) -> None:
        raise ValueError("bug in a callback")

    loop = loop_with(Script(["r"]), QuotaCache(), on_synced=broken)
    assert loop.run_once() is True
    assert loop.run_once() is True
    assert loop.syncs == 2


def _sync_error(cause: BaseException) -> SyncError:
    """What NodeStore.sync raises: a SyncError from the failure."""
    try:
        raise SyncError(f"sync failed, mirror unchanged: {cause}") from cause
    except SyncError as exc:
        return exc


@pytest.mark.parametrize("cause, state", [
    (make_error(1000, "connection refused"), "offline"),
    (make_error(1003, "changes stream cut"), "offline"),
    (make_error(502, "bad gateway"), "offline"),
    (ConnectionResetError("reset by peer"), "offline"),
    (TypeError("'NoneType' object is not subscriptable"), "failing"),
    (make_error(400, "bad checkpoint"), "failing"),
    (make_error(401, "token refused"), "failing"),
])
def test_only_the_network_and_5xx_are_offline(cause: BaseException, state: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Issue 9: a bug in sync, or a refusal, is not an outage; the log says which it is."""
    loop = loop_with(Script([_sync_error(cause), _sync_error(cause), "result"]), QuotaCache())
    with caplog.at_level(logging.INFO, logger="acdfuse.runtime.syncloop"):
        assert loop.run_once() is False
        assert loop.state == state and loop.online is False
        assert loop.run_once() is False
        assert loop.run_once() is True
    assert loop.state == "online"
    text = caplog.text
    if state == "offline":
        assert text.count("serving the local mirror (offline)") == 1 and "back online" in text
        assert "failing" not in text
    else:
        assert text.count("sync is failing, not offline") == 1 and "sync works again" in text
        assert "(offline)" not in text and "back online" not in text
