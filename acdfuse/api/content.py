"""Content transfers: folder/file creation, uploads and overwrites, ranged downloads and thumbnails.

Uploads and file downloads stream in pieces of ``FS_RW_CHUNK_SZ``; ``download_chunk`` reads a range
body with ``readinto`` straight into one (reused) buffer. Uploads are never repeated blindly: after an
unsure failure the server is asked whether the node (with our MD5) is there before sending again.
Downloads check every answer against its Content-Range/Content-Length and continue a cut body from
where it stopped.
"""

from __future__ import annotations

import ctypes
import http.client
import io
import json
import logging
import mimetypes
import os
import re
import threading
from collections.abc import Callable
from typing import IO, Any, Literal, overload

import requests

from ._base import ClientBase
from ._upload_body import UploadBody
from .backoff_req import Backoff
from .common import (
    OK_CODES,
    ConnectionFailed,
    IncompleteResult,
    RequestError,
    error_from_response,
    invalid_answer,
    json_object,
    make_error,
    node_answer,
)

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".__incomplete"
"""suffix (file ending) for incomplete files"""
CHUNK_SIZE = 524288000
"""download chunk size"""
CHUNK_MAX_RETRY = 5
"""retry limit for failed chunk"""
FS_RW_CHUNK_SZ = 131072
"""basic chunk size for file system r/w operations"""

# The answer to an upload comes once the server has read the whole body, and when the client has
# handed over its last byte, a lot may still be on the way: in the kernel's send buffer (Linux grows it
# to 4 MiB) and in the receiver's. On a slow link that takes far longer than the read timeout, which is
# meant for a server that stopped answering (a 4 MiB body queued at 1 Mbit/s: 32 s, beyond the default
# 30 s). So an upload's read timeout gets the time the bytes that may still be queued take at the
# slowest link the mount is meant to work on (tests/mount/test_reliability_slow_network.py).
UPLOAD_QUEUED_MAX = 8 * 1024 * 1024
UPLOAD_SLOWEST_LINK = 64 * 1024          # bytes/s, about 0.5 Mbit/s

_CREATED = 201
_PARTIAL = 206
_RANGE_NOT_SATISFIABLE = 416
_PRECONDITION_FAILED = 412
# byte counts must match what is on the wire, so content is never transfer-compressed
_IDENTITY = {"Accept-Encoding": "identity"}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

Callbacks = list[Callable[[bytes], Any]] | None


def _get_mimetype(file_name: str = "") -> str:
    return mimetypes.guess_type(file_name)[0] or "application/octet-stream"


def _range_of(r: requests.Response) -> tuple[int | None, int | None, int | None]:
    """(first byte, expected length, total size) announced by a download answer."""
    m = _CONTENT_RANGE.fullmatch(r.headers.get("Content-Range", "").strip())
    if m:
        first, last = int(m.group(1)), int(m.group(2))
        total = None if m.group(3) == "*" else int(m.group(3))
        return first, last - first + 1, total
    length = r.headers.get("Content-Length")
    return None, (int(length) if length and length.isdigit() else None), None


