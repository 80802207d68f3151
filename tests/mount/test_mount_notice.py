"""The first-sync notice of a warm mirror says why the first sync failed: refused credentials,
an unreachable server (offline), or a failure that waiting for the network will not cure."""

from __future__ import annotations

from pathlib import Path

from acdfuse.api.common import RequestError, make_error
from acdfuse.runtime.notice import first_sync_notice
from acdfuse.runtime.options import Options
from acdfuse.store import SyncError


def opts(tmp_path: Path) -> Options:
    return Options(mountpoint=tmp_path / "m", config_dir=tmp_path / "c", cache_dir=tmp_path / "cache",
                   run_dir=tmp_path / "run")


def wrapped(cause: BaseException) -> SyncError:
    """What the store raises: the cause kept as __cause__."""
    try:
        raise SyncError(f"sync failed, mirror unchanged: {cause}") from cause
    except SyncError as exc:
        return exc


def test_a_good_first_sync_says_nothing(tmp_path: Path) -> None:
    assert first_sync_notice(opts(tmp_path), None) == ""


def test_unreachable_server_is_offline(tmp_path: Path) -> None:
    for cause in (make_error(RequestError.CODE.CONN_EXCEPTION, "refused"), make_error(503, "busy")):
        text = first_sync_notice(opts(tmp_path), wrapped(cause))
        assert text.startswith("mounted offline from the local mirror"), text
        assert "it syncs when the server answers" in text
    # what the mount says at once when the server does not even accept a connection (mount.py)
    text = first_sync_notice(opts(tmp_path), ConnectionError("the server at x does not accept connections"))
    assert text.startswith("mounted offline from the local mirror"), text


def test_refused_credentials_say_how_to_get_new_ones(tmp_path: Path) -> None:
    text = first_sync_notice(opts(tmp_path), wrapped(make_error(401, "token expired")))
    assert "refused the credentials" in text and "--credentials-out" in text


def test_a_bug_is_not_called_offline(tmp_path: Path) -> None:
    o = opts(tmp_path)
    for cause in (KeyError("parents"), make_error(400, "bad request")):
        text = first_sync_notice(o, wrapped(cause))
        assert "offline" not in text and "first sync failed" in text, text
        assert str(o.log_file) in text
