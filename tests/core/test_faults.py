"""The test-only crash hook: armed loudly, on a devnet only, at registered points only."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from keeper.core import faults
from keeper.core.faults import ENV, POINTS, CrashHookRefusedError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _disarmed() -> Iterator[None]:
    faults.disarm()
    yield
    faults.disarm()


def _crash_point_names() -> list[tuple[str, object]]:
    """(file, argument) of every crash_point(...) call in keeper/."""
    calls = []
    for path in sorted((ROOT / "keeper").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "crash_point" and path.name != "faults.py":
                arg = node.args[0] if node.args else None
                value = arg.value if isinstance(arg, ast.Constant) else ast.dump(arg or node)
                calls.append((str(path.relative_to(ROOT)), value))
    return calls


def test_the_registry_is_exactly_the_points_the_code_uses() -> None:
    calls = _crash_point_names()
    assert calls, "no crash_point call found: the scan is broken"
    unregistered = [(f, v) for f, v in calls if v not in POINTS]
    assert unregistered == []  # literal names only, each registered
    assert {v for _, v in calls} == set(POINTS)  # and no registered name is dead


def test_arming_on_a_devnet_warns_and_names_the_point() -> None:
    with capture_logs() as logs:
        point = faults.arm({ENV: "proved"}, chain_id="SN_SEPOLIA", on_devnet=True)
    assert point == faults.armed() == "proved"
    (entry,) = logs
    assert (entry["event"], entry["log_level"], entry["point"]) == ("faults.armed", "warning",
                                                                     "proved")
    assert entry["chain_id"] == "SN_SEPOLIA"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_nothing_set_arms_nothing_silently(value: str | None) -> None:
    environ = {} if value is None else {ENV: value}
    with capture_logs() as logs:
        assert faults.arm(environ, chain_id="SN_MAIN", on_devnet=False) is None
    assert faults.armed() is None
    assert logs == []


@pytest.mark.parametrize(
    ("chain_id", "on_devnet"),
    [("SN_SEPOLIA", False), ("SN_MAIN", False), ("SN_MAIN", True)],
)
def test_a_real_chain_refuses_the_hook(chain_id: str, on_devnet: bool) -> None:
    faults.arm({ENV: "traced"}, chain_id="SN_SEPOLIA", on_devnet=True)  # armed before
    with pytest.raises(CrashHookRefusedError, match="not a starknet-devnet") as info:
        faults.arm({ENV: "traced"}, chain_id=chain_id, on_devnet=on_devnet)
    assert info.value.code == "crash_hook_refused"
    assert info.value.exit_code == 78
    assert faults.armed() is None  # a refusal leaves nothing armed


def test_an_unknown_point_is_refused() -> None:
    with pytest.raises(CrashHookRefusedError, match="'provd' is not a crash point"):
        faults.arm({ENV: "provd"}, chain_id="SN_SEPOLIA", on_devnet=True)
    assert faults.armed() is None


def test_crash_point_refuses_an_unregistered_name() -> None:
    with pytest.raises(ValueError, match="unknown crash point 'provd'"):
        faults.crash_point("provd")


_CHILD = """
import sys
from keeper.core import faults
faults.arm({"KEEPER_TEST_CRASH_AT": "proved"}, chain_id="SN_SEPOLIA", on_devnet=True)
faults.crash_point(sys.argv[1])
print("alive")
"""


@pytest.mark.parametrize(("point", "returncode"), [("traced", 0), ("proved", -9)])
def test_only_the_armed_point_kills_with_sigkill(point: str, returncode: int) -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, point],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == returncode, child.stderr
    assert ("alive" in child.stdout) == (returncode == 0)