class _Uninitialised:
    """Makes bytearrays without zero-filling them: ``bytearray(n)`` writes every byte (and faults in
    every page) with the GIL held, for a buffer the socket overwrites right after (~0.09 CPU s per
    GiB here).

    Uses the C API's ``PyByteArray_FromStringAndSize(NULL, n)`` through a ctypes prototype of its own,
    built on first use: the shared ``ctypes.pythonapi`` symbol is never changed, and importing this
    module does nothing. Elsewhere than CPython it falls back to ``bytearray(n)``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._make: Callable[[int], bytearray] | None = None

    def __call__(self, size: int) -> bytearray:
        make = self._make
        if make is None:
            with self._lock:
                make = self._make = self._make or self._build()
        return make(size)

    @staticmethod
    def _build() -> Callable[[int], bytearray]:
        pythonapi = getattr(ctypes, "pythonapi", None)
        if pythonapi is None or not hasattr(pythonapi, "PyByteArray_FromStringAndSize"):
            return bytearray
        prototype = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_ssize_t)
        c_make = prototype(("PyByteArray_FromStringAndSize", pythonapi))

        def uninitialised(size: int) -> bytearray:
            buf: bytearray = c_make(None, size)
            return buf

        return uninitialised


_uninitialised = _Uninitialised()


class _BufferPool:
    """Large download buffers that are handed out only as memoryviews, and taken again once every view
    of them is gone.

    A fresh 8 MiB buffer is 2048 pages the kernel must fault in and zero while the socket fills them
    (on a small VM the largest single CPU cost of a cold read), and fresh buffers from several threads
    fragment the heap (peak RSS of the mount reading 8 files at once: about 330 MiB with the pool,
    380 MiB without). So a buffer whose user is done takes the next body as it is.

    Only the pool holds a pooled bytearray itself; a caller that asks for a pooled download
    (``download_chunk(..., pooled=True)``) gets a read-only memoryview of it and releases the buffer by
    releasing or dropping that view and every slice made of it. Python keeps a bytearray from being
    resized while any view of it exists (see ``memoryview.release``): a buffer that can be resized
    has no user left. That test, not a reference count, decides reuse; the view a caller gets is
    made under the pool's lock, so no second caller can get the same buffer. At most ``max_idle``
    bytes of free buffers are kept, and buffers that arrive while ``max_tracked`` bytes are already
    out are simply left to the garbage collector.
    """

    def __init__(self, min_size: int, max_idle: int, max_tracked: int) -> None:
        self._min_size = min_size
        self._max_idle = max_idle
        self._max_tracked = max_tracked
        self._lock = threading.Lock()
        self._bufs: list[bytearray] = []

    @staticmethod
    def _unused(buf: bytearray) -> bool:
        """True when no memoryview of ``buf`` is left (a resize is refused while one exists)."""
        try:
            last = buf.pop()     # shrinking by one byte and growing back never moves the memory
        except BufferError:
            return False
        buf.append(last)
        return True

    def get(self, size: int) -> memoryview:
        """A writable view of a buffer of ``size`` bytes that nobody else uses."""
        if size < self._min_size:
            return memoryview(_uninitialised(size))
        with self._lock:
            found: bytearray | None = None
            idle = tracked = 0
            keep: list[bytearray] = []
            for buf in self._bufs:
                if self._unused(buf):
                    if found is None and len(buf) == size:
                        found = buf
                    elif idle + len(buf) > self._max_idle:
                        continue  # dropped from the list: freed, as nothing else holds it
                    else:
                        idle += len(buf)
                keep.append(buf)
                tracked += len(buf)
            if found is None:
                found = _uninitialised(size)
                if tracked + size <= self._max_tracked:
                    keep.append(found)
            self._bufs = keep
            return memoryview(found)  # made under the lock: from now on the buffer is in use


# 32 MiB of free buffers kept at most; buffers of at least 1 MiB, 1 GiB of them tracked
_pool = _BufferPool(1 << 20, 32 << 20, 1 << 30)


def _etag_md5(r: requests.Response) -> str | None:
    """The content MD5 in a download's ETag (``"<md5>"``), if the server sent one."""
    tag = r.headers.get("ETag", "").strip()
    tag = tag[2:] if tag.startswith("W/") else tag
    tag = tag.strip('"').lower()
    return tag if re.fullmatch(r"[0-9a-f]{32}", tag) else None


