"""A test-only crash hook: ``KEEPER_TEST_CRASH_AT=<point>`` kills the process at that point.

The crash-safety tests SIGKILL the keeper at each state boundary and restart it. An armed
point kills with SIGKILL so no cleanup, ``finally`` or shutdown path runs — exactly what
a power cut or the OOM killer would do.

A hook that kills a keeper with real money behind it must never be on by accident, so it
is armed only through ``arm()``, which the daemon calls once it knows its chain:

- only a registered point name (``POINTS``, the names the code passes to
  ``crash_point``) is accepted, and ``crash_point`` refuses any other name too;
- only against a starknet-devnet: the caller passes ``on_devnet`` (keeper/devnet knows
  how to tell; core cannot import it), and SN_MAIN is refused whatever is claimed;
- it says so: arming logs a warning naming the point.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from keeper.core.errors import EX_CONFIG, KeeperError
from keeper.core.logs import get_logger

ENV = "KEEPER_TEST_CRASH_AT"
MAINNET = "SN_MAIN"

# Every crash point in keeper/, in the order a job passes them. A new crash_point(...)
# call needs its name here (tests/core/test_faults.py reads the source to check).
POINTS: tuple[str, ...] = (
    "traced",
    "proved",
    "fact_registered",
    "submitted_before_broadcast",
    "submitted",
    "confirmed",
    "registration_before_broadcast",
    "registration_sent",
    "registration_confirmed",
)

_log = get_logger("keeper.core.faults")
_armed: str | None = None
_armed_hit = 1  # kill at this occurrence of the armed point (``point#N``)
_hits = 0


class CrashHookRefusedError(KeeperError):
    """KEEPER_TEST_CRASH_AT is set where it must not be (or names no crash point)."""

    code = "crash_hook_refused"
    exit_code = EX_CONFIG


def arm(environ: Mapping[str, str], *, chain_id: str, on_devnet: bool) -> str | None:
    """Arm the point ``environ[ENV]`` names, if any; return it.

    ``chain_id``: the chain's name as the node reports it (e.g. SN_SEPOLIA).
    ``on_devnet``: the node is a starknet-devnet (its chain id alone cannot tell: devnet
    answers SN_SEPOLIA by default). Raises CrashHookRefusedError for an unknown point or a
    chain that is not a devnet, rather than run a keeper carrying a kill switch."""
    global _armed, _armed_hit, _hits
    _armed = None
    spec = (environ.get(ENV) or "").strip()
    if not spec:
        return None
    point, _, nth = spec.partition("#")
    if nth and not (nth.isdigit() and int(nth) >= 1):
        raise CrashHookRefusedError(
            f"{ENV}={spec!r}: the occurrence after '#' must be a whole number >= 1"
        )
    if point not in POINTS:
        raise CrashHookRefusedError(
            f"{ENV}={point!r} is not a crash point (known: {', '.join(POINTS)}); it is a "
            "test-only hook: unset it"
        )
    if chain_id == MAINNET or not on_devnet:
        raise CrashHookRefusedError(
            f"{ENV} is set but the chain ({chain_id}) is not a starknet-devnet: this "
            "test-only hook kills the keeper and is never armed on a real chain; unset it"
        )
    _armed, _armed_hit, _hits = point, int(nth or 1), 0
    _log.warning(
        "faults.armed",
        point=point,
        chain_id=chain_id,
        occurrence=_armed_hit,
        note=f"test-only: the keeper will SIGKILL itself at {spec!r}",
    )
    return point


def disarm() -> None:
    global _armed
    _armed = None


def armed() -> str | None:
    return _armed


def crash_point(name: str) -> None:
    global _hits
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}: register it in keeper.core.faults.POINTS")
    if _armed == name:
        _hits += 1
        if _hits == _armed_hit:
            os.kill(os.getpid(), signal.SIGKILL)
