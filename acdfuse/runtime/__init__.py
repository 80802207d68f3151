"""Process lifecycle of a mount: settings and paths, daemonizing, the bundled server's lifecycle, locks,
pid files, the first-sync notice, the sync loop's thread and signal, and logging.

Used only by the composition root (``acdfuse.mount``) and the command line (``acdfuse.cli_mount``);
nothing below them imports it (checked by import-linter, see pyproject.toml).
"""
