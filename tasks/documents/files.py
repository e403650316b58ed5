"""Atomic file writes: a reader (or a crash) never sees a half-written document."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_save(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call write(file) on a temporary file in the target folder, then rename it over path.

    Same folder, so os.replace is an atomic rename on one file system. The data is fsynced
    first: a rename that reaches the disk before the data would leave an empty file after a
    power cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = ".~" + path.name[:40] + "."
    _remove_orphans(path.parent, prefix)
    # The writer's pid in the name tells a later run which temporary files a crash left behind.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{prefix}{os.getpid()}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); documents are meant to be shared.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_PID = re.compile(r"\.(\d+)\.[^.]+\.tmp$")


def _remove_orphans(folder: Path, prefix: str) -> None:
    """Delete temporary files of this document whose writer process no longer exists (a crash)."""
    for tmp in folder.glob(prefix + "*.tmp"):
        match = _PID.search(tmp.name)
        if match is None or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
