"""Fault injection for the crash tests: STYRKEDJA_FAULT=<point> kills the process right there.

SIGKILL, not an exception: nothing gets to clean up, exactly like a power cut or an OOM kill.
The points are named where they are placed; unset, this costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    if os.environ.get("STYRKEDJA_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