class ContentMixin(ClientBase):
    """Implements content portion of the ACD API."""

    # --- creating ------------------------------------------------------------------------------

    def create_folder(self, name: str, parent: str | None = None) -> dict:
        body: dict[str, Any] = {"kind": "FOLDER", "name": name}
        if parent:
            body["parents"] = [parent]
        operation = f"create folder {name!r} in {parent or 'root'}"
        payload = json.dumps(body)

        def send(backoff: Backoff) -> requests.Response:
            return self.BOReq.post(
                self.metadata_url + "nodes",
                acc_codes=[_CREATED],
                data=payload,
                headers={"Content-Type": "application/json"},
                backoff=backoff,
                operation=operation,
                node=None,
            )

        def confirm() -> dict | None:
            node = self._find_child(parent, name)
            return node if node and node.get("kind") == "FOLDER" else None

        def parse(r: requests.Response) -> dict:
            return node_answer(json_object(r, operation), operation)

        return self.BOReq.request_confirmed(send, [_CREATED], confirm, operation=operation, parse=parse)

    def create_file(self, file_name: str, parent: str | None = None) -> dict:
        """An empty file called ``basename(file_name)`` in ``parent`` (root if None)."""
        return self.upload_stream(io.BytesIO(), os.path.basename(file_name), parent)

    # --- uploading -----------------------------------------------------------------------------

    def upload_file(
        self,
        file_name: str,
        parent: str | None = None,
        read_callbacks: Callbacks = None,
        deduplication: bool = False,
    ) -> dict:
        with open(file_name, "rb") as f:
            return self.upload_stream(f, os.path.basename(file_name), parent, read_callbacks, deduplication)

    def upload_stream(
        self,
        stream: IO[bytes],
        file_name: str,
        parent: str | None = None,
        read_callbacks: Callbacks = None,
        deduplication: bool = False,
        *,
        properties: dict[str, dict[str, str]] | None = None,
    ) -> dict:
        """:param stream: readable object
        :param parent: parent node id, defaults to root node if None
        :param properties: app properties of the new node, ``{owner: {key: value}}``, stored with it in
            the same request (a symlink or a file's POSIX attributes are never missing from it)"""
        metadata: dict[str, Any] = {"kind": "FILE", "name": file_name}
        if parent:
            metadata["parents"] = [parent]
        if properties:
            metadata["properties"] = properties
        body = _upload_body(stream, metadata, file_name, read_callbacks)
        params = _dedup_params(body, deduplication)

        def confirm() -> dict | None:
            if not body.complete:
                return None  # the server cannot hold what we did not finish sending
            node = self._find_child(parent, file_name)
            return node if node and self._same_content(node, body) else None

        return self._send_upload(
            "POST",
            self.content_url + "nodes",
            body,
            params=params,
            ok_codes=[_CREATED],
            operation=f"upload {file_name!r} into {parent or 'root'}",
            node=None,
            confirm=confirm,
        )

    def overwrite_file(
        self, node_id: str, file_name: str, read_callbacks: Callbacks = None, deduplication: bool = False
    ) -> dict:
        with open(file_name, "rb") as f:
            return self._overwrite(f, node_id, read_callbacks, deduplication, os.path.basename(file_name))

    def overwrite_stream(
        self,
        stream: IO[bytes],
        node_id: str,
        read_callbacks: Callbacks = None,
        *,
        expected_content_version: int | None = None,
        properties: dict[str, dict[str, str | None]] | None = None,
    ) -> dict:
        """Overwrite content of node with ID *node_id* with content of *stream*.

        :param stream: readable object
        :param properties: app properties to change with the content, ``{owner: {key: value}}``
            (``None`` as a value deletes the key), in the same request. Only a server that
            advertises :attr:`properties_with_content` takes them; any other raises ValueError
            before anything is sent (Amazon ignored an overwrite's metadata).
        :param expected_content_version: overwrite only while the node's content is still this
            version (``contentProperties.version``), else raise ``PreconditionFailed`` and change
            nothing. Only content changes count: a rename, a move or a property write does not.

            A server that advertises the conditional overwrite (``acdfuse serve``, see
            :attr:`conditional_overwrite`) checks it itself, in the same transaction as the write
            (``If-Match``), so no other change can slip in between. Any other server (Amazon had no
            such check, acd-api.md section 12) is asked for the node's metadata just before the upload
            and the versions are compared here. That leaves a window: a change another client makes
            after that read and before the server has taken this upload (about the upload's
            duration) is not detected, and is replaced as an unconditional overwrite would replace it.
        """
        if properties and not self.properties_with_content:
            raise ValueError("this server does not take properties with an overwrite")
        return self._overwrite(
            stream,
            node_id,
            read_callbacks,
            False,
            "content",
            expected_content_version=expected_content_version,
            metadata={"properties": properties} if properties else None,
        )

    def clear_file(self, node_id: str) -> dict:
        """Clears a file's content by overwriting it with an empty BytesIO.

        :param node_id: valid file node ID
        """
        return self._overwrite(io.BytesIO(), node_id, None, False, "content")

    def _overwrite(
        self,
        stream: IO[bytes],
        node_id: str,
        read_callbacks: Callbacks,
        deduplication: bool,
        file_name: str,
        *,
        expected_content_version: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict:
        headers: dict[str, str] = {}
        if expected_content_version is not None:
            if self.conditional_overwrite:
                headers["If-Match"] = f'"{int(expected_content_version)}"'
            else:
                self._check_content_version(node_id, int(expected_content_version))
        body = _upload_body(stream, metadata, file_name, read_callbacks)
        params = _dedup_params(body, deduplication)

        def confirm() -> dict | None:
            if not body.complete:
                return None
            node = self.get_metadata(node_id, temp_link=False)
            return node if self._same_content(node, body) else None

        url = self.content_url + "nodes/" + node_id + "/content"
        return self._send_upload(
            "PUT",
            url,
            body,
            params=params,
            ok_codes=OK_CODES,
            operation="overwrite",
            node=node_id,
            confirm=confirm,
            headers=headers,
        )

    def _check_content_version(self, node_id: str, expected: int) -> None:
        """The client-side check of a conditional overwrite, for servers that cannot do it."""
        node = self.get_metadata(node_id, temp_link=False)
        props = node.get("contentProperties") or {}
        try:
            current = int(props.get("version") or 0)
        except (AttributeError, TypeError, ValueError):
            raise invalid_answer("overwrite", f"content version {props!r:.100}", node_id) from None
        if current != expected:
            raise make_error(
                _PRECONDITION_FAILED,
                f"overwrite (node {node_id}): content version is {current}, expected {expected} "
                f"(checked by reading the node: this server has no conditional overwrite)",
            )

    def _send_upload(
        self,
        method: str,
        url: str,
        body: UploadBody,
        *,
        params: dict[str, str],
        ok_codes: list[int],
        operation: str,
        node: str | None,
        confirm: Callable[[], dict | None],
        headers: dict[str, str] | None = None,
    ) -> dict:
        headers = {**(headers or {}), "Content-Type": body.content_type}
        timeout = upload_timeout(self.BOReq.timeout, body.size)

        def send(backoff: Backoff) -> requests.Response:
            body.rewind()
            try:
                return self.BOReq.request(
                    method,
                    url,
                    ok_codes,
                    idempotent=False,
                    backoff=backoff,
                    operation=operation,
                    node=node,
                    params=params,
                    data=body,
                    headers=headers,
                    timeout=timeout,
                )
            except (ConnectionFailed, IncompleteResult):
                if body.source_error is not None:  # our own file failed, not the network: no retry
                    raise body.source_error from None
                raise

        def parse(r: requests.Response) -> dict:
            answer = node_answer(json_object(r, operation, node), operation, node)
            if body.complete and not self._same_content(answer, body):
                props = answer.get("contentProperties", {})
                raise make_error(
                    RequestError.CODE.INCOMPLETE_RESULT,
                    f"{operation} (node {answer.get('id')}): server stored {props.get('size')} bytes, "
                    f"md5 {props.get('md5')}; sent {body.sent} bytes, md5 {body.md5}",
                )
            return answer

        return self.BOReq.request_confirmed(
            send,
            ok_codes,
            confirm,
            operation=operation,
            node=node,
            parse=parse,
            replayable=lambda: body.replayable,
        )

    @staticmethod
    def _same_content(node: dict, body: UploadBody) -> bool:
        props = node.get("contentProperties") or {}
        if not isinstance(props, dict):
            return False
        md5, size = props.get("md5"), props.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            return False  # a size the server cannot mean: not what we sent
        return (md5 is None or md5 == body.md5) and (size is None or size == body.sent)

    # --- downloading ---------------------------------------------------------------------------

    def response_chunk(self, node_id: str, offset: int, length: int, **kwargs: Any) -> requests.Response:
        """The open (streaming) answer for ``length`` bytes at ``offset``; the caller closes it.

        ``content_md5=`` (optional): the content the caller expects; if the server's ETag names another
        one (the file was overwritten meanwhile), ``RequestError(412)`` is raised instead.
        """
        content_md5 = kwargs.pop("content_md5", None)
        end = offset + length - 1
        headers = {**_IDENTITY, **kwargs.pop("headers", {}), "Range": f"bytes={offset}-{end}"}
        operation = f"download bytes {offset}-{end}"
        r = self.BOReq.get(
            self.content_url + "nodes/" + node_id + "/content",
            acc_codes=[_PARTIAL],
            stream=True,
            headers=headers,
            operation=operation,
            node=node_id,
            **kwargs,
        )
        if r.status_code == _RANGE_NOT_SATISFIABLE and content_md5:
            # a pinned caller only asks for bytes inside the content it pinned; a range beyond the
            # server's end means that content was replaced by a shorter one (RFC 9110 checks the
            # range before an ETag the client can compare), so this is the same 412 as a new ETag
            r.close()
            raise make_error(
                _PRECONDITION_FAILED,
                f"{operation} (node {node_id}): content changed on the server (the range is past its "
                f"end; expected md5 {content_md5})",
            )
        if r.status_code != _PARTIAL:
            raise error_from_response(r, operation, node_id)
        first, span, _ = _range_of(r)
        if first is None or span is None or span <= 0:
            # RFC 9110 15.3.7: a 206 says which bytes it holds; without that they cannot be placed
            r.close()
            raise invalid_answer(
                operation, f"206 without a usable Content-Range ({r.headers.get('Content-Range')!r})", node_id
            )
        if first != offset:
            r.close()
            raise invalid_answer(operation, f"server sent a range from {first}", node_id)
        served = _etag_md5(r)
        if content_md5 and served and served != content_md5:
            r.close()
            raise make_error(
                _PRECONDITION_FAILED,
                f"{operation} (node {node_id}): content changed on the server (md5 {served}, "
                f"expected {content_md5})",
            )
        return r

    @overload
    def download_chunk(
        self, node_id: str, offset: int, length: int, *, pooled: Literal[True], **kwargs: Any
    ) -> memoryview: ...

    @overload
    def download_chunk(self, node_id: str, offset: int, length: int, **kwargs: Any) -> bytearray: ...

    def download_chunk(self, node_id: str, offset: int, length: int, **kwargs: Any) -> bytearray | memoryview:
        """Load a file chunk into memory (thread-safe). A cut answer is continued where it stopped.

        The body goes straight from the socket into one buffer of the announced size with a few large
        ``readinto`` calls, which run without the GIL; the buffer itself is what comes back.

        :param length: the length of the download chunk; less comes back only at the end of the file
        :param kwargs: ``content_md5`` (see :meth:`response_chunk`), passed on to the request;
            ``pooled=True``: the answer is a read-only memoryview of a buffer that is used again for a
            later download once this view and every slice of it are released or dropped (for callers
            that keep only views, such as the mount's chunk cache; it saves fresh memory per request)
        """
        pooled = bool(kwargs.pop("pooled", False))
        alloc: Callable[[int], Any] = _pool.get if pooled else _uninitialised
        buffer, filled = self._download_range(node_id, offset, length, alloc, kwargs)
        if pooled:
            view: memoryview = buffer[:filled].toreadonly()
            return view
        if filled < len(buffer):
            # a body without a length ended early; bytes past ``filled`` were never written and must
            # not leave here (a copy, not a resize: a cut's traceback may still hold a view)
            return buffer[:filled]
        return buffer

    def download_chunk_into(self, node_id: str, offset: int, buffer: Any, **kwargs: Any) -> int:
        """Like :meth:`download_chunk`, into the caller's writable buffer; returns the bytes written.

        ``len(buffer)`` bytes at ``offset`` are asked for; fewer are written only at the end of the file.
        For callers that need the bytes in memory of their own choosing (the mount reads into
        page-aligned buffers that its disk cache can write with O_DIRECT, without a copy).
        """
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("download_chunk_into needs a writable buffer")
        _, filled = self._download_range(node_id, offset, len(view), lambda _size: view, kwargs)
        return filled

    def _download_range(
        self, node_id: str, offset: int, length: int, alloc: Callable[[int], Any], kwargs: dict[str, Any]
    ) -> tuple[Any, int]:
        """Download ``length`` bytes at ``offset`` into ``alloc(n)``; (that buffer, bytes filled).

        ``alloc`` gets the size the server announced (less than ``length`` at the end of the file) and
        returns a writable buffer at least that long.
        """
        buffer: Any = None
        view = memoryview(b"")
        size = filled = 0
        backoff = self.BOReq.policy.start()
        while True:
            pos = offset + filled
            r = self.response_chunk(node_id, pos, length - filled, backoff=backoff, **kwargs)
            # a continuation must come from the same content version as the first part
            kwargs["content_md5"] = kwargs.get("content_md5") or _etag_md5(r)
            _, expected, _ = _range_of(r)
            if buffer is None:
                # one allocation of what is announced (less than asked for at the end of the file)
                size = min(expected, length) if expected else length
                buffer = alloc(size)
                view = memoryview(buffer).cast("B")[:size]
            want = size - filled if expected is None else min(expected, size - filled)
            got, cut = self._read_into(r, view[filled : filled + want])
            filled += got
            if cut is None and (filled == size or expected is None or got >= expected):
                break  # all there is (the file may end before offset + length)
            delay = backoff.next_delay()
            what = f"download bytes {pos}-{offset + length - 1} (node {node_id})"
            if delay is None:
                raise make_error(
                    RequestError.CODE.INCOMPLETE_RESULT,
                    f"{what}: answer cut after {got} of {expected} bytes ({cut or 'short body'})",
                )
            logger.warning("%s cut after %d of %s bytes; continuing in %.1fs", what, got, expected, delay)
            self.BOReq.sleep(delay)
        view.release()
        return buffer, filled

    @classmethod
    def _read_into(cls, r: requests.Response, view: memoryview) -> tuple[int, Exception | None]:
        """Read the body into ``view``; (bytes read, the error that cut it or None). Closes ``r``.

        Identity bodies are read with ``readinto`` on the underlying ``http.client`` answer, which
        fills the buffer from the socket in C without holding the GIL (no per-piece bytes objects,
        no copies). The connection goes back to the pool only if the body was read to its end.
        """
        fp = getattr(r.raw, "_fp", None)
        encoding = r.headers.get("Content-Encoding", "identity").strip().lower()
        if not isinstance(fp, http.client.HTTPResponse) or encoding not in ("", "identity"):
            return cls._drain_into(r, view)  # anything unusual: the generic (decoding) path
        got = 0
        cut: Exception | None = None
        try:
            while got < len(view):
                n = fp.readinto(view[got:])
                if not n:
                    break
                got += n
        except (OSError, http.client.HTTPException) as exc:
            cut = exc
        finally:
            if cut is None and got == len(view) and fp.isclosed():
                r.raw.release_conn()  # read to its end: the connection can be used again
            r.close()  # otherwise this closes the connection: its stream position is unknown
        return got, cut

    @classmethod
    def _drain_into(cls, r: requests.Response, view: memoryview) -> tuple[int, Exception | None]:
        filled = 0

        def sink(piece: bytes) -> None:
            nonlocal filled
            end = min(filled + len(piece), len(view))
            view[filled:end] = piece[: end - filled]
            filled = end

        got, cut = cls._drain(r, sink)
        return got, cut

    @staticmethod
    def _drain(r: requests.Response, sink: Callable[[bytes], Any]) -> tuple[int, Exception | None]:
        """Feed the body to ``sink`` in pieces; (bytes read, the error that cut it or None)."""
        got = 0
        try:
            for piece in r.iter_content(chunk_size=FS_RW_CHUNK_SZ):
                if piece:
                    sink(piece)
                    got += len(piece)
        except requests.RequestException as exc:
            return got, exc
        finally:
            r.close()
        return got, None

    def chunked_download(self, node_id: str, file: IO[bytes], **kwargs: Any) -> None:
        """Write the file's content to ``file`` in ranged requests of ``CHUNK_SIZE``.

        :param kwargs:
            offset (int): byte offset -- start byte for ranged request
            length (int): total file length[!], equal to end + 1
            write_callbacks (list[function]): called with each piece written
            content_md5 (str): expected content; else the first answer's ETag pins the version, and a
                later chunk of other content raises ``RequestError(412)`` rather than mixing versions
        """
        pos = int(kwargs.get("offset") or 0)
        length: int | None = kwargs.get("length") or None
        write_callbacks = kwargs.get("write_callbacks") or []
        content_md5: str | None = kwargs.get("content_md5")
        total: int | None = None
        failures = 0
        backoff = self.BOReq.policy.start()

        def write(piece: bytes) -> None:
            file.write(piece)
            for callback in write_callbacks:
                callback(piece)

        while True:
            bound = length if length is not None else total
            if bound is not None and pos >= bound:
                break
            want = CHUNK_SIZE if bound is None else min(CHUNK_SIZE, bound - pos)
            try:
                r = self.response_chunk(node_id, pos, want, content_md5=content_md5)
            except RequestError as exc:
                if exc.status_code == _RANGE_NOT_SATISFIABLE:
                    break  # at the end of a file of unknown length (or an empty one)
                raise
            content_md5 = content_md5 or _etag_md5(r)  # every chunk from the same content version
            _, expected, total = _range_of(r)
            got, cut = self._drain(r, write)
            pos += got
            if cut is None and (expected is None or got >= expected):
                failures = 0
                if expected is None or got < want:
                    break  # the server had no more
                continue
            if got:
                failures, backoff = 0, self.BOReq.policy.start()  # progress: a fresh budget
            failures += 1
            delay = backoff.next_delay() if failures <= CHUNK_MAX_RETRY else None
            what = f"download from byte {pos} (node {node_id})"
            if delay is None:
                raise make_error(
                    RequestError.CODE.INCOMPLETE_RESULT,
                    f"{what}: chunk failed {failures} times, "
                    f"last cut after {got} bytes ({cut or 'short body'})",
                )
            logger.warning("%s: answer cut (%s); continuing in %.1fs", what, cut or "short body", delay)
            self.BOReq.sleep(delay)

    def download_file(self, node_id: str, basename: str, dirname: str | None = None, **kwargs: Any) -> None:
        """Deals with download preparation, download with :func:`chunked_download` and finish.
        Calls callbacks while fast forwarding through incomplete file (if existent).
        Will not check for existing file prior to download and overwrite existing file on finish.

        :param dirname: a valid local directory name, or cwd if None
        :param basename: a valid file name
        :param kwargs:
            - length: the total length of the file
            - write_callbacks (list[function]): passed on to :func:`chunked_download`
            - resume (bool=True): whether to resume if partial file exists
        """
        dl_path = os.path.join(dirname, basename) if dirname else basename
        part_path = dl_path + PARTIAL_SUFFIX
        length = int(kwargs.get("length") or 0)
        write_callbacks = kwargs.get("write_callbacks") or []

        if kwargs.get("resume", True) and os.path.isfile(part_path):
            f: IO[bytes] = open(part_path, "r+b")  # closed by the with-block below
            size = f.seek(0, io.SEEK_END)
            # the last piece may be torn if the previous run died mid-write: fetch it again
            keep = max(0, size - FS_RW_CHUNK_SZ)
            if length and keep > length:
                keep = 0
            f.truncate(keep)
            f.seek(0)
            if write_callbacks:
                done = 0
                while done < keep:
                    piece = f.read(min(FS_RW_CHUNK_SZ, keep - done))
                    if not piece:
                        break
                    done += len(piece)
                    for callback in write_callbacks:
                        callback(piece)
            f.seek(keep)
            logger.info('Resuming "%s" at byte %d.', part_path, keep)
        else:
            f = open(part_path, "wb")
        with f:
            self.chunked_download(
                node_id,
                f,
                offset=f.tell(),
                length=length or None,
                write_callbacks=write_callbacks,
                content_md5=kwargs.get("content_md5"),
            )
            pos = f.tell()
        if length > 0 and pos < length:
            raise make_error(
                RequestError.CODE.INCOMPLETE_RESULT,
                f"download (node {node_id}): expected {length} bytes, got {pos}; kept {part_path}",
            )
        os.replace(part_path, dl_path)

    def download_thumbnail(self, node_id: str, file_name: str, max_dim: int = 128) -> None:
        """Download a movie's or picture's thumbnail into a file.

        :param max_dim: maximum width or height of the resized image/video thumbnail
        """
        operation = f"download thumbnail ({max_dim}px)"
        backoff = self.BOReq.policy.start()
        while True:
            r = self.BOReq.get(
                self.content_url + "nodes/" + node_id + "/content",
                params={"viewBox": max_dim},
                stream=True,
                headers=_IDENTITY,
                backoff=backoff,
                operation=operation,
                node=node_id,
            )
            if r.status_code not in OK_CODES:
                raise error_from_response(r, operation, node_id)
            _, expected, _ = _range_of(r)
            with open(file_name, "wb") as f:
                got, cut = self._drain(r, f.write)
            if cut is None and (expected is None or got >= expected):
                return
            delay = backoff.next_delay()
            if delay is None:
                raise make_error(
                    RequestError.CODE.INCOMPLETE_RESULT,
                    f"{operation} (node {node_id}): cut after {got} of {expected} bytes",
                )
            self.BOReq.sleep(delay)


def upload_timeout(timeout: tuple[float, float], size: int | None) -> tuple[float, float]:
    """(connect, read) timeout of an upload of ``size`` bytes (None: not known yet), see
    UPLOAD_QUEUED_MAX: the read timeout plus the time the bytes that may still be queued when the last
    one is handed over take at the slowest link."""
    queued = UPLOAD_QUEUED_MAX if size is None else min(size, UPLOAD_QUEUED_MAX)
    return timeout[0], timeout[1] + queued / UPLOAD_SLOWEST_LINK


def _upload_body(
    stream: IO[bytes], metadata: dict[str, Any] | None, file_name: str, read_callbacks: Callbacks
) -> UploadBody:
    """The streamed multipart body of an upload (with metadata) or an overwrite (content only)."""
    return UploadBody(
        stream,
        metadata=metadata,
        filename=file_name,
        mime_type=_get_mimetype(file_name),
        chunk_size=FS_RW_CHUNK_SZ,
        read_callbacks=read_callbacks,
    )


def _dedup_params(body: UploadBody, deduplication: bool) -> dict[str, str]:
    # empty files would all be duplicates of each other, so dedup is never asked for them
    return {} if deduplication and body.size != 0 else {"suppress": "deduplication"}
