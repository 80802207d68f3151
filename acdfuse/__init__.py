"""acdfuse: mount a Cloud Drive as a local directory, and serve one."""

__version__ = "0.1.0"
