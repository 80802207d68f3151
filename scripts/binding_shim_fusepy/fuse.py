"""A ``fuse`` module over the real fusepy with issue 13's experiment switches (benchmarks only).

Put this directory first on PYTHONPATH; it loads fusepy from site-packages under another name.
ACDFUSE_SHIM_NO_DIR_OPS=1 hides opendir/releasedir from fusepy, so libfuse opens folders itself and
a folder costs one Python call (readdir) instead of three.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

_path = Path(sysconfig.get_paths()["purelib"]) / "fuse.py"
_spec = importlib.util.spec_from_file_location("_real_fusepy", _path)
assert _spec is not None and _spec.loader is not None
_real = importlib.util.module_from_spec(_spec)
sys.modules["_real_fusepy"] = _real
_spec.loader.exec_module(_real)

FuseOSError = _real.FuseOSError
Operations = _real.Operations
fuse_get_context = _real.fuse_get_context
_libfuse = _real._libfuse
NO_DIR_OPS = os.environ.get("ACDFUSE_SHIM_NO_DIR_OPS") == "1"


class HideDirOps:
    def __init__(self, operations: Any) -> None:
        self._operations = operations

    def __getattr__(self, name: str) -> Any:
        if name in ("opendir", "releasedir"):
            raise AttributeError(name)
        return getattr(self._operations, name)

    def __call__(self, op: str, *args: Any) -> Any:
        return self._operations(op, *args)


class FUSE(_real.FUSE):
    def __init__(self, operations: Any, mountpoint: str, **kwargs: Any) -> None:
        if NO_DIR_OPS:
            operations = HideDirOps(operations)
        super().__init__(operations, mountpoint, **kwargs)
