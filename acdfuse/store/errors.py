"""Errors raised by the node store (``acdfuse.store``)."""

from __future__ import annotations


class StoreError(Exception):
    """The node mirror cannot do what was asked (bad input, unusable database, ...)."""


class SchemaTooNew(StoreError):
    """The database was written by a newer acdfuse; it is refused and left untouched."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        super().__init__(
            f"node mirror {path} has schema version {found}, but this acdfuse only knows versions "
            f"up to {supported}; upgrade acdfuse or point it at another cache directory "
            f"(the file was not modified)"
        )
        self.path = path
        self.found = found
        self.supported = supported


class SyncError(StoreError):
    """A sync failed midway; the mirror and its checkpoint are as they were before it started."""


class MalformedChange(StoreError, ValueError):
    """The changes stream handed over something the mirror cannot take (a node without an id, a change
    set without a checkpoint): the server's data is at fault, not this code. A ValueError as well, as
    these were before they had a class of their own."""
