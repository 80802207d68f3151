"""The write-back queue on its own (vfs/writeback.py): what an fsync asks for is never held back.

No HTTP here: the queue knows nothing of files or uploads; ``run`` records the keys it is given.
"""

from __future__ import annotations

import threading

from acdfuse.vfs.writeback import WriteBack


def _queue() -> tuple[WriteBack, list[int], threading.Event]:
    ran: list[int] = []
    done = threading.Event()

    def run(key: int) -> None:
        ran.append(key)
        done.set()

    wb = WriteBack(run, permanent=lambda exc: False, on_change=lambda change: None, workers=1)
    return wb, ran, done


def test_an_open_for_writing_does_not_hold_back_what_an_fsync_waits_for() -> None:
    # the order the parallel checker hit: an fsync asks (urgent), another handle opens the file for
    # writing (hold) before a worker took it; the fsync must still get its upload
    wb, ran, done = _queue()
    wb.urgent(7)
    wb.hold(7)
    wb.start()
    try:
        assert done.wait(30), "the upload an fsync waits for was held back by an open for writing"
        assert ran == [7]
    finally:
        wb.close()


def test_an_open_for_writing_holds_back_a_quiet_delay() -> None:
    # the ordinary case: a file queued after its close is not uploaded while it is open again
    wb, ran, done = _queue()
    wb.queue(7, 0.0)
    wb.hold(7)
    wb.queue(8, 0.0)            # something that does run, to know the worker looked at the queue
    wb.start()
    try:
        assert done.wait(30)
        assert wb.wait_idle(30)
        assert ran == [8] and wb.state(7) == "dirty"
    finally:
        wb.close()
