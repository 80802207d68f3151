"""Small pure helpers of acdfuse.api: Retry-After parsing, filter escaping, usage formatting, JSON files."""

from __future__ import annotations

import json
import stat
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from acdfuse.api._base import escape_filter
from acdfuse.api.account import _Usage
from acdfuse.api.common import RequestError, load_service_urls, parse_retry_after, write_private_json


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_a_minute = parse_retry_after(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 50 <= in_a_minute <= 61


def test_escape_filter() -> None:
    assert escape_filter("plain.txt") == "plain.txt"
    assert escape_filter("a b(1)*:") == r"a\ b\(1\)\*\:"
    assert escape_filter('q"uote\\') == r"q\"uote\\"


def test_usage_summary_format() -> None:
    usage = _Usage(
        {
            "doc": {"total": {"bytes": 1536, "count": 2}},
            "photo": {"total": {"bytes": 3 * 1024**3, "count": 10}},
            "lastCalculated": "2015-01-01T00:00:00.000Z",
        }
    )
    lines = str(usage).splitlines()
    assert lines[0].split() == ["Documents:", "2,", "1.5", "KiB"]
    assert lines[1].split() == ["Other:", "0,", "0.0", "B"]
    assert lines[2].split() == ["Photos:", "10,", "3.0", "GiB"]
    assert lines[4].split() == ["Total:", "12,", "3.0", "GiB"]


def test_write_private_json_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    target.write_text("old")
    target.chmod(0o644)
    write_private_json(str(target), {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_bad_server_file(tmp_path: Path) -> None:
    (tmp_path / "acdfuse_server").write_text("{not json")
    with pytest.raises(RequestError):
        load_service_urls(str(tmp_path))
    (tmp_path / "acdfuse_server").write_text('{"url": "x"}')
    with pytest.raises(RequestError) as info:
        load_service_urls(str(tmp_path))
    assert "base_url" in info.value.msg
