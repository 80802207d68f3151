"""The composition root of a mount: ``build`` wires the stack, ``mount`` puts it on the kernel.

``build(opts)`` makes the API client, the node store, the content reader, the write side (unless
``--read-only``), the sync loop and the FUSE operations from one Options and returns them as a
``Stack``, without touching the kernel: no FUSE, no thread, no network (the client's constructor only
reads its config files). ``Stack.start()`` opens the mirror (syncing it first when it is empty), and
starts the reader's, the write side's and the sync loop's threads; ``Stack.close()`` stops them (the
write side leaves what is not uploaded in its journal for the next mount). ``mount(stack)`` serves the
stack through the FUSE binding until it is unmounted. ``run(opts)`` is the mount process between the
command line and those: the bundled server's lease, the stack, the pid file, the mount.

Tests build the real stack with ``build`` and call ``stack.ops`` directly (tests/ops); the command line
(``acdfuse.cli_mount``) takes the locks and prints the messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acdfuse.api.client import ACDClient
from acdfuse.api.common import RequestError, credentials_refused, is_offline
from acdfuse.api.probe import client_base, server_accepts
from acdfuse.fs.attrs import Ownership
from acdfuse.fs.binding import LibfuseMissing, MountRefused, load_mfusepy, mount_options, serve
from acdfuse.fs.errors import to_errno
from acdfuse.fs.kernelcache import KernelCache
from acdfuse.fs.operations import DriveOperations
from acdfuse.fs.remote import read_hooks, remote_for
from acdfuse.runtime import embedded
from acdfuse.runtime.control import ControlServer, SyncProgress
from acdfuse.runtime.notice import FirstSyncReport, refused_message
from acdfuse.runtime.options import Options
from acdfuse.runtime.paths import EmbeddedPaths
from acdfuse.runtime.pidfiles import MountRecord
from acdfuse.runtime.syncloop import QuotaCache, SyncLoop
from acdfuse.store import NodeStore, StoreError, SyncResult
from acdfuse.store.journal import JournalError
from acdfuse.vfs import ContentReader
from acdfuse.vfs.fetch import PinnedFetch
from acdfuse.vfs.nodeattrs import NodeAttrs
from acdfuse.vfs.readstats import log_read_stats
from acdfuse.vfs.writes import WriteSide

log = logging.getLogger(__name__)

UNMOUNT_SYNC_WAIT = 5.0            # at unmount, how long a running sync may still take
SYNC_REQUEST_WAIT = 3600.0         # how long `acdfuse sync` may wait for its sync (a first big sync)
PROGRESS_EVERY = 0.5               # seconds between the progress lines of `acdfuse sync`
FIRST_SYNC_PROGRESS_EVERY = 0.2    # ... and of the first sync before a mount (a terminal's bar)

# the first sync's progress for the console: the nodes read so far, then None once it is over (or when
# there was none to make) — see cli_mount's progress pipe
FirstSyncProgress = Callable[[int | None], None]
# at unmount, how long uploads already running may take to finish; queued ones stay in the journal
# (`acdfuse umount` waits for them before it unmounts, --force does not)
UNMOUNT_UPLOAD_WAIT = 10.0


def no_pending() -> dict[str, object]:
    """The pending uploads of a mount without a write side: none."""
    return {"count": 0, "bytes": 0, "failures": []}


class MountError(Exception):
    """A reason the mount cannot start, told to the user in one line."""


@dataclass
class Stack:
    """The wired parts of one mount. Built by ``build``; ``start``/``close`` run and stop it."""

    opts: Options
    client: ACDClient
    store: NodeStore
    fetch: PinnedFetch
    reader: ContentReader
    quota: QuotaCache
    ops: DriveOperations
    sync_loop: SyncLoop
    first_sync: FirstSyncReport
    progress: SyncProgress = field(default_factory=SyncProgress)
    # tells the kernel what each sync changed, so its long cache timeouts stay exact (fs/kernelcache.py)
    kernel_cache: KernelCache | None = None
    # the write side fills this slot: {"count", "bytes", "failures": [{"path", "reason"}...]}
    pending_stats: Callable[[], dict[str, object]] = no_pending
    first_synced_at: float | None = None    # the sync before the mount, which the loop did not run
    writes: WriteSide | None = None      # None on a --read-only mount
    first_sync_progress: FirstSyncProgress | None = None
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def sync(self) -> SyncResult:
        """One sync of the mirror with the server's changes (what the sync loop runs)."""
        return _sync(self.store, self.client, self.progress, self.kernel_cache)

    def status(self) -> dict[str, object]:
        """What `acdfuse status` shows: account, quota, mirror, last sync, cache, pending, options."""
        opts = self.opts
        total, available = self.quota.sizes()
        loop = self.sync_loop
        error = loop.last_error
        stats = self.reader.stats()
        looked_up = stats["hits"] + stats["disk_hits"] + stats["misses"]
        return {
            "mountpoint": str(opts.mountpoint), "pid": os.getpid(),
            "account": {"config_dir": str(opts.config_dir), "server": client_base(self.client),
                        "bundled_drive": opts.embedded is not None},
            "quota": {"total": total, "available": available, "used": max(0, total - available)},
            "nodes": self.store.count(),
            "last_sync": ({"at": loop.last_sync_at, "state": loop.state, "syncs": loop.syncs,
                           "error": None if error is None else str(error)}
                          if loop.last_sync_at is not None or self.first_synced_at is None else
                          {"at": self.first_synced_at, "state": "online", "syncs": 1, "error": None}),
            "cache": {"disk_bytes": stats["disk_bytes"], "disk_chunks": stats["disk_chunks"],
                      "memory_bytes": stats["memory_bytes"], "reads": stats["reads"],
                      "hit_rate": (stats["hits"] + stats["disk_hits"]) / looked_up if looked_up else None},
            "pending": self.pending_stats(),
            "options": options_dict(opts),
        }

    def serve_control(self, request: dict[str, object],
                      emit: Callable[[dict[str, object]], None]) -> dict[str, object]:
        """A control socket request (runtime/control.py): "status", or "sync" with progress lines."""
        if request.get("op") == "status":
            return {"ok": True, "status": self.status()}
        if request.get("op") == "cache":
            size = request.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                return {"ok": False, "error": f"not a cache size: {size!r}"}
            dropped, used = self.reader.prune_disk(size)
            log.info("cache pruned to %d bytes on request: %d chunks dropped, %d bytes left",
                     size, dropped, used)
            return {"ok": True, "dropped": dropped, "disk_bytes": used}
        done = threading.Event()

        def report() -> None:
            while not done.wait(PROGRESS_EVERY):
                nodes, seconds = self.progress.snapshot()
                emit({"progress": {"nodes": nodes, "seconds": round(seconds, 3)}})

        reporter = threading.Thread(target=report, name="acdfuse-sync-progress", daemon=True)
        reporter.start()
        try:
            finished = self.sync_loop.sync_and_wait(SYNC_REQUEST_WAIT)
        finally:
            done.set()
            reporter.join()
        nodes, seconds = self.progress.snapshot()
        error = self.sync_loop.last_error
        if not finished:
            return {"ok": False, "error": "the mount is shutting down or the sync did not end"}
        return {"ok": error is None, "state": self.sync_loop.state, "nodes": nodes,
                "seconds": round(seconds, 3), "error": None if error is None else str(error),
                "total_nodes": self.store.count()}

    def start(self) -> None:
        """Open the mirror, sync it first when empty, start the threads.

        Raises MountError when the mount cannot start; call ``close()`` afterwards either way.
        """
        opts = self.opts
        try:
            self.store.open()
        except StoreError as exc:
            raise MountError(f"the node mirror {opts.db_path} cannot be opened: {exc}") from exc
        self._exit.callback(self.store.close)
        synced_before_mount = False
        if self.store.is_empty:
            # nothing to serve offline: the first sync must succeed before the mount appears
            try:
                with self._first_sync_reported():
                    self.sync()
            except (RequestError, StoreError) as exc:
                refused = credentials_refused(exc)
                if refused is not None:
                    raise MountError(refused_message(opts, refused, client_base(self.client))) from exc
                if is_offline(exc):
                    # the last part of the text is the reason (connection refused, timed out...)
                    reason = str(exc).rsplit(": ", 1)[-1]
                    raise MountError(
                        f"the server at {client_base(self.client)} does not answer ({reason}) and the "
                        f"local mirror is empty, so there is nothing to serve offline: start the server "
                        f"(or correct its address in {opts.config_dir / 'endpoint_data'}) and mount "
                        f"again") from exc
                # an answer the sync could not use, or a bug of ours: not the network (logged by the store)
                raise MountError(f"the local mirror is empty and its first sync failed (see "
                                 f"{opts.log_file}): {exc}") from exc
            synced_before_mount = True
            self.first_synced_at = time.time()
            self.first_sync.synced()
        elif self.first_sync_progress is not None:
            self.first_sync_progress(None)      # a warm mirror mounts at once: nothing to show
        self.reader.start()
        self._exit.callback(self.reader.close)
        # runs before the reader closes: what this mount read, for the log
        self._exit.callback(lambda: log_read_stats(self.reader.stats()))
        if self.writes is not None:
            try:
                self.writes.start()      # takes up what the journal holds from the last mount
            except JournalError as exc:
                raise MountError(str(exc)) from exc
            # before the reader and the mirror close: the last uploads still use both
            self._exit.callback(self.writes.close, UNMOUNT_UPLOAD_WAIT)
        if synced_before_mount:
            self.sync_loop.refresh_quota()
        elif not server_accepts(self.client, _probe_timeout(opts)):
            self.first_sync.unreachable(ConnectionError(
                f"the server at {client_base(self.client)} does not accept connections"))
        self.sync_loop.start(sync_first=not synced_before_mount)
        # an unmount must not wait for a sync stuck in retries against an unreachable server
        self._exit.callback(self.sync_loop.close, min(opts.timeout, UNMOUNT_SYNC_WAIT))

    @contextlib.contextmanager
    def _first_sync_reported(self) -> Iterator[None]:
        """While the first sync runs, tell ``first_sync_progress`` the nodes read every
        ``FIRST_SYNC_PROGRESS_EVERY`` seconds; once it is over, the last count (when it ran long
        enough to show any: a small drive shows nothing) and then None."""
        report = self.first_sync_progress
        if report is None:
            yield
            return
        done = threading.Event()
        shown = threading.Event()

        def run() -> None:
            while not done.wait(FIRST_SYNC_PROGRESS_EVERY):
                shown.set()
                report(self.progress.snapshot()[0])

        reporter = threading.Thread(target=run, name="acdfuse-first-sync-progress", daemon=True)
        reporter.start()
        try:
            yield
        finally:
            done.set()
            reporter.join()
            if shown.is_set():
                report(self.progress.snapshot()[0])
            report(None)

    def close(self) -> None:
        """Stop what ``start`` started, in reverse order, then drop the client's connections."""
        try:
            self._exit.close()
        finally:
            self.client.close()

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _probe_timeout(opts: Options) -> float:
    return min(1.0, opts.timeout / 4)


