"""``obsqra-keeper integrity-calldata``: the files are the reference calldata, felt for felt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keeper.cli.main import main
from tests.integrity.conftest import FIBONACCI, SHARED

CALLDATA = SHARED / "calldata"
pytestmark = pytest.mark.skipif(
    not (FIBONACCI.is_file() and (CALLDATA / "split_initial.txt").is_file()),
    reason=f"Integrity's reference proofs and calldata are absent ({SHARED})",
)


def _felts(path: Path) -> list[int]:
    return [int(x, 0) for x in path.read_text().split()]


def test_split_files_are_the_reference_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = [CALLDATA / "split_initial.txt", *sorted(CALLDATA.glob("split_step_*.txt")),
                 CALLDATA / "split_final.txt"]
    job_id = _felts(reference[0])[0]
    args = ["integrity-calldata", str(FIBONACCI), "--out", str(tmp_path), "--split",
            "--job-id", str(job_id), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    written = sorted(tmp_path.glob("*.txt"))
    assert [p.name for p in written] == [
        "00-initial.txt", "01-step.txt", "02-step.txt", "03-step.txt", "04-step.txt",
        "05-final.txt",
    ]
    assert [_felts(p) for p in written] == [_felts(p) for p in reference]
    fact = (FIBONACCI.parent / "small_stone6_keccak_fibonacci.fact").read_text().strip()
    assert int(result["fact_hash"], 16) == int(fact, 16)
    assert (result["verifier_config"], result["security_bits"]) == (
        ["small", "keccak_160_lsb", "stone6", "strict"], 60
    )


def test_monolith_is_the_full_call_and_hex_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["integrity-calldata", str(FIBONACCI), "--out", str(tmp_path), "--hex"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fact_hash: 0x1e69a6f9")
    lines = (tmp_path / "monolith.txt").read_text().splitlines()
    assert all(line.startswith("0x") for line in lines)
    assert [int(x, 16) for x in lines] == _felts(CALLDATA / "verify_proof_full.txt")


def test_a_proof_that_is_not_json_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "proof.json"
    bad.write_text("not json")
    assert main(["integrity-calldata", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is not a readable JSON proof" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_proof_without_annotations_says_how_to_get_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proof = json.loads(FIBONACCI.read_text())
    del proof["annotations"]
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    assert main(["integrity-calldata", str(path), "--out", str(tmp_path / "o")]) != 0
    assert "--generate_annotations" in capsys.readouterr().err


def test_guard_target_writes_the_guards_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--target guard: each file is the verifier's calldata as one span; the verifier's is
    the registry's with VerifierSettings (strict 0, Lsb160 0, Stone6 1) for the config."""
    reference = [CALLDATA / "split_initial.txt", *sorted(CALLDATA.glob("split_step_*.txt")),
                 CALLDATA / "split_final.txt"]
    job_id = _felts(reference[0])[0]
    outputs = {}
    for target in ("guard", "verifier"):
        out = tmp_path / target
        args = ["integrity-calldata", str(FIBONACCI), "--out", str(out), "--split",
                "--job-id", str(job_id), "--target", target, "--json"]
        assert main(args) == 0
        assert json.loads(capsys.readouterr().out)["target"] == target
        outputs[target] = [_felts(p) for p in sorted(out.glob("*.txt"))]
    registry = [_felts(p) for p in reference]
    verifier = outputs["verifier"]
    assert verifier[0] == [job_id, 0, 0, 1, *registry[0][5:]]
    assert verifier[1:] == registry[1:]
    assert outputs["guard"] == [[len(v), *v] for v in verifier]
    monolith = tmp_path / "mono"
    assert main(["integrity-calldata", str(FIBONACCI), "--out", str(monolith),
                 "--target", "guard"]) == 0
    full = _felts(CALLDATA / "verify_proof_full.txt")
    assert _felts(monolith / "monolith.txt") == [len(full) - 1, 0, 0, 1, *full[4:]]
