"""The read path's one log line at unmount: where the bytes read came from."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def log_read_stats(s: dict[str, int]) -> None:
    """Tell a slow link from a cold cache, from ``ContentReader.stats()``.

    Also when every read failed (the server was gone): that is when the line is wanted most.
    """
    if not (s["reads"] or s["misses"] or s["fetch_errors"] or s["timeouts"]):
        return
    log.info("read %d bytes in %d reads (chunk lookups: %d found in memory, %d started a fetch); %d "
             "chunks loaded from the disk cache; fetched %d bytes in %d range requests (%d read-ahead), "
             "%d failed; %d reads timed out; disk cache now %d bytes in %d chunks (%d corrupt ones "
             "dropped, %d not written)", s["read_bytes"], s["reads"], s["hits"], s["misses"],
             s["disk_hits"], s["fetched_bytes"], s["fetches"], s["readahead_fetches"], s["fetch_errors"],
             s["timeouts"], s["disk_bytes"], s["disk_chunks"], s["disk_corrupt"], s["disk_skipped"])