def build(opts: Options, say: Callable[[str], None] | None = None) -> Stack:
    """Wire the stack of a mount from ``opts``; nothing runs until ``Stack.start()``.

    ``say`` prints the first-sync notice to a console that is not a terminal (see runtime/notice.py).
    For the bundled drive, its server must run already (``run`` joins it first): the client reads the
    credentials the server wrote.
    """
    client = ACDClient(str(opts.config_dir), timeout=(min(10.0, opts.timeout), opts.timeout),
                       retry_deadline=opts.timeout)
    store = NodeStore(opts.db_path)
    quota = QuotaCache()
    first_sync = FirstSyncReport(opts, say)

    progress = SyncProgress()
    kernel_cache = KernelCache(opts.mountpoint, store)
    loop = SyncLoop(functools.partial(_sync, store, client, progress, kernel_cache),
                    fetch_quota=client.fs_sizes, quota=quota,
                    interval=opts.interval, quota_interval=opts.quota_interval,
                    on_first=first_sync.first_sync_done)

    def on_stale(node_id: str) -> None:
        loop.request_sync()

    # each range pinned to its handle's content: newer content on the server is ESTALE, never a mix
    fetch = PinnedFetch(client.download_chunk, opts.timeout, on_stale=on_stale,
                        probe=functools.partial(server_accepts, client, _probe_timeout(opts)),
                        errno_of=to_errno)
    reader = ContentReader(fetch, opts.reader_options())
    attrs = NodeAttrs(store, put_property=client.add_property, delete_property=client.delete_property,
                      upload=functools.partial(_upload_small, client), owner_probe=client.get_owner_id)
    writes = None
    if writable(opts):
        writes = WriteSide(opts.journal_path, opts.spool_dir, store=store, remote=remote_for(client),
                           hooks=read_hooks(reader), opts=opts.write_options(),
                           after_upload=attrs.after_upload, upload_properties=attrs.upload_properties,
                           max_file_size=lambda: client.max_file_size)
    owner = Ownership(opts.uid, opts.gid, opts.umask, writable=writable(opts))
    ops = DriveOperations(store, reader, quota, owner, writes=writes, api=client if writes else None,
                          attrs=attrs, kernel_keeps=kernel_keeps(opts), forget_entry=kernel_cache.forget_soon,
                          kernel_sizes=kernel_cache.sizes)
    loop.add_listener(functools.partial(_after_sync, ops, kernel_cache))
    return Stack(opts=opts, client=client, store=store, fetch=fetch, reader=reader, quota=quota, ops=ops,
                 sync_loop=loop, first_sync=first_sync, progress=progress, writes=writes,
                 pending_stats=writes.uploads_status if writes is not None else no_pending,
                 kernel_cache=kernel_cache)


