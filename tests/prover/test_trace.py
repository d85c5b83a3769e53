"""Trace generation (prover.trace) and the `obsqra-keeper trace` command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from keeper.cli.main import main
from prover.errors import InfeasibleAllocation, InputError
from prover.model import AllocationInputs, ProtocolInputs, expected_output, load_inputs
from prover.program import compiled_program
from prover.trace import TraceResult, generate_trace

ROOT = Path(__file__).resolve().parents[2]
DEVNET = ROOT / "config" / "devnet_inputs.json"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def devnet_trace(tmp_path_factory: pytest.TempPathFactory) -> TraceResult:
    return generate_trace(load_inputs(DEVNET), tmp_path_factory.mktemp("trace") / "devnet")


def test_devnet_trace_fits_4096_steps_on_small(devnet_trace: TraceResult) -> None:
    assert devnet_trace.layout == "small"
    assert devnet_trace.n_steps == 4096
    assert devnet_trace.steps <= devnet_trace.n_steps
    assert devnet_trace.output == expected_output(load_inputs(DEVNET))


def test_trace_dir_holds_what_stone_reads(devnet_trace: TraceResult) -> None:
    d = devnet_trace.dir
    public = json.loads((d / "public_input.json").read_text())
    assert public["layout"] == "small"
    assert public["n_steps"] == 4096
    assert public["memory_segments"]["program"] == {"begin_addr": 1, "stop_ptr": 5}
    assert set(public["memory_segments"]) >= {"output", "pedersen", "range_check", "ecdsa"}
    output = public["memory_segments"]["output"]
    values = {e["address"]: int(e["value"], 16) for e in public["public_memory"]}
    published = [values[a] for a in range(output["begin_addr"], output["stop_ptr"])]
    assert published == devnet_trace.output
    private = json.loads((d / "private_input.json").read_text())
    # Relative to the trace dir: Stone must run with cwd = the trace dir.
    assert private["trace_path"] == "trace.bin"
    assert private["memory_path"] == "memory.bin"
    assert len(private["pedersen"]) == 1 + 6 * 3 + 12 + 1
    assert (d / "trace.bin").stat().st_size == 3 * 8 * 4096  # (ap, fp, pc) u64 per step
    assert (d / "memory.bin").stat().st_size > 0
    assert json.loads((d / "program.json").read_text()) == compiled_program()
    assert json.loads((d / "program_input.json").read_text()) == load_inputs(DEVNET).program_input()
    assert load_inputs(d / "inputs.json") == load_inputs(DEVNET)
    summary = json.loads((d / "trace.json").read_text())
    assert summary["n_steps"] == 4096
    assert summary["output"] == devnet_trace.output
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]


def test_repeated_traces_in_one_process_are_identical(
    devnet_trace: TraceResult, tmp_path: Path
) -> None:
    (tmp_path / "keep.txt").write_text("operator notes")
    again = generate_trace(load_inputs(DEVNET), tmp_path)
    assert again.output == devnet_trace.output
    assert again.n_steps == devnet_trace.n_steps
    for name in ("trace.bin", "memory.bin", "public_input.json", "private_input.json"):
        assert (tmp_path / name).read_bytes() == (devnet_trace.dir / name).read_bytes(), name
    assert (tmp_path / "keep.txt").read_text() == "operator notes"


def test_other_inputs_in_the_same_process(tmp_path: Path) -> None:
    inputs = dataclasses.replace(load_inputs(DEVNET), epoch=2, max_single_bps=10000)
    result = generate_trace(inputs, tmp_path / "t")
    assert result.output == expected_output(inputs)


def test_infeasible_inputs_fail_before_any_file(tmp_path: Path) -> None:
    safe = ProtocolInputs(0, 0, 0, 100, 1000, 500)
    inputs = AllocationInputs(0x1, 1, (safe, safe, safe), max_single_bps=3000)
    with pytest.raises(InfeasibleAllocation, match="max_single_bps = 3000"):
        generate_trace(inputs, tmp_path / "t")
    assert list(tmp_path.iterdir()) == []


def test_unknown_layout_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown layout 'tiny'"):
        generate_trace(load_inputs(DEVNET), tmp_path, layout="tiny")


def test_output_path_that_is_a_file_is_bad_input(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        generate_trace(load_inputs(DEVNET), target)


# --- CLI ---------------------------------------------------------------------------------


def test_cli_trace_prints_one_json_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["trace", "--inputs", str(DEVNET), "--out", str(tmp_path / "t")])
    captured = capsys.readouterr()
    assert code == 0
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert set(line) == {"layout", "n_steps", "steps", "output", "seconds"}
    assert line["layout"] == "small"
    assert line["n_steps"] <= 4096
    assert [int(v, 16) for v in line["output"]] == expected_output(load_inputs(DEVNET))
    assert (tmp_path / "t" / "trace.json").exists()


def test_cli_stdout_stays_one_line_when_padding_needs_more_rounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One protocol runs ~1,100 steps: 2,048 cannot fill the range-check hole, so the
    # runner pads again to 4,096 and cairo-lang prints a warning, which must not reach stdout.
    data = _devnet()
    data["protocols"] = data["protocols"][:1]
    data["max_single_bps"] = 10000
    data["min_diversification"] = 1
    inputs = tmp_path / "one.json"
    inputs.write_text(json.dumps(data))
    assert main(["trace", "--inputs", str(inputs), "--out", str(tmp_path / "t")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["steps"] <= 2048
    assert line["n_steps"] == 4096


def _devnet() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEVNET.read_text())
    return data


def _without_epoch() -> dict[str, Any]:
    data = _devnet()
    del data["epoch"]
    return data


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = _devnet()
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def _seventeen() -> dict[str, Any]:
    data = _devnet()
    data["protocols"] = data["protocols"] * 6
    data["protocols"] = data["protocols"][:17]
    return data


BAD_INPUTS = [
    pytest.param(json.dumps(_without_epoch()), "missing field epoch", id="missing field"),
    pytest.param(
        json.dumps(_with(("protocols", 0, "audit_score"), 101)),
        "protocols[0].audit_score = 101 is out of range 0..100",
        id="out of range",
    ),
    pytest.param(
        json.dumps(_seventeen()), "protocols has 17 entries; allowed 1..16", id="17 protocols"
    ),
    pytest.param(
        json.dumps(_with(("max_single_bps",), 3000)),
        "infeasible: max_single_bps = 3000 with 3 protocols",
        id="infeasible max_single",
    ),
    pytest.param(
        json.dumps(_with(("min_diversification",), 4)),
        "infeasible: min_diversification = 4 but only 3",
        id="infeasible diversification",
    ),
    pytest.param(json.dumps(_with(("extra",), 1)), "unknown field(s) extra", id="unknown key"),
    pytest.param('{"router": ', "is not valid JSON", id="bad JSON"),
    pytest.param(b"\xff\xfe", "cannot read inputs file", id="not UTF-8"),
]


@pytest.mark.parametrize(("content", "message"), BAD_INPUTS)
def test_cli_bad_inputs_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes, message: str
) -> None:
    inputs = tmp_path / "inputs.json"
    if isinstance(content, bytes):
        inputs.write_bytes(content)
    else:
        inputs.write_text(content)
    code = main(["trace", "--inputs", str(inputs), "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_cli_unreadable_inputs_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in (tmp_path / "missing.json", tmp_path):
        code = main(["trace", "--inputs", str(path), "--out", str(tmp_path / "t")])
        assert code == 2
        assert "cannot read inputs file" in capsys.readouterr().err


def test_cli_unknown_layout_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["trace", "--inputs", str(DEVNET), "--out", str(tmp_path), "--layout", "plain"])
    assert info.value.code == 2
    assert "invalid choice: 'plain'" in capsys.readouterr().err
