"""The systemd unit: it parses, names the real entry point and carries every required directive."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from keeper.core.config import SECRET_NAMES
from keeper.core.errors import EX_CONFIG

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "obsqra-keeper.service"
INSTALL_PREFIX = "/opt/obsqra-keeper/.venv/bin/"

Unit = dict[str, list[tuple[str, str]]]


def parse_unit(text: str) -> Unit:
    """A systemd unit parser: sections, repeated keys kept in order, '\\' continuations."""
    sections: Unit = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=value line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= appears {len(found)} times, expected once"
    return found[0]


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def test_parser_keeps_repeated_keys_and_continuations() -> None:
    parsed = parse_unit("[S]\n# c\nA=1\nA=2\nB=x \\\n  y\n")
    assert parsed == {"S": [("A", "1"), ("A", "2"), ("B", "x y")]}


def test_execstart_runs_the_console_script(unit: Unit) -> None:
    argv = one(unit, "Service", "ExecStart").split()
    assert argv[0] == INSTALL_PREFIX + "obsqra-keeper"
    assert argv[1] == "run"
    assert argv[argv.index("--config") + 1] == "/etc/obsqra-keeper/keeper.toml"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["obsqra-keeper"] == "keeper.cli.main:run"


def test_the_cli_accepts_the_units_command_line(unit: Unit) -> None:
    from keeper.cli.main import build_parser

    argv = one(unit, "Service", "ExecStart").split()[1:]
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    if "run" not in commands:
        pytest.skip("`obsqra-keeper run` is not registered yet (the daemon loop is the lead's)")
    args = parser.parse_args(argv)
    assert args.command == "run"
    assert str(args.config) == "/etc/obsqra-keeper/keeper.toml"
    assert callable(args.handler)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", str(EX_CONFIG)),
        ("DynamicUser", "yes"),
        ("StateDirectory", "obsqra-keeper"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "false"),
        ("KillMode", "mixed"),
        ("OOMPolicy", "continue"),
    ],
)
def test_required_directive(unit: Unit, key: str, expected: str) -> None:
    assert one(unit, "Service", key) == expected


def test_watchdog_and_timeouts_are_set(unit: Unit) -> None:
    watchdog = int(one(unit, "Service", "WatchdogSec"))
    assert watchdog > 0
    assert int(one(unit, "Service", "TimeoutStopSec")) > 0
    assert int(one(unit, "Service", "TimeoutStartSec")) > 0


def test_memory_max_leaves_room_above_the_default_stone_limit(unit: Unit) -> None:
    from keeper.core.config import ProverConfig

    memory_max = one(unit, "Service", "MemoryMax")
    assert memory_max.endswith("G")
    stone_mb = ProverConfig().memory_limit_mb
    assert int(memory_max[:-1]) * 1024 >= stone_mb + 1024


def test_memory_deny_write_execute_is_explained(unit: Unit) -> None:
    text = UNIT.read_text(encoding="utf-8")
    before = text.split("MemoryDenyWriteExecute=false", 1)[0].rstrip().splitlines()
    assert before[-1].startswith("#"), "the line above MemoryDenyWriteExecute must say why"


def test_credentials_use_the_keepers_secret_names(unit: Unit) -> None:
    loaded = values(unit, "Service", "LoadCredentialEncrypted")
    names = {entry.split(":", 1)[0] for entry in loaded}
    assert {"keystore_password", "atlantic_api_key"} <= names
    assert names <= set(SECRET_NAMES)
    for entry in loaded:
        source = entry.partition(":")[2]
        assert source.startswith("/etc/credstore.encrypted/"), entry


def test_environment_holds_no_secret(unit: Unit) -> None:
    for assignment in values(unit, "Service", "Environment"):
        key = assignment.split("=", 1)[0].lower()
        assert not any(name in key for name in SECRET_NAMES), assignment
        assert not any(word in key for word in ("password", "key", "secret", "token")), assignment


def test_unit_is_enabled_for_boot(unit: Unit) -> None:
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in values(unit, "Unit", "After")


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip(
            "systemd-analyze is not installed: the unit is only checked by the parser above"
        )
    # verify insists that ExecStart exists: point it at this checkout's console script.
    script = ROOT / ".venv" / "bin" / "obsqra-keeper"
    if not script.exists():
        pytest.skip(f"{script} missing (run `make setup`); cannot verify the unit")
    text = UNIT.read_text(encoding="utf-8").replace(INSTALL_PREFIX + "obsqra-keeper", str(script))
    copy = tmp_path / UNIT.name
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown or misspelled directives are only warnings ("…, ignoring."): fail on them too.
    assert "ignoring" not in output.lower(), output
    assert "unknown" not in output.lower(), output