def _upload_small(client: ACDClient, data: bytes, name: str, parent_id: str,
                  properties: dict[str, dict[str, str]]) -> dict:
    """A small new file and its properties in one request (a symlink: vfs/nodeattrs.py)."""
    return dict(client.upload_stream(io.BytesIO(data), name, parent_id, properties=properties))


def _sync(store: NodeStore, client: ACDClient, progress: SyncProgress,
          kernel_cache: KernelCache | None = None) -> SyncResult:
    progress.begin()

    def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        # nodes read from the stream, for the progress of `acdfuse sync`
        for changeset in client.get_changes(*args, **kwargs):
            progress.add(len(changeset.nodes) + len(changeset.purged_nodes))
            yield changeset

    # the kernel cache notes where the changed nodes were before the store applies the changes
    return store.sync(kernel_cache.watch(counted) if kernel_cache is not None else counted)


def options_dict(opts: Options) -> dict[str, object]:
    """The mount's options as JSON values (paths as text), for `acdfuse status`."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif f.name == "embedded":
            value = None if value is None else str(value.root)
        out[f.name] = value
    return out


def _after_sync(ops: DriveOperations, kernel_cache: KernelCache, result: SyncResult) -> None:
    # derived state (link counts, chunks of old content, the kernel's entries) goes when the tree moved
    if result.reset or result.stored or result.purged:
        ops.invalidate(None if result.reset else result.changed)
        kernel_cache.after_sync(result.changed, result.reset)
    log.debug("sync: %s", result)


def kernel_keeps(opts: Options) -> float:
    """Seconds the kernel keeps the entries and attributes it is given: our timeout, unless the user's
    ``-o attr_timeout=``/``entry_timeout=`` (which go to libfuse as given) make it shorter."""
    keeps = opts.attr_timeout
    for item in opts.fuse_options:
        key, sep, value = item.partition("=")
        if sep and key.strip() in ("attr_timeout", "entry_timeout"):
            with contextlib.suppress(ValueError):
                keeps = min(keeps, float(value))
    return keeps


def writable(opts: Options) -> bool:
    """Whether this mount may change the drive: unless --read-only."""
    return not opts.read_only


def fuse_options(opts: Options) -> dict[str, object]:
    """The mount's libfuse options: ``ro`` unless it is writable, the user's ``-o`` options last."""
    return mount_options(read_only=not writable(opts), allow_other=opts.allow_other,
                         attr_timeout=opts.attr_timeout, nonempty=opts.nonempty, extra=opts.fuse_options)


def mount(stack: Stack, on_mounted: Callable[[], None] | None = None) -> None:
    """Serve a started stack at its mount point until it is unmounted (blocks this thread).
    ``on_mounted`` runs once the kernel mount exists (systemd's readiness, see runtime/sdnotify.py)."""
    opts = stack.opts
    try:
        serve(stack.ops, opts.mountpoint, fuse_options(opts), on_mounted=on_mounted,
              on_notifier=stack.kernel_cache.attach if stack.kernel_cache is not None else None)
    except MountRefused as exc:
        raise MountError(f"libfuse refused the mount (code {exc}); see the messages above") from exc


def run(opts: Options, say: Callable[[str], None] | None = None,
        on_mounted: Callable[[], None] | None = None,
        first_sync_progress: FirstSyncProgress | None = None) -> int:
    """The mount process, once the command line holds its locks: serve until unmounted.

    ``first_sync_progress`` follows the sync an empty mirror needs before the mount appears.

    Raises MountError when the mount cannot start.
    """
    try:
        # before the bundled server and the first sync: a machine without libfuse learns it at once
        load_mfusepy()
    except LibfuseMissing as exc:
        raise MountError(str(exc)) from exc
    with contextlib.ExitStack() as exit_stack:
        if opts.embedded is not None:
            _use_embedded_server(exit_stack, opts.embedded, opts)
        stack = build(opts, say)
        stack.first_sync_progress = first_sync_progress
        exit_stack.callback(stack.close)
        stack.start()
        record = MountRecord(opts.run_dir, opts.mountpoint)
        record.write_pid(embedded=opts.embedded is not None, cache_dir=opts.cache_dir)
        exit_stack.callback(record.remove)
        _serve_control(exit_stack, stack, record)
        log.info("mounting %s (config %s, cache %s)", opts.mountpoint, opts.config_dir, opts.cache_dir)
        mount(stack, on_mounted)
        log.info("unmounted %s", opts.mountpoint)
    return 0


def _serve_control(exit_stack: contextlib.ExitStack, stack: Stack, record: MountRecord) -> None:
    """The control socket of `acdfuse status`/`sync`, beside the pid file, while the mount lives."""
    server = ControlServer(record.control_socket, {"status": stack.serve_control,
                                                   "sync": stack.serve_control,
                                                   "cache": stack.serve_control})
    try:
        server.start()
    except OSError as exc:
        # the mount itself works without it; status and sync say they cannot reach it
        log.warning("no control socket at %s (acdfuse status/sync will not reach this mount): %s",
                    record.control_socket, exc)
        return
    exit_stack.callback(server.close)


def _use_embedded_server(exit_stack: contextlib.ExitStack, paths: EmbeddedPaths, opts: Options) -> None:
    """Use the bundled server (the running one, or one started now) until this mount ends; the last
    mount to end stops it (see runtime/embedded.py: file locks count the mounts, a killed one included)."""
    try:
        lease = embedded.join(paths, opts.mountpoint)
    except embedded.EmbeddedError as exc:
        raise MountError(str(exc)) from exc
    exit_stack.callback(_leave_embedded, lease)
    log.info("using the embedded drive at %s (data %s)", lease.state.base_url, paths.data)


def _leave_embedded(lease: embedded.Lease) -> None:
    try:
        lease.leave()
    except (embedded.EmbeddedError, OSError) as exc:
        # the server keeps running; the next `acdfuse umount` or mount stops it when nobody uses it
        log.warning("could not give up the embedded server: %s", exc)
