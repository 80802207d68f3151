"""Request and response values passed between the HTTP handler and the endpoint functions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

from acdfuse.server.bodies import BodyReader, read_all
from acdfuse.server.errors import ApiError
from acdfuse.server.model import Account


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(raw: bytes | str) -> Any:
    """``json.loads`` without Python's extensions: NaN, Infinity and -Infinity are refused (RFC 8259
    has no such values, and a NaN or an infinite size would reach code that expects a number)."""
    return json.loads(raw, parse_constant=_no_constant)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: BodyReader
    content_length: int | None
    max_json: int
    params: dict[str, str] = field(default_factory=dict)
    account: Account | None = None

    @property
    def acc(self) -> Account:
        assert self.account is not None
        return self.account

    def read_body(self) -> bytes:
        if self.content_length is not None and self.content_length > self.max_json:
            raise ApiError(413, f"Request body larger than {self.max_json} bytes")
        try:
            return read_all(self.body, self.max_json)
        except OverflowError:
            raise ApiError(413, f"Request body larger than {self.max_json} bytes") from None

    def json(self, *, optional: bool = False) -> dict[str, Any]:
        raw = self.read_body()
        if not raw.strip():
            if optional:
                return {}
            raise ApiError(400, "Request body is empty; expected a JSON object")
        try:
            data = strict_json(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, f"Malformed JSON: {e}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Expected a JSON object")
        return data


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FileResponse:
    """A (ranged) blob download; sent with sendfile when no fault shapes the body."""

    status: int
    path: Path
    start: int
    length: int
    total: int
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamResponse:
    """A chunked body produced while it is sent (``changes``)."""

    status: int
    chunks: Iterator[bytes]
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


AnyResponse = Response | FileResponse | StreamResponse
