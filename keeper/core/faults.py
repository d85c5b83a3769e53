"""A test-only crash hook: ``KEEPER_TEST_CRASH_AT=<point>`` kills the process at that point.

The crash-safety tests SIGKILL the keeper at each state boundary and restart it. The
hook is armed only through ``arm()`` (the daemon passes its environment at start), never
by default; an armed point kills with SIGKILL so no cleanup, ``finally`` or shutdown path
runs — exactly what a power cut or the OOM killer would do.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

ENV = "KEEPER_TEST_CRASH_AT"
_armed: str | None = None


def arm(environ: Mapping[str, str]) -> None:
    global _armed
    _armed = environ.get(ENV) or None


def crash_point(name: str) -> None:
    if _armed is not None and _armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
