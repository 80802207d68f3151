"""ACD account information: status, quota and usage per category."""

from __future__ import annotations

import logging
from typing import Any

from ._base import ClientBase
from .common import OK_CODES, error_from_response, invalid_answer, json_object

logger = logging.getLogger(__name__)

# usage categories in the order they are printed, with their JSON keys
_CATEGORIES = (("Documents", "doc"), ("Other", "other"), ("Photos", "photo"), ("Videos", "video"))


def _human_size(num: float) -> tuple[str, str]:
    """(number, unit) with binary prefixes, e.g. ("1.5", "MiB")."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"):
        if abs(num) < 1024.0:
            return f"{num:3.1f}", unit
        num /= 1024.0
    return f"{num:.1f}", "YiB"


class _Usage:
    """Account usage; ``str()`` gives a printable summary with one line per category and a total."""

    def __init__(self, dict_: dict[str, Any]) -> None:
        self.dict_ = dict_

    @staticmethod
    def format_line(type_: str, count: int, size: tuple[str, str]) -> str:
        return f"{type_ + ':':10} {count:7}, {size[0]:>6} {size[1]:3}\n"

    def __str__(self) -> str:
        lines = []
        total_count = total_bytes = 0
        for label, key in _CATEGORIES:
            category = self.dict_.get(key)
            usage = category.get("total") if isinstance(category, dict) else None
            if not isinstance(usage, dict):
                usage = {}
            try:
                count, size = int(usage.get("count", 0)), int(usage.get("bytes", 0))
            except (TypeError, ValueError):
                count, size = 0, 0  # a summary for people: an odd category is shown as empty
            total_count += count
            total_bytes += size
            lines.append(self.format_line(label, count, _human_size(size)))
        lines.append(self.format_line("Total", total_count, _human_size(total_bytes)))
        return "".join(lines)

    def __repr__(self) -> str:
        return f"_Usage({self.dict_!r})"


class AccountMixin(ClientBase):
    def get_account_info(self) -> dict:
        """Gets account status [ACTIVE, ...?] and terms of use version."""
        r = self.BOReq.get(self.metadata_url + "account/info", operation="account info")
        if r.status_code not in OK_CODES:
            raise error_from_response(r, "account info")
        return json_object(r, "account info")

    def get_account_usage(self) -> _Usage:
        """Bytes and counts per category; ``str()`` of the result is a printable summary."""
        r = self.BOReq.get(self.metadata_url + "account/usage", operation="account usage")
        if r.status_code not in OK_CODES:
            raise error_from_response(r, "account usage")
        return _Usage(json_object(r, "account usage"))

    def get_quota(self) -> dict:
        r = self.BOReq.get(self.metadata_url + "account/quota", operation="account quota")
        if r.status_code not in OK_CODES:
            raise error_from_response(r, "account quota")
        return json_object(r, "account quota")

    def fs_sizes(self) -> tuple[int, int]:
        """:returns tuple: total and free space"""
        q = self.get_quota()
        try:
            return int(q.get("quota", 0)), int(q.get("available", 0))
        except (TypeError, ValueError):
            raise invalid_answer("account quota", f"sizes are not numbers: {str(q)[:200]}") from None
