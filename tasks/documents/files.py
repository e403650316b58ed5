"""Atomic file writes: a reader (or a crash) never sees a half-written document."""

from __future__ import annotations

import contextlib
import os
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".~" + path.name[:40] + ".", suffix=".tmp")
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
