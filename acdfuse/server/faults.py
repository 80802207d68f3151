"""Fault switches (latency, per-connection bandwidth cap, random 429/500/503, cut bodies) and counters.

All switches are off by default and can be changed at run time (``DriveServer.faults.configure``).
One seeded ``random.Random`` decides every fault, so a run with ``seed`` set is repeatable for the same
sequence of requests. Lock order: ``Faults._lock`` and ``Stats._lock`` are leaves (nothing is called
while they are held).

Where the faults apply:
- latency: before every request is handled (OAuth included).
- error rate: API calls only (``/drive/v1`` and ``/cdproxy``); 429 carries ``Retry-After: 1``.
- cut rate: successful API response bodies (downloads, ``changes``, JSON) are cut at a random byte
  and the connection is closed, as a dropped connection would look.
- bandwidth: each connection's body bytes (both directions) are paced to ``bandwidth`` bytes/s.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class FaultSettings:
    latency_ms: float = 0
    bandwidth: int = 0
    error_rate: float = 0.0
    cut_rate: float = 0.0
    seed: int | None = None


_UNSET = object()


class Faults:
    def __init__(self, settings: FaultSettings) -> None:
        self._lock = threading.Lock()
        self.settings = settings
        self._rng = random.Random(settings.seed)  # noqa: S311 - fault injection must be seedable, no secret

    def configure(
        self,
        latency_ms: float | None = None,
        bandwidth: int | None = None,
        error_rate: float | None = None,
        cut_rate: float | None = None,
        seed: object = _UNSET,
    ) -> FaultSettings:
        """Change some switches; arguments left out keep their value. ``seed`` re-seeds the generator."""
        with self._lock:
            s = self.settings
            for name, value in (("error_rate", error_rate), ("cut_rate", cut_rate)):
                if value is not None and not 0.0 <= value <= 1.0:
                    raise ValueError(f"{name} must be within [0, 1]")
            if (latency_ms is not None and latency_ms < 0) or (bandwidth is not None and bandwidth < 0):
                raise ValueError("latency and bandwidth must not be negative")
            new_seed = s.seed if seed is _UNSET else seed
            self.settings = FaultSettings(
                latency_ms=s.latency_ms if latency_ms is None else latency_ms,
                bandwidth=s.bandwidth if bandwidth is None else bandwidth,
                error_rate=s.error_rate if error_rate is None else error_rate,
                cut_rate=s.cut_rate if cut_rate is None else cut_rate,
                seed=new_seed if isinstance(new_seed, int) or new_seed is None else s.seed,
            )
            if seed is not _UNSET:
                self._rng = random.Random(self.settings.seed)  # noqa: S311 - as above
            return self.settings

    def reset(self) -> None:
        self.configure(latency_ms=0, bandwidth=0, error_rate=0.0, cut_rate=0.0)

    def pick_error(self) -> int | None:
        """The status of an injected error for this request, or None."""
        with self._lock:
            if self.settings.error_rate <= 0 or self._rng.random() >= self.settings.error_rate:
                return None
            return self._rng.choice((429, 500, 503))

    def pick_cut(self, length: int) -> int | None:
        """Number of body bytes to send before cutting the connection, or None to send all."""
        with self._lock:
            if self.settings.cut_rate <= 0 or length <= 0 or self._rng.random() >= self.settings.cut_rate:
                return None
            return self._rng.randrange(0, length)

    def chance(self, p: float) -> bool:
        with self._lock:
            return self._rng.random() < p

    def randrange(self, n: int) -> int:
        with self._lock:
            return self._rng.randrange(0, n) if n > 0 else 0

    def throttle(self) -> Throttle | None:
        bw = self.settings.bandwidth
        return Throttle(bw) if bw > 0 else None


class Throttle:
    """Paces one connection to ``rate`` bytes/s (a token bucket with a small burst)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._sent = 0

    def __call__(self, nbytes: int) -> None:
        self._sent += nbytes
        due = self._start + self._sent / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.5:
            # idle time is not saved up: at most half a second's worth of burst
            self._start = time.monotonic() - self._sent / self.rate - 0.5


class Stats:
    """Request counters. Keys: requests, download, upload, overwrite, changes, metadata (any other call
    on the metadata URL), thumbnail, oauth, injected_errors, cut_bodies, unauthorized."""

    KEYS = (
        "requests",
        "download",
        "upload",
        "overwrite",
        "changes",
        "metadata",
        "thumbnail",
        "oauth",
        "injected_errors",
        "cut_bodies",
        "unauthorized",
        "download_bytes",
        "upload_bytes",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.KEYS, 0)

    def incr(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self.KEYS, 0)
