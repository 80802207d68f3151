"""A short soak of a real mount under server faults: scripts/soak.py's workers for about 20 s.

8 workers copy in, read back (checked byte for byte), append to, rename and delete a mixed tree while
the server answers 10% of API requests with 429/500/503 and cuts 5% of answer bodies. No read may
return wrong bytes, no operation may hang (a watchdog), every error a caller sees is an errno, and
after the uploads are done every file is on the server (through the API) with the bytes written.
The long run is the script itself; RELIABILITY.md ("Soak") has its figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from common_helpers import load_script
from test_mount_write_checks import kill9

from acdfuse.server import DriveServer

pytestmark = pytest.mark.mount


def test_soak_with_errors_and_cut_bodies_loses_nothing(tmp_path: Path, cdir: Path, mounts: Any,
                                                       drive_server: DriveServer, client: Any) -> None:
    soak = load_script("soak")
    cfg = soak.SoakConfig(duration=20, workers=8, small_files=32, large_files=4, large_size=3 * 2**20,
                          error_rate=0.10, cut_rate=0.05, op_timeout=120, seed=12)
    sources = soak.make_sources(tmp_path / "sources", cfg)
    m = mounts(cdir).start("--upload-delay", "1")
    drive_server.stats.reset()
    drive_server.faults.configure(error_rate=cfg.error_rate, cut_rate=cfg.cut_rate, seed=cfg.seed)
    result = None
    try:
        result = soak.run_workers(m.mnt, sources, cfg)
        left = soak.wait_uploads(m.cache_dir, 240) if not result.hangs else -1
        faults = drive_server.stats.snapshot()
    finally:
        if result is None or result.hangs:
            kill9(m)                        # hung workers return once their mount is gone
        else:
            m.stop()
        drive_server.faults.reset()
    verdict = soak.verify_on_server(client, result.expected, result.unknown)
    text = soak.report(cfg, result, faults=faults, verdict=verdict, left=left,
                       log_levels=soak.log_lines(m.log_file)[0], log_bad=[])
    assert not result.hangs, text
    assert not result.all("corrupt"), text
    assert not result.all("inconsistent"), text
    assert not result.all("vanished"), text
    assert not result.all("bugs"), text
    assert left == 0, text
    assert not verdict.lost, text
    assert not verdict.extra, text
    # the faults really were on, and the workers really worked
    assert faults["injected_errors"] > 10 and faults["cut_bodies"] > 5, text
    ops = result.total("ops")
    assert all(ops[op] > 5 for op in ("copy", "fsync_copy", "read", "rename", "delete", "append")), text
    assert verdict.checked >= 50, text
