"""The one exception type handlers raise; the HTTP layer turns it into Amazon's error envelope.

Envelope: ``{"logref": "<uuid>", "message": "...", "code": "<CODE or empty>", "info": {...}}``.
Some Amazon errors had only ``message`` (e.g. 401 "Token has expired", 429 "Rate exceeded"); those are
raised with ``bare=True``. ``raw`` carries a non-JSON body (the XML 404 of properties with an empty owner).
"""

from __future__ import annotations

import uuid
from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str = "",
        info: dict[str, Any] | None = None,
        *,
        bare: bool = False,
        headers: dict[str, str] | None = None,
        raw: tuple[str, bytes] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.code = code
        self.info = info
        self.bare = bare
        self.headers = headers or {}
        self.raw = raw

    def body(self) -> dict[str, Any]:
        if self.bare:
            return {"message": self.message}
        out: dict[str, Any] = {"logref": str(uuid.uuid4()), "message": self.message, "code": self.code}
        if self.info is not None:
            out["info"] = self.info
        return out

    @property
    def error_type(self) -> str:
        # x-amzn-ErrorType header value; only informative
        return self.code or {
            400: "ValidationException",
            401: "UnauthorizedException",
            403: "AccessDeniedException",
            404: "ResourceNotFoundException",
            409: "ConflictException",
            412: "PreconditionFailedException",
            413: "PayloadTooLargeException",
            416: "RangeNotSatisfiableException",
            429: "ThrottlingException",
        }.get(self.status, "InternalFailure")


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str = "Node does not exist") -> ApiError:
    return ApiError(404, message, "NOT_FOUND")
