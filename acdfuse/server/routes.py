"""URL table and endpoint functions of the REST API (metadata ``/drive/v1/`` and content ``/cdproxy/``).

Each endpoint takes a ``Request`` (with the authenticated account) and returns a response value; the
HTTP details (framing, faults, sendfile) stay in ``handler.py``. Path parameters are matched by
strict patterns, so ids with path tricks (``..``, ``%2F``) never match and get 404.

Extensions of Amazon's protocol (on unless ``ServerConfig.extensions`` is False; Amazon had none of
them, acd-api.md section 12), advertised in the discovery answer ``GET account/endpoint`` as
``"acdfuse": {"ifMatch": "contentProperties.version", "maxFileSize": <bytes>}`` so a client can tell
this server from one without them (a server without them has no ``acdfuse`` key):

* Conditional overwrite: ``PUT {content}nodes/{id}/content`` with ``If-Match: "<n>"`` (a list and
  ``*`` as in RFC 9110; a tag is the decimal content version, quoted or not, and a weak ``W/`` tag
  never matches) replaces the content only while the node's ``contentProperties.version`` is ``n``.
  Otherwise the answer is 412 with the usual JSON error body, code ``PRECONDITION_FAILED`` and
  ``info.contentVersion`` (the current one), and nothing changes. Only content changes move that
  version: a rename, a move, a trash/restore or a property write does not make the condition fail.
  Without the header an overwrite is unconditional, as on Amazon.
* ``maxFileSize``: the largest file an upload or overwrite may carry (bigger ones get 413), so a
  client can refuse a write early (EFBIG) instead of after sending it.
* Properties with the content, advertised as ``"propertiesWithContent": ["upload", "overwrite"]``:
  the metadata part of an upload, and of an overwrite (whose metadata Amazon ignored), may carry
  ``"properties": {"<owner>": {"<key>": "<value>" or null}}``. They are written in the same
  transaction as the content, under the rules of ``PUT .../properties`` (a non-empty owner, at most
  10 keys per owner and node, values of at most 500 characters; a breach is 400 and changes nothing,
  content included); in an overwrite ``null`` deletes a key (no error when it is absent). The
  answer's node JSON shows them. So a client stores a file's attributes (mode, owner, mtime,
  xattrs) with its content in one request instead of one more request per key. Without the
  extension the upload's metadata still takes string values (acd-api.md section 6.2 lists
  ``properties`` there) and the overwrite's metadata part is read and ignored, as Duplicati's was
  by Amazon.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from acdfuse.server import thumbnails
from acdfuse.server.auth import Auth
from acdfuse.server.blobs import BlobStore
from acdfuse.server.bodies import BodyError
from acdfuse.server.config import ServerConfig
from acdfuse.server.drive import Drive, NewContent, Page
from acdfuse.server.errors import ApiError, bad_request
from acdfuse.server.faults import Stats
from acdfuse.server.messages import AnyResponse, FileResponse, Request, Response, StreamResponse, strict_json
from acdfuse.server.model import (
    EXTENSIONS_KEY,
    IF_MATCH_ON,
    PROPERTIES_WITH,
    ContentCondition,
    content_version,
)
from acdfuse.server.multipart import MultipartError, MultipartReader, Part, boundary_of
from acdfuse.server.util import dumps, format_date, now_ms

log = logging.getLogger(__name__)

ID = r"(?P<id>[A-Za-z0-9_-]{22})"
CHILD = r"(?P<child>[A-Za-z0-9_-]{22})"
MAX_METADATA_PART = 64 * 1024

Endpoint = Callable[[Request], AnyResponse]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    stat: str  # Stats key counted for this route

    @property
    def public(self) -> bool:
        """No bearer token needed (the tempLink carries its own signature)."""
        return self.name == "templink"


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, dumps(obj))


def if_match(header: str | None) -> ContentCondition | None:
    """The condition an ``If-Match`` header sets on an overwrite (None without the header)."""
    if header is None:
        return None
    versions: set[int] = set()
    for tag in (t.strip() for t in header.split(",")):
        if tag == "*":
            return ContentCondition(header, None)   # any current content: the node exists
        value = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else tag
        if value.isascii() and value.isdigit():
            versions.add(int(value))             # anything else (a W/ tag, an md5) never matches
    return ContentCondition(header, frozenset(versions))


class Api:
    def __init__(  # noqa: PLR0917 - composition root passes the parts once
        self,
        config: ServerConfig,
        drive: Drive,
        blobs: BlobStore,
        auth: Auth,
        stats: Stats,
        base_url: Callable[[str | None], str],
    ) -> None:
        self.config = config
        self.drive = drive
        self.blobs = blobs
        self.auth = auth
        self.stats = stats
        self.base_url = base_url
        m, c = r"/drive/v1/", r"/cdproxy/"
        table = [
            ("GET", m + r"account/endpoint", "endpoint", "metadata"),
            ("GET", m + r"account/info", "account_info", "metadata"),
            ("GET", m + r"account/quota", "account_quota", "metadata"),
            ("GET", m + r"account/usage", "account_usage", "metadata"),
            ("POST", m + r"nodes", "create_folder", "metadata"),
            ("GET", m + r"nodes", "list_nodes", "metadata"),
            ("GET", m + rf"nodes/{ID}", "get_node", "metadata"),
            ("PATCH", m + rf"nodes/{ID}", "patch_node", "metadata"),
            ("DELETE", m + rf"nodes/{ID}", "purge_node", "metadata"),
            ("GET", m + rf"nodes/{ID}/children", "list_children", "metadata"),
            ("POST", m + rf"nodes/{ID}/children", "move_child", "metadata"),
            ("PUT", m + rf"nodes/{ID}/children/{CHILD}", "add_child", "metadata"),
            ("DELETE", m + rf"nodes/{ID}/children/{CHILD}", "remove_child", "metadata"),
            ("GET", m + rf"nodes/{ID}/properties/(?P<owner>[^/]*)", "list_properties", "metadata"),
            (
                "GET",
                m + rf"nodes/{ID}/properties/(?P<owner>[^/]*)/(?P<key>[^/]+)",
                "get_property",
                "metadata",
            ),
            (
                "PUT",
                m + rf"nodes/{ID}/properties/(?P<owner>[^/]*)/(?P<key>[^/]+)",
                "put_property",
                "metadata",
            ),
            (
                "DELETE",
                m + rf"nodes/{ID}/properties/(?P<owner>[^/]*)/(?P<key>[^/]+)",
                "delete_property",
                "metadata",
            ),
            ("POST", m + r"changes", "changes", "changes"),
            ("GET", m + r"trash", "list_trash", "metadata"),
            ("PUT", m + rf"trash/{ID}", "trash", "metadata"),
            ("POST", m + rf"trash/{ID}/restore", "restore", "metadata"),
            ("POST", c + r"nodes", "upload", "upload"),
            ("PUT", c + rf"nodes/{ID}/content", "overwrite", "overwrite"),
            ("GET", c + rf"nodes/{ID}/content", "download", "download"),
            ("GET", c + r"templink/(?P<token>[A-Za-z0-9_.-]{20,400})", "templink", "download"),
        ]
        self.routes = [Route(meth, re.compile(pat + "/?$"), name, stat) for meth, pat, name, stat in table]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for a request path, or 404/405 ApiErrors."""
        allowed = False
        for r in self.routes:
            mo = r.pattern.match(path)
            if mo:
                if r.method == method:
                    return r, {k: unquote(v) for k, v in mo.groupdict().items() if v is not None}
                allowed = True
        if allowed:
            raise ApiError(405, f"Method {method} not allowed on {path}")
        raise ApiError(404, f"No such resource: {path}", "NOT_FOUND")

    def _base(self, req: Request) -> str:
        """The base URL for URLs in this answer (see ``DriveServer.url_for``)."""
        return self.base_url(req.headers.get("Host"))

    def call(self, route: Route, req: Request) -> AnyResponse:
        fn: Endpoint = getattr(self, route.name)
        return fn(req)

    # -- account ----------------------------------------------------------------------------------
    def endpoint(self, req: Request) -> AnyResponse:
        base = self._base(req)
        answer: dict[str, Any] = {
            "customerExists": True,
            "contentUrl": base + "/cdproxy/",
            "metadataUrl": base + "/drive/v1/",
        }
        if self.config.extensions:
            answer[EXTENSIONS_KEY] = {
                "ifMatch": IF_MATCH_ON,
                "maxFileSize": self.config.max_file_size,
                "propertiesWithContent": list(PROPERTIES_WITH),
            }
        return json_response(answer)

    def account_info(self, req: Request) -> AnyResponse:
        return json_response({"termsOfUse": "1.0.0", "status": "ACTIVE"})

    def account_quota(self, req: Request) -> AnyResponse:
        used = self.drive.used_bytes(req.acc)
        return json_response(
            {
                "quota": req.acc.quota,
                "available": max(0, req.acc.quota - used),
                "lastCalculated": format_date(now_ms()),
            }
        )

    def account_usage(self, req: Request) -> AnyResponse:
        return json_response(self.drive.usage(req.acc))

    # -- nodes ------------------------------------------------------------------------------------
    def create_folder(self, req: Request) -> AnyResponse:
        body = req.json()
        return json_response(self.drive.create_folder(req.acc, body), 201)

    def list_nodes(self, req: Request) -> AnyResponse:
        return self._page(req, self.drive.list_nodes(req.acc, req.query))

    def get_node(self, req: Request) -> AnyResponse:
        node = self.drive.node(req.acc, req.params["id"])
        if _wants_templink(req) and node["kind"] == "FILE":
            node["tempLink"] = self._templink(req, node["id"])
        if req.query.get("asset", "").upper() == "ALL" and node["kind"] == "FILE":
            node["assets"] = []  # this server makes no derived ASSET nodes (thumbnails come from viewBox)
        return json_response(node)

    # -- tempLink: a pre-authenticated download URL ------------------------------------------------
    def _templink(self, req: Request, node_id: str) -> str:
        """``{content}templink/<token>``: the token signs (account, node, expiry), so it needs no table."""
        expires = int(time.time() + self.config.templink_lifetime)
        raw = f"{req.acc.id}.{node_id}.{expires}"
        sig = hmac.new(self.drive.token_key, raw.encode(), hashlib.sha256).digest()[:16]
        token = (
            base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
            + "."
            + (base64.urlsafe_b64encode(sig).decode().rstrip("="))
        )
        return f"{self._base(req)}/cdproxy/templink/{token}"

    def templink(self, req: Request) -> AnyResponse:
        """Download through a tempLink: no Authorization header, Range works; expired or forged -> 404."""
        try:
            head, sig_text = req.params["token"].split(".")
            raw = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))
            sig = base64.urlsafe_b64decode(sig_text + "=" * (-len(sig_text) % 4))
            acc_text, node_id, exp_text = raw.decode().split(".")
            account, expires = int(acc_text), int(exp_text)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(404, "Invalid or expired link", "NOT_FOUND") from None
        good = hmac.new(self.drive.token_key, raw, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(sig, good) or time.time() > expires:
            raise ApiError(404, "Invalid or expired link", "NOT_FOUND")
        req.account = self.drive.account(account)
        req.params["id"] = node_id
        return self.download(req)

    def _page(self, req: Request, page: Page) -> Response:
        if _wants_templink(req):
            data = []
            for text in page.data:
                node = json.loads(text)
                if node["kind"] == "FILE":
                    node["tempLink"] = self._templink(req, node["id"])
                data.append(json.dumps(node))
            page = Page(page.count, data, page.next_token)
        return Response(200, page.to_bytes())

    def patch_node(self, req: Request) -> AnyResponse:
        body = req.json()
        return json_response(self.drive.patch(req.acc, req.params["id"], body))

    def purge_node(self, req: Request) -> AnyResponse:
        self.drive.row(req.acc, req.params["id"])  # unknown ids still get 404
        raise ApiError(403, "Insufficient permissions granted for operation: purgeNode", bare=True)

    def list_children(self, req: Request) -> AnyResponse:
        return self._page(req, self.drive.list_nodes(req.acc, req.query, parent=req.params["id"]))

    def move_child(self, req: Request) -> AnyResponse:
        return json_response(self.drive.move(req.acc, req.params["id"], req.json()))

    def add_child(self, req: Request) -> AnyResponse:
        req.read_body()  # ignored, but consumed
        return json_response(self.drive.add_child(req.acc, req.params["id"], req.params["child"]))

    def remove_child(self, req: Request) -> AnyResponse:
        return json_response(self.drive.remove_child(req.acc, req.params["id"], req.params["child"]))

    # -- properties -------------------------------------------------------------------------------
    def _owner(self, req: Request) -> str:
        owner = req.params.get("owner", "")
        if not owner:
            # what Amazon's front end answered for an empty owner segment
            raise ApiError(
                404, "UnknownOperationException", raw=("application/xml", b"<UnknownOperationException/>")
            )
        return owner

    def list_properties(self, req: Request) -> AnyResponse:
        owner = self._owner(req)
        return json_response({"data": self.drive.get_properties(req.acc, req.params["id"], owner)})

    def get_property(self, req: Request) -> AnyResponse:
        owner = self._owner(req)
        props = self.drive.get_properties(req.acc, req.params["id"], owner)
        key = req.params["key"]
        if key not in props:
            raise ApiError(404, f"Property {key} does not exist", "NOT_FOUND")
        return json_response({"key": key, "value": props[key]})

    def put_property(self, req: Request) -> AnyResponse:
        owner = self._owner(req)
        body = req.json()
        if set(body) != {"value"}:
            raise bad_request('expected {"value": "..."}')
        node_id, key = req.params["id"], req.params["key"]
        self.drive.set_property(req.acc, node_id, owner, key, body["value"])
        location = f"{self._base(req)}/drive/v1/nodes/{node_id}/properties/{owner}/{key}"
        return json_response({"key": key, "value": body["value"], "location": location}, 201)

    def delete_property(self, req: Request) -> AnyResponse:
        owner = self._owner(req)
        self.drive.delete_property(req.acc, req.params["id"], owner, req.params["key"])
        return Response(204, b"", "")

    # -- trash ------------------------------------------------------------------------------------
    def list_trash(self, req: Request) -> AnyResponse:
        return Response(200, self.drive.list_nodes(req.acc, req.query, trash=True).to_bytes())

    def trash(self, req: Request) -> AnyResponse:
        req.read_body()
        return json_response(self.drive.trash(req.acc, req.params["id"]))

    def restore(self, req: Request) -> AnyResponse:
        req.read_body()
        return json_response(self.drive.restore(req.acc, req.params["id"]))

    # -- changes ----------------------------------------------------------------------------------
    def changes(self, req: Request) -> AnyResponse:
        body = req.json(optional=True)
        checkpoint = body.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise bad_request("checkpoint must be a string")
        chunk = _positive(body.get("chunkSize"), "chunkSize", self.config.changes_chunk_size) or 1
        max_nodes = _positive(body.get("maxNodes"), "maxNodes", None)
        purged = body.get("includePurged", False)
        if purged not in (True, False, "true", "false", "True", "False"):
            raise bad_request("includePurged must be true or false")
        include_purged = purged in (True, "true", "True")
        gen = self.drive.changes(
            req.acc,
            checkpoint,
            chunk_size=min(chunk, 10000),
            max_nodes=max_nodes,
            include_purged=include_purged,
        )
        # the first object is computed here, so a bad request still gets a plain error status
        first = next(gen)

        def lines() -> Iterator[bytes]:
            try:
                yield first
                yield from gen
                yield b'{"end":true}\n'
            finally:
                gen.close()

        return StreamResponse(200, lines())

    # -- content ----------------------------------------------------------------------------------
    def _content_part(self, part: Part) -> NewContent:
        writer = self.blobs.writer(self.config.max_file_size)
        try:
            while True:
                data = part.read()
                if not data:
                    break
                writer.write(data)
            self.stats.incr("upload_bytes", writer.size)
            blob = writer.commit()
        except OverflowError:
            writer.discard()
            raise ApiError(413, f"File larger than {self.config.max_file_size} bytes") from None
        except BaseException:
            writer.discard()
            raise
        return NewContent(blob, writer.size, writer.md5)

    def _multipart(self, req: Request) -> MultipartReader:
        ctype = req.headers.get("Content-Type", "")
        if req.content_length is not None and req.content_length > self.config.max_file_size + 1024 * 1024:
            raise ApiError(413, f"File larger than {self.config.max_file_size} bytes")
        try:
            return MultipartReader(req.body, boundary_of(ctype))
        except MultipartError as e:
            raise bad_request(f"Cannot read from request: {e}") from None

    def upload(self, req: Request) -> AnyResponse:
        suppress = "deduplication" in req.query.get("suppress", "").split(",")
        local_id = req.query.get("localId")
        reader = self._multipart(req)
        meta: dict[str, Any] | None = None
        content: NewContent | None = None
        try:
            try:
                while (part := reader.next_part()) is not None:
                    if part.name == "metadata" and meta is None and content is None:
                        meta = _parse_metadata(part.read_all(MAX_METADATA_PART))
                        if meta.get("kind", "FILE") != "FILE":
                            raise bad_request(
                                "kind must be FILE for uploads; folders are created on the metadata URL"
                            )
                        self.drive.check_new_file(req.acc, meta, local_id)
                    elif part.name == "content" and content is None:
                        if meta is None:
                            raise bad_request("the metadata part must come before the content part")
                        content = self._content_part(part)
                    else:
                        raise bad_request(f"unexpected multipart part {part.name!r}")
                reader.finish()  # a body cut after its close delimiter is still a cut request
            except (MultipartError, BodyError) as e:
                raise bad_request(f"Cannot read from request: {e}") from None
            if meta is None or content is None:
                raise bad_request("an upload needs a metadata part and a content part")
            node = self.drive.create_node(
                req.acc, meta, kind="FILE", content=content, dedup=not suppress, local_id=local_id
            )
        except BaseException:
            if content is not None:
                self.blobs.delete(content.blob)
            raise
        return json_response(node, 201)

    def overwrite(self, req: Request) -> AnyResponse:
        row = self.drive.file_row(req.acc, req.params["id"])  # 404 before reading a big body
        condition = if_match(req.headers.get("If-Match")) if self.config.extensions else None
        if condition is not None:
            # answered before the body is read; checked again below, together with the write
            condition.check(req.params["id"], content_version(row))
        reader = self._multipart(req)
        content: NewContent | None = None
        properties: Any = None
        try:
            try:
                while (part := reader.next_part()) is not None:
                    if part.name == "content" and content is None:
                        content = self._content_part(part)
                    elif part.name == "metadata":
                        # tolerated (Duplicati sends it); only its properties count, with the extension
                        raw = part.read_all(MAX_METADATA_PART)
                        if self.config.extensions and content is None and properties is None:
                            properties = _parse_metadata(raw).get("properties")
                            if properties is not None and not isinstance(properties, dict):
                                raise bad_request("properties must map owner -> {key: value}")
                    else:
                        raise bad_request(f"unexpected multipart part {part.name!r}")
                reader.finish()
            except (MultipartError, BodyError) as e:
                raise bad_request(f"Cannot read from request: {e}") from None
            if content is None:
                raise bad_request("an overwrite needs a content part")
            node, old_blob = self.drive.overwrite(req.acc, req.params["id"], content, condition, properties)
        except BaseException:
            if content is not None:
                self.blobs.delete(content.blob)
            raise
        self.blobs.delete(old_blob)
        return json_response(node)

    def download(self, req: Request) -> AnyResponse:
        r = self.drive.file_row(req.acc, req.params["id"])
        size = int(r["size"] or 0)
        path = self.blobs.path(r["blob"]) if r["blob"] else None
        ctype = r["content_type"] or "application/octet-stream"
        if "viewBox" in req.query:
            self.stats.incr("thumbnail")
            if path is None:
                raise ApiError(404, "No thumbnail for an empty file", "NOT_FOUND")
            data, thumb_type = thumbnails.render(path, req.query["viewBox"])
            return Response(200, data, thumb_type)
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": f'"{r["md5"]}"',
            "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(r["modified"] / 1000)),
        }
        rng = req.headers.get("Range")
        start, length, status = 0, size, 200
        if rng is not None:
            parsed = parse_range(rng, size)
            if parsed is None:
                raise ApiError(
                    416,
                    f"Requested range not satisfiable: {rng}",
                    headers={"Content-Range": f"bytes */{size}"},
                )
            start, end = parsed
            length = end - start + 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if path is None:  # empty file: no blob
            return Response(status, b"", ctype, headers)
        self.stats.incr("download_bytes", length)
        return FileResponse(status, path, start, length, size, ctype, headers)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` -> inclusive (start, end), None if unsatisfiable.

    A syntactically bad header or several ranges -> 400 (multipart/byteranges is not offered).
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        raise ApiError(400, f"Invalid Range header: {header!r}")
    first, dash, last = spec.strip().partition("-")
    try:
        first, last = first.strip(), last.strip()
        if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
            raise ValueError
        if first == "":
            n = int(last)
            if n <= 0:
                return None
            return (max(0, size - n), size - 1) if size else None
        a = int(first)
        b = int(last) if last else max(a, size - 1)
        if a < 0 or b < a:
            raise ValueError
    except ValueError:
        raise ApiError(400, f"Invalid Range header: {header!r}") from None
    if a >= size:
        return None
    return a, min(b, size - 1)


def _wants_templink(req: Request) -> bool:
    return req.query.get("tempLink", "").lower() == "true"


def _positive(value: Any, name: str, default: int | None) -> int | None:
    if value is None:
        return default
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e999 parses as infinity
        raise bad_request(f"{name} must be a positive number") from None
    if n <= 0:
        raise bad_request(f"{name} must be a positive number")
    return n


def _parse_metadata(raw: bytes) -> dict[str, Any]:
    try:
        meta = strict_json(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"Malformed JSON in the metadata part: {e}") from None
    if not isinstance(meta, dict):
        raise bad_request("the metadata part must be a JSON object")
    return meta
