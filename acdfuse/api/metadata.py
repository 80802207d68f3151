"""Node metadata operations: listing, lookup, update, parents, changes and properties."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import requests

from ._base import ClientBase
from .common import (
    OK_CODES,
    IncompleteResult,
    RequestError,
    error_from_response,
    invalid_answer,
    make_error,
    node_answer,
)

logger = logging.getLogger(__name__)


class Changes(NamedTuple):
    """One object of a changes stream: the nodes changed since the last checkpoint."""

    nodes: list[dict]  # changed nodes, including TRASH ones
    purged_nodes: list[str]  # ids of PURGED nodes (only with include_purged)
    checkpoint: str
    reset: bool  # True: drop everything known and rebuild from these sets


# the seed exports the tuple type "Changes" under this name
ChangeSet = Changes

# read size for the changes stream; lines are parsed one by one, never the whole stream at once
_CHANGES_READ_SIZE = 64 * 1024


def _change_set(obj: dict, number: int, operation: str) -> ChangeSet:
    """One change object as a ChangeSet; IncompleteResult when it lacks what the protocol promises
    (a string checkpoint, a list of node objects with ids). The node store checks the fields it keeps."""
    checkpoint = obj.get("checkpoint")
    if not isinstance(checkpoint, str) or not checkpoint:
        raise invalid_answer(operation, f"change set {number} has no checkpoint")
    entries = obj.get("nodes", [])
    if not isinstance(entries, list):
        raise invalid_answer(operation, f"change set {number}: nodes is not a list")
    nodes, purged = [], []
    for node in entries:
        node_answer(node, operation)
        if node.get("status") == "PURGED":
            purged.append(node["id"])
        else:
            nodes.append(node)
    if obj.get("reset"):
        logger.info('Found "reset" tag in changes.')
    return ChangeSet(nodes, purged, checkpoint, bool(obj.get("reset")))


class MetadataMixin(ClientBase):
    # --- listing -------------------------------------------------------------------------------

    def get_node_list(self, **params: Any) -> list:
        """All nodes matching ``params`` (``filters``, ``sort``, ``tempLink``...), all pages."""
        return self.BOReq.paginated_get(self.metadata_url + "nodes", params, operation="list nodes")

    def get_file_list(self) -> list:
        return self.get_node_list(filters="kind:FILE")

    def get_folder_list(self) -> list:
        return self.get_node_list(filters="kind:FOLDER")

    def get_asset_list(self) -> list:
        return self.get_node_list(filters="kind:ASSET")

    def get_trashed_folders(self) -> list:
        return self.get_node_list(filters="status:TRASH AND kind:FOLDER")

    def get_trashed_files(self) -> list:
        return self.get_node_list(filters="status:TRASH AND kind:FILE")

    # --- changes -------------------------------------------------------------------------------

    def get_changes(self, checkpoint: str = "", include_purged: bool = False) -> Iterator[ChangeSet]:
        """Generates a ChangeSet for each checkpoint in changes response. See
        https://developer.amazon.com/public/apis/experience/cloud-drive/content/changes.

        A cut stream is resumed from the last checkpoint handed out (the protocol repeats whatever
        follows it); when the retry budget is spent, ``RequestError(INCOMPLETE_RESULT)`` is raised.
        A stream is only complete when it ends with ``{"end": true}``.
        """
        backoff = self.BOReq.policy.start()
        resume_from = checkpoint
        while True:
            try:
                for changeset in self._changes_stream(resume_from, include_purged, backoff):
                    resume_from = changeset.checkpoint
                    yield changeset
                return
            except IncompleteResult as exc:
                delay = backoff.next_delay()
                if delay is None:
                    raise
                logger.warning("%s; resuming in %.1fs", exc.msg, delay)
                self.BOReq.sleep(delay)

    def _changes_stream(self, checkpoint: str, include_purged: bool, backoff: Any) -> Iterator[ChangeSet]:
        operation = "get changes"
        body: dict[str, str] = {}
        if checkpoint:
            body["checkpoint"] = checkpoint
        if include_purged:
            body["includePurged"] = "true"
        logger.info('Getting changes with checkpoint "%s".', checkpoint)
        r = self.BOReq.post(
            self.metadata_url + "changes",
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
            stream=True,
            idempotent=True,  # only reads
            backoff=backoff,
            operation=operation,
        )
        if r.status_code not in OK_CODES:
            raise error_from_response(r, operation)
        pages = 0
        ended = False
        try:
            for line in r.iter_lines(chunk_size=_CHANGES_READ_SIZE):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise make_error(
                        RequestError.CODE.INCOMPLETE_RESULT,
                        f"{operation}: invalid JSON in change set {pages} (stream cut?)",
                    ) from exc
                if not isinstance(obj, dict):
                    raise invalid_answer(operation, f"change set {pages} is not a JSON object")
                if obj.get("end"):
                    ended = True
                    continue
                if obj.get("statusCode", 200) not in OK_CODES:
                    raise RequestError(
                        RequestError.CODE.FAILED_SUBREQUEST,
                        f"{operation}: partial failure in change set {pages}, "
                        f"statusCode {obj.get('statusCode')}",
                    )
                pages += 1
                yield _change_set(obj, pages, operation)
        except requests.RequestException as exc:
            raise make_error(
                RequestError.CODE.INCOMPLETE_RESULT,
                f"{operation}: stream cut after {pages} change set(s): {exc}",
            ) from exc
        finally:
            r.close()
        if not ended:
            raise make_error(
                RequestError.CODE.INCOMPLETE_RESULT,
                f'{operation}: stream ended without {{"end": true}} after {pages} change set(s)',
            )
        logger.info("%i page(s) in changes.", pages)

    # --- single nodes --------------------------------------------------------------------------

    def get_metadata(self, node_id: str, assets: bool = False, temp_link: bool = True) -> dict:
        """Gets a node's metadata.

        :param assets: also include asset info (e.g. thumbnails) if the node is a file
        :param temp_link: include a temporary download link if the node is a file
        """
        params = {"tempLink": "true" if temp_link else "false", "asset": "ALL" if assets else "NONE"}
        return self._node_call("GET", "nodes/" + node_id, "get metadata", node_id, params=params)

    # this will increment the node's version attribute
    def update_metadata(self, node_id: str, properties: dict) -> dict:
        """Update a node's properties like name, description, status, parents, ..."""
        return self._node_call("PATCH", "nodes/" + node_id, "update metadata", node_id, body=properties)

    def get_root_node(self) -> dict:
        """The root folder's node dict."""
        answer = self._json_call("GET", "nodes", "get root node", params={"filters": "isRoot:true"}) or {}
        nodes = answer.get("data")
        if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
            raise invalid_answer("get root node", f"no list of nodes: {str(answer)[:200]}")
        roots = [node_answer(n, "get root node") for n in nodes if n.get("isRoot", True)]
        if not roots:
            raise make_error(404, "get root node: the server listed no root folder")
        return roots[0]

    def get_root_id(self) -> str:
        """Gets the ID of the root node

        :returns: the topmost folder id
        """
        return self.get_root_node()["id"]

    def list_children(self, node_id: str) -> list:
        return self.BOReq.paginated_get(
            self.metadata_url + "nodes/" + node_id + "/children", operation="list children", node=node_id
        )

    # --- parents -------------------------------------------------------------------------------

    def add_child(self, parent_id: str, child_id: str) -> dict:
        """Adds node with ID *child_id* to folder with ID *parent_id*.

        :returns: updated child node dict
        """
        path = f"nodes/{parent_id}/children/{child_id}"
        return self._node_call("PUT", path, f"add child to {parent_id}", child_id)

    def remove_child(self, parent_id: str, child_id: str) -> dict:
        """:returns: updated child node dict"""

        # a repeat after a lost reply would answer 404, so it is confirmed instead
        def confirm() -> dict | None:
            node = self.get_metadata(child_id, temp_link=False)
            return node if parent_id not in node.get("parents", []) else None

        # Amazon documented 202 but answered 200
        return self._confirmed_call(
            "DELETE", f"nodes/{parent_id}/children/{child_id}", f"remove child from {parent_id}", child_id,
            confirm, ok_codes=(200, 202),
        )

    def move_node_from(self, node_id: str, old_parent_id: str, new_parent_id: str) -> dict:
        """Moves node with given ID from old parent to new parent.

        :returns: changed node dict
        """
        def confirm() -> dict | None:
            node = self.get_metadata(node_id, temp_link=False)
            parents = node.get("parents", [])
            return node if new_parent_id in parents and old_parent_id not in parents else None

        return self._confirmed_call(
            "POST", f"nodes/{new_parent_id}/children", f"move from {old_parent_id} to {new_parent_id}",
            node_id, confirm, body={"fromParent": old_parent_id, "childId": node_id},
        )

    def move_node(self, node_id: str, parent_id: str) -> dict:
        return self.update_metadata(node_id, {"parents": [parent_id]})

    def rename_node(self, node_id: str, new_name: str) -> dict:
        return self.update_metadata(node_id, {"name": new_name})

    def set_available(self, node_id: str) -> dict:
        """Sets node status from 'PENDING' to 'AVAILABLE'."""
        return self.update_metadata(node_id, {"status": "AVAILABLE"})

    # --- properties ----------------------------------------------------------------------------

    def get_owner_id(self) -> str:
        """Provisional function for retrieving the security profile's name, a.k.a. owner id.

        Creates a small probe file (the owner is its ``createdBy``) and trashes it again.
        """
        node = self.create_file(f"acdfuse_get_owner_id_{uuid.uuid4().hex[:12]}")
        self.move_to_trash(node["id"])
        return node["createdBy"]

    def list_properties(self, node_id: str, owner_id: str) -> dict:
        """This will always return an empty dict if the accessor is not the owner.

        :param owner_id: owner ID (return status 404 if empty)
        """
        operation = "list properties"
        answer = self._json_call("GET", f"nodes/{node_id}/properties/{owner_id}", operation, node_id)
        data = answer.get("data", {}) if answer else {}
        if not isinstance(data, dict):
            raise invalid_answer(operation, f"properties are not an object: {str(data)[:200]}", node_id)
        return data

    def add_property(self, node_id: str, owner_id: str, key: str, value: str) -> dict:
        """Adds or overwrites *key* property with content. Maximum number of keys per owner is 10.

        :param value: string of length <= 500
        :raises: RequestError: 404, <UnknownOperationException/> if owner is empty
                 RequestError: 400, {...} if maximum of allowed properties is reached
        :returns dict: {'key': '<KEY>', 'location': '<NODE_ADDRESS>/properties/<OWNER_ID/<KEY>',
            'value': '<VALUE>'}
        """
        return self._json_call(
            "PUT",
            f"nodes/{node_id}/properties/{owner_id}/{key}",
            f"add property {key!r}",
            node_id,
            body={"value": value},
            ok_codes=(201, 200),
        )

    def delete_property(self, node_id: str, owner_id: str, key: str) -> None:
        """Deletes *key* property from node with ID *node_id*."""
        def confirm() -> dict | None:
            return {} if key not in self.list_properties(node_id, owner_id) else None

        self._confirmed_call(
            "DELETE", f"nodes/{node_id}/properties/{owner_id}/{key}", f"delete property {key!r}", node_id,
            confirm, ok_codes=(204, 200), parse=lambda r: {},
        )

    def delete_properties(self, node_id: str, owner_id: str) -> None:
        """Deletes all of the owner's properties. Uses multiple requests."""
        for key in self.list_properties(node_id, owner_id):
            self.delete_property(node_id, owner_id, key)
