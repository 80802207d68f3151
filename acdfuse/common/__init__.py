"""Helpers shared by the client and the server, which may import nothing from each other: file locks,
private directories, and the XDG base directories read once at the command line edge.

This package imports nothing else from acdfuse (checked by import-linter, see pyproject.toml).
"""
