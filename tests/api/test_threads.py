"""One client, one pooled session, many threads: ranged reads stay correct and independent."""

from __future__ import annotations

import random
import threading
from pathlib import Path

from api_helpers import pattern_bytes, put_file

from acdfuse.api.client import ACDClient


def test_constructor_starts_no_threads(cdir: Path) -> None:
    before = threading.active_count()
    client = ACDClient(str(cdir))
    assert threading.active_count() == before
    client.close()


def test_parallel_download_chunks(client: ACDClient) -> None:
    data = pattern_bytes(3_000_000)
    node = put_file(client, "shared.bin", data)
    sessions = set()
    failures: list[str] = []

    def reader(seed: int) -> None:
        rnd = random.Random(seed)
        sessions.add(id(client.BOReq.session))
        for _ in range(25):
            off = rnd.randrange(0, len(data))
            ln = rnd.randrange(1, 400_000)
            got = client.download_chunk(node["id"], off, ln)
            if bytes(got) != data[off : off + ln]:
                failures.append(f"seed {seed}: {off}+{ln}")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(sessions) == 1
