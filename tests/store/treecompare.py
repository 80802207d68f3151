"""Walk the server's tree through the API and the mirror's tree, in the same shape, to compare."""

from __future__ import annotations

from typing import Any

from acdfuse.store import NodeStore

Entry = tuple[str, str, str, int, "str | None"]  # (path, id, kind, size, md5)


def server_tree(client: Any) -> list[Entry]:
    """Every AVAILABLE path from the root via list_children; a folder that is its own ancestor
    is listed but not entered again (cycles end), a multi-parent folder appears under each parent."""
    root = client.get_root_id()
    out: list[Entry] = [("/", root, "FOLDER", 0, None)]
    stack: list[tuple[str, str, frozenset[str]]] = [("", root, frozenset())]
    while stack:
        path, folder_id, ancestors = stack.pop()
        if folder_id in ancestors:
            continue
        inner = ancestors | {folder_id}
        for child in client.list_children(folder_id):
            if child.get("status") != "AVAILABLE" or not child.get("name"):
                continue
            cp = child.get("contentProperties") or {}
            cpath = f"{path}/{child['name']}"
            out.append((cpath, child["id"], child["kind"], int(cp.get("size") or 0), cp.get("md5")))
            if child["kind"] == "FOLDER":
                stack.append((cpath, child["id"], inner))
    return sorted(out)


def mirror_tree(store: NodeStore) -> list[Entry]:
    return sorted((path, n.id, n.kind, n.size, n.md5) for path, n in store.walk("/"))


def assert_same_tree(store: NodeStore, client: Any) -> list[Entry]:
    expected = server_tree(client)
    actual = mirror_tree(store)
    if actual != expected:
        missing = sorted(set(expected) - set(actual))[:10]
        extra = sorted(set(actual) - set(expected))[:10]
        raise AssertionError(f"mirror differs from server\nmissing: {missing}\nextra: {extra}")
    # and every path resolves to the same node
    for path, node_id, *_ in expected:
        node = store.resolve(path)
        assert node is not None and node.id == node_id, path
    return expected
