"""Node trashing and restoration.

https://developer.amazon.com/public/apis/experience/cloud-drive/content/trash
"""

from __future__ import annotations

from ._base import ClientBase


class TrashMixin(ClientBase):
    def list_trash(self) -> list:
        """Retrieves top-level trash list"""
        return self.BOReq.paginated_get(self.metadata_url + "trash", operation="list trash")

    def move_to_trash(self, node_id: str) -> dict:
        return self._node_call("PUT", "trash/" + node_id, "move to trash", node_id)

    def restore(self, node_id: str) -> dict:
        def confirm() -> dict | None:
            node = self.get_metadata(node_id, temp_link=False)
            return node if node.get("status") == "AVAILABLE" else None

        return self._confirmed_call("POST", f"trash/{node_id}/restore", "restore", node_id, confirm)

    # Amazon refused this to third-party apps:
    # {"message":"Insufficient permissions granted for operation: purgeNode"}
    def purge(self, node_id: str) -> dict:
        """Deletes a node for good."""
        return self._json_call("DELETE", "nodes/" + node_id, "purge", node_id)
