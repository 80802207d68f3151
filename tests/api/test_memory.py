"""Transfers stream: a 256 MiB upload and download grow the peak RSS by far less than their size.

The bound is generous (a buffering client would grow by at least 256 MiB); precise numbers for 2 GiB
come from ``scripts/bench_api.py``, which runs the server in another process.
"""

from __future__ import annotations

import hashlib
import io

from api_helpers import PatternReader

from acdfuse.api.client import ACDClient

SIZE = 256 * 1024**2
BOUND = 64 * 1024**2


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


class _HashSink(io.RawIOBase):
    def __init__(self) -> None:
        self.md5 = hashlib.md5()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.md5.update(b)
        self.size += len(b)
        return len(b)


def test_large_transfer_memory_is_bounded(client: ACDClient) -> None:
    client.get_root_id()  # warm up: token, endpoints, connection pool
    expected = hashlib.md5()
    src = PatternReader(SIZE)
    while chunk := src.read(1 << 20):
        expected.update(chunk)

    _reset_peak()
    base = _status_kib("VmRSS")
    node = client.upload_stream(io.BufferedReader(PatternReader(SIZE)), "big.bin")
    upload_growth = (_status_kib("VmHWM") - base) * 1024
    assert node["contentProperties"]["size"] == SIZE
    assert node["contentProperties"]["md5"] == expected.hexdigest()

    _reset_peak()
    base = _status_kib("VmRSS")
    sink = _HashSink()
    client.chunked_download(node["id"], sink, length=SIZE)
    download_growth = (_status_kib("VmHWM") - base) * 1024
    assert sink.size == SIZE and sink.md5.hexdigest() == expected.hexdigest()

    assert upload_growth < BOUND, f"upload grew RSS by {upload_growth / 2**20:.0f} MiB"
    assert download_growth < BOUND, f"download grew RSS by {download_growth / 2**20:.0f} MiB"
