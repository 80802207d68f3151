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


def test_background_uploads_run_one_at_a_time_while_callers_are_busy() -> None:
    # while applications are making files, the uploads of the first ones must not take the CPU from
    # them: one background upload at a time; all the workers again once they pause; an fsync's upload
    # never waits for that
    busy = threading.Event()
    busy.set()
    lock = threading.Lock()
    running, most = [0], [0]
    gate, urgent_ran = threading.Event(), threading.Event()

    def run(key: int) -> None:
        if key == 99:
            urgent_ran.set()
            return
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        gate.wait(0.2)
        with lock:
            running[0] -= 1

    wb = WriteBack(run, permanent=lambda exc: False, on_change=lambda change: None, workers=3,
                   busy=busy.is_set)
    for key in range(6):
        wb.queue(key, 0.0)
    wb.start()
    try:
        assert not wb.wait_idle(0.5)        # still going: one at a time
        assert most[0] == 1
        wb.urgent(99)                       # an fsync: its own worker, busy or not
        assert urgent_ran.wait(5)
        busy.clear()
        for key in range(6, 12):
            wb.queue(key, 0.0)
        assert wb.wait_idle(30)
        assert most[0] >= 2                 # the callers paused: the workers run side by side
    finally:
        wb.close()
