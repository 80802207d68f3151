"""What the four mixins of ``ACDClient`` share: the request object, endpoint URLs and JSON calls."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import requests

from .backoff_req import BackOffRequest
from .common import OK_CODES, error_from_response, json_object, node_answer

# characters with a meaning in the filter language (acd-api.md 6.7); escaped with a backslash
_FILTER_SPECIAL = set("+-&|!(){}[]^'\"~*?:\\ ")


def escape_filter(value: str) -> str:
    """Quote ``value`` for use in a ``filters=`` term such as ``name:<value>``."""
    return "".join("\\" + c if c in _FILTER_SPECIAL else c for c in value)


class ClientBase:
    """Attributes ``ACDClient`` provides to its mixins, and the JSON request helper."""

    BOReq: BackOffRequest

    if TYPE_CHECKING:  # provided by ACDClient and the sibling mixins

        @property
        def metadata_url(self) -> str: ...

        @property
        def content_url(self) -> str: ...

        @property
        def conditional_overwrite(self) -> bool: ...

        @property
        def properties_with_content(self) -> bool: ...

        def get_metadata(self, node_id: str, assets: bool = False, temp_link: bool = True) -> dict: ...

        def list_children(self, node_id: str) -> list: ...

        def get_root_id(self) -> str: ...

        def create_file(self, file_name: str, parent: str | None = None) -> dict: ...

        def move_to_trash(self, node_id: str) -> dict: ...

    def _json_call(
        self,
        method: str,
        path: str,
        operation: str,
        node: str | None = None,
        *,
        body: dict | None = None,
        ok_codes: Iterable[int] = OK_CODES,
        params: dict | None = None,
    ) -> Any:
        """An idempotent metadata request; returns the decoded answer, a JSON object (None for an empty
        answer); an answer that is not one raises IncompleteResult."""
        ok = list(ok_codes)
        kwargs: dict[str, Any] = {"params": params} if params else {}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        r = self.BOReq.request(method, self.metadata_url + path, ok, operation=operation, node=node, **kwargs)
        if r.status_code not in ok:
            raise error_from_response(r, operation, node)
        return json_object(r, operation, node) if r.content else None

    def _node_call(self, method: str, path: str, operation: str, node: str | None = None,
                   **kwargs: Any) -> dict:
        """A :meth:`_json_call` whose answer is a node (an object with an id)."""
        return node_answer(self._json_call(method, path, operation, node, **kwargs), operation, node)

    def _confirmed_call(
        self,
        method: str,
        path: str,
        operation: str,
        node: str | None,
        confirm: Callable[[], dict | None],
        *,
        body: dict | None = None,
        ok_codes: Iterable[int] = OK_CODES,
        parse: Callable[[requests.Response], dict] | None = None,
    ) -> dict:
        """A metadata request that must not be repeated blindly (a repeat after a lost reply would
        fail or act twice): after an unsure failure ``confirm()`` checks whether it took effect."""
        ok = list(ok_codes)
        url = self.metadata_url + path
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}

        def send(backoff: Any) -> requests.Response:
            return self.BOReq.request(
                method, url, ok, idempotent=False, backoff=backoff, operation=operation, node=node, **kwargs
            )

        def parse_node(r: requests.Response) -> dict:
            return node_answer(json_object(r, operation, node), operation, node)

        return self.BOReq.request_confirmed(
            send, ok, confirm, operation=operation, node=node, parse=parse or parse_node
        )

    def _find_child(self, parent: str | None, name: str) -> dict | None:
        """The AVAILABLE child of ``parent`` (root if None) called ``name`` (case-insensitive), if any."""
        parent = parent or self.get_root_id()
        nodes = self.BOReq.paginated_get(
            self.metadata_url + f"nodes/{parent}/children",
            {"filters": f"name:{escape_filter(name)}"},
            operation="look up child",
            node=parent,
        )
        wanted = name.lower()
        for node in nodes:
            available = node.get("status", "AVAILABLE") == "AVAILABLE"
            if str(node.get("name") or "").lower() == wanted and available:
                if parent in node.get("parents", []):
                    return node
        return None
