"""The command line: help for every subcommand, one-line errors with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from keeper.cli.main import build_parser, main


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("config", "trace", "fact-hash", "fri-params", "prove"):
        assert name in out


@pytest.mark.parametrize("name", _subcommands())
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert "usage: obsqra-keeper" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["no-such-command"], ["config", "check", "--bogus"], ["fri-params", "--n-steps", "many"], []],
)
def test_bad_arguments_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "error:" in err


def test_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "keeper", "config", "check", "--config", "/nonexistent.toml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 78
    assert "cannot read config file /nonexistent.toml" in result.stderr
    assert "Traceback" not in result.stderr
