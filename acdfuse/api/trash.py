"""Node trashing and restoration.

https://developer.amazon.com/public/apis/experience/cloud-drive/content/trash
"""

from __future__ import annotations

from typing import Any

import requests

from ._base import ClientBase
from .common import OK_CODES


class TrashMixin(ClientBase):
    def list_trash(self) -> list:
        """Retrieves top-level trash list"""
        return self.BOReq.paginated_get(self.metadata_url + "trash", operation="list trash")

    def move_to_trash(self, node_id: str) -> dict:
        return self._json_call("PUT", "trash/" + node_id, "move to trash", node_id)

    def restore(self, node_id: str) -> dict:
        operation = "restore"
        url = self.metadata_url + "trash/" + node_id + "/restore"

        def send(backoff: Any) -> requests.Response:
            return self.BOReq.post(url, backoff=backoff, operation=operation, node=node_id)

        def confirm() -> dict | None:
            node = self.get_metadata(node_id, temp_link=False)
            return node if node.get("status") == "AVAILABLE" else None

        return self.BOReq.request_confirmed(send, OK_CODES, confirm, operation=operation, node=node_id)

    # Amazon refused this to third-party apps:
    # {"message":"Insufficient permissions granted for operation: purgeNode"}
    def purge(self, node_id: str) -> dict:
        """Deletes a node for good."""
        return self._json_call("DELETE", "nodes/" + node_id, "purge", node_id)
