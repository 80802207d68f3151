"""Fixtures of the mount tests: real FUSE mounts (see mount_helpers.py), all unmounted in teardown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mount_helpers import Mount


@pytest.fixture
def mounts(tmp_path: Path, expect_errors: list[str]) -> Iterator[Any]:
    """Factory: ``mounts(cdir, name="m", cache="cache")`` -> a started-later Mount; all torn down."""
    made: list[Mount] = []

    def make(cdir: Path | None, name: str = "mnt", cache: str = "cache",
             env: dict[str, str] | None = None) -> Mount:
        m = Mount(tmp_path / name, cdir, tmp_path / cache, expect_errors, env)
        made.append(m)
        return m

    yield make
    failures = []
    for m in made:
        try:
            m.stop()
        except BaseException as exc:  # keep unmounting the others
            failures.append(str(exc))
    for m in made:
        try:
            m.check_log()
        except BaseException as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n".join(failures))


@pytest.fixture
def mount(mounts: Any, cdir: Path) -> Mount:
    """A mount of the test server's default account, not started yet (call .start())."""
    return mounts(cdir)
