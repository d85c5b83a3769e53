"""The Stone runner against the stand-in binaries (tests/fakes/stone), and the real ones
when configured (marker ``stone``)."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prover.errors import FriParameterError, InputError
from prover.fri import FriParameters
from prover.settings import ProverSettings
from prover.stone import (
    PROVER_LOG,
    StoneAbortError,
    StoneBinaryMissingError,
    StoneFriMismatchError,
    StoneLibraryMissingError,
    StoneOutOfMemoryError,
    StoneParameterSetUnsupportedError,
    StoneRunner,
    StoneTimeoutError,
    StoneUnreadableOutputError,
    StoneVerifyFailedError,
    choose_fri,
    classify_prover_failure,
    public_outputs,
    stone_parameter_file,
    verifier_friendly_layers,
)
from prover.stone_tools import locate_stone
from tests.support.processes import live_processes
from tests.support.reference import STONE_SAMPLES

SAMPLES = STONE_SAMPLES
FAKE_STONE = Path(__file__).resolve().parents[1] / "fakes" / "stone"
SAMPLE_OUTPUTS = (3, 5000, 3000, 2000, 5000)
# Integrity's calculate_fact_hash (sponge Poseidon) over the sample; computed here with
# cairo-lang's implementation, independent of prover.facts.
SAMPLE_PROGRAM_HASH = 0x76CDC29BF7BACED2ECFFC77A8A4D00035B7982F63F8AF5B536A3D9DE3B0F725


def _sample_fact() -> int:
    from starkware.cairo.common.poseidon_hash import poseidon_hash_many

    return int(poseidon_hash_many([SAMPLE_PROGRAM_HASH, poseidon_hash_many(SAMPLE_OUTPUTS)]))


STONE_FILES = ("trace.bin", "memory.bin", "public_input.json", "private_input.json")


def make_trace_dir(root: Path) -> Path:
    trace = root / "trace"
    trace.mkdir()
    for name in STONE_FILES:
        shutil.copyfile(SAMPLES / name, trace / name)
    shutil.copyfile(SAMPLES / "weights_compiled.json", trace / "program.json")
    shutil.copyfile(SAMPLES / "input.json", trace / "program_input.json")
    return trace


def fake_settings(**overrides: object) -> ProverSettings:
    base: dict[str, object] = {
        "stone_prover_path": FAKE_STONE / "cpu_air_prover",
        "stone_verifier_path": FAKE_STONE / "cpu_air_verifier",
        "timeout_s": 30.0,
        "memory_limit_mb": 1024,
    }
    base.update(overrides)
    return ProverSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    return make_trace_dir(tmp_path)


@pytest.fixture(autouse=True)
def _clean_fake_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAKE_STONE_MODE", "FAKE_STONE_GENERATION", "FAKE_STONE_CHILD_PIDFILE"):
        monkeypatch.delenv(name, raising=False)


def _process_ends_within(pid: int, seconds: float) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], seconds)
        return bool(readable)
    finally:
        os.close(pidfd)


# --- success ------------------------------------------------------------------------------


async def test_prove_writes_a_verified_proof_with_the_direct_fact(trace_dir: Path) -> None:
    runner = StoneRunner(fake_settings())
    result = await runner.prove(trace_dir)

    assert result.proof_path == trace_dir / "proof.json"
    assert not (trace_dir / "proof.json.unverified").exists()
    proof = json.loads(result.proof_path.read_text())
    real = json.loads((SAMPLES / "proof.json").read_text())
    assert sorted(proof) == sorted(real)
    assert result.proof_bytes == result.proof_path.stat().st_size
    assert result.fact_hash == _sample_fact()
    assert result.outputs == SAMPLE_OUTPUTS
    assert result.security_bits == 96
    assert result.parameter_set == "stone6"
    assert result.stone_generation == "stone5_or_stone6"
    assert runner.generation == "stone5_or_stone6"
    assert result.peak_rss_mb > 0


async def test_written_parameter_file_has_integrity_settings(trace_dir: Path) -> None:
    await StoneRunner(fake_settings()).prove(trace_dir)
    written = json.loads((trace_dir / "cpu_air_params.json").read_text())
    sample = json.loads((SAMPLES / "params_stone6_integrity.json").read_text())
    vf = "n_verifier_friendly_commitment_layers"
    assert {k: v for k, v in written.items() if k not in ("stark", vf)} == {
        k: v for k, v in sample.items() if k not in ("stark", vf)
    }
    # Defaults: 4,096 steps, last layer 256, 5 cosets; the trace rows (depth 16 + 5 + 1)
    # hashed with keccak, every layer above with Poseidon.
    assert written["stark"]["fri"]["fri_step_list"] == [0, 4, 4]
    assert written[vf] == 21
    config = json.loads((trace_dir / "cpu_air_prover_config.json").read_text())
    assert config == json.loads((SAMPLES / "prover_config.json").read_text())


@pytest.mark.parametrize("niceness", [0, 19])
async def test_prover_runs_at_the_configured_niceness(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch, niceness: int
) -> None:
    monkeypatch.setenv("FAKE_STONE_REPORT_NICENESS", "1")
    base = os.nice(0)  # the test's own niceness: the child adds to it
    await StoneRunner(fake_settings(niceness=niceness)).prove(trace_dir)
    log = (trace_dir / PROVER_LOG).read_text()
    assert f"niceness {min(19, base + niceness)}" in log
    assert os.nice(0) == base  # only the child was re-niced


async def test_proof_goes_to_out_dir(trace_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = await StoneRunner(fake_settings()).prove(trace_dir, out_dir=out)
    assert result.proof_path == out / "proof.json"
    assert not (trace_dir / "proof.json").exists()


def test_parameter_files_match_the_samples() -> None:
    sample_stark = json.loads((SAMPLES / "params.json").read_text())["stark"]
    fri = FriParameters.from_stone_stark(sample_stark)
    assert stone_parameter_file(fri, "keccak") == json.loads((SAMPLES / "params.json").read_text())
    assert stone_parameter_file(fri, "stone6") == json.loads(
        (SAMPLES / "params_stone6_integrity.json").read_text()
    )
    assert stone_parameter_file(fri, "stone5") == stone_parameter_file(fri, "stone6")


@given(log_n_steps=st.integers(3, 24), cosets=st.integers(2, 6), keccak=st.integers(1, 8))
def test_keccak_layers_leave_the_deepest_trace_layers_to_keccak(
    log_n_steps: int, cosets: int, keccak: int
) -> None:
    settings = ProverSettings(log_n_cosets=cosets, last_layer_degree_bound=4)
    fri = choose_fri(2**log_n_steps, settings)
    height = log_n_steps + 4 + cosets  # log2 of the evaluation domain: the trace tables
    params = stone_parameter_file(fri, "stone6", keccak)
    # Integrity (and Stone): rows verifier-friendly iff n >= height + 1, a node at depth d
    # iff n >= d: exactly the `keccak` deepest layers (rows first) use keccak.
    assert params["n_verifier_friendly_commitment_layers"] == max(0, height + 1 - keccak)
    assert verifier_friendly_layers(fri, keccak) == max(0, height + 1 - keccak)
    assert stone_parameter_file(fri, "stone6", 0)["n_verifier_friendly_commitment_layers"] == 1000
    assert "n_verifier_friendly_commitment_layers" not in stone_parameter_file(
        fri, "keccak", keccak
    )


@given(log_n_steps=st.integers(5, 24), bits=st.integers(80, 110), cosets=st.integers(2, 5))
def test_chosen_fri_meets_the_rule_and_the_bits(log_n_steps: int, bits: int, cosets: int) -> None:
    settings = ProverSettings(required_security_bits=bits, log_n_cosets=cosets)
    fri = choose_fri(2**log_n_steps, settings)
    assert 8 + sum(fri.fri_step_list) == log_n_steps + 4  # last layer 256 = 2**8
    assert fri.security_bits() >= bits
    assert fri.fri_step_list[0] == 0


@given(outputs=st.lists(st.integers(0, 2**251), max_size=20), begin=st.integers(1, 1000))
def test_public_outputs_reads_the_output_segment(outputs: list[int], begin: int) -> None:
    public_input = {
        "memory_segments": {"output": {"begin_addr": begin, "stop_ptr": begin + len(outputs)}},
        "public_memory": [
            {"address": begin + i, "value": hex(v), "page": 0} for i, v in enumerate(outputs)
        ]
        + [{"address": begin - 1, "value": "0x7", "page": 0}],
    }
    assert public_outputs(public_input) == tuple(outputs)


def test_public_outputs_of_the_sample() -> None:
    assert public_outputs(json.loads((SAMPLES / "public_input.json").read_text())) == (
        SAMPLE_OUTPUTS
    )


# --- failures -----------------------------------------------------------------------------


async def test_fri_mismatch_is_caught_before_stone_runs(trace_dir: Path) -> None:
    runner = StoneRunner(fake_settings(fri_step_list=(0, 4, 4, 3), last_layer_degree_bound=64))
    with pytest.raises(FriParameterError, match=r"do not match|does not match"):
        await runner.prove(trace_dir)
    assert not (trace_dir / PROVER_LOG).exists()


async def test_stone_fri_abort_is_classified(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Defence in depth: if our pre-check ever let a bad split through, Stone's abort
    # must still come out as the parameter-mismatch class.
    monkeypatch.setattr("prover.stone.check_fri_rule", lambda *a, **k: None)
    runner = StoneRunner(fake_settings(fri_step_list=(0, 4, 4, 3), last_layer_degree_bound=64))
    with pytest.raises(StoneFriMismatchError) as info:
        await runner.prove(trace_dir)
    assert info.value.code == "fri_mismatch"
    assert isinstance(info.value, FriParameterError)
    assert info.value.exit_status == -6
    assert "Expected FRI degree from FriParameters: 131072. STARK: 65536" in str(info.value)
    assert info.value.stderr_tail.startswith("I") or "terminate called" in info.value.stderr_tail
    assert not (trace_dir / "proof.json").exists()


def test_real_fri_abort_text_is_classified() -> None:
    stderr = (SAMPLES / "bad_fri.stderr.txt").read_text()
    error = classify_prover_failure(134, stderr, memory_limited=True, binary="cpu_air_prover")
    assert isinstance(error, StoneFriMismatchError)


@given(noise=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_classification_of_aborts(noise: str) -> None:
    fri_line = "Fri parameters do not match stark degree bound. Expected FRI degree: 2. STARK: 1"
    clean = (
        noise.replace("Fri parameters", "")
        .replace("InvokeGeneric", "")
        .replace("bad_alloc", "")
        .replace("Cannot allocate", "")
    )
    kw = {"memory_limited": True, "binary": "p"}
    assert classify_prover_failure(-6, clean + fri_line, **kw).code == "fri_mismatch"
    assert classify_prover_failure(-6, clean, **kw).code == "prover_abort"
    assert classify_prover_failure(-9, clean, **kw).code == "out_of_memory"
    assert classify_prover_failure(1, clean, **kw).code == "prover_abort"
    assert classify_prover_failure(-6, clean + "std::bad_alloc", **kw).code == "out_of_memory"


async def test_cmake_generation_rejects_stone6_and_is_remembered(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STONE_GENERATION", "cmake")
    runner = StoneRunner(fake_settings())
    with pytest.raises(StoneParameterSetUnsupportedError) as info:
        await runner.prove(trace_dir)
    assert info.value.code == "parameter_set_unsupported"
    assert "parameter_set=keccak" in str(info.value)
    assert runner.generation == "cmake"

    (trace_dir / PROVER_LOG).unlink()
    with pytest.raises(StoneParameterSetUnsupportedError):
        await runner.prove(trace_dir)
    assert not (trace_dir / PROVER_LOG).exists()  # known: Stone was not started again


async def test_cmake_generation_proves_the_keccak_set(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STONE_GENERATION", "cmake")
    result = await StoneRunner(fake_settings(parameter_set="keccak")).prove(trace_dir)
    assert result.parameter_set == "keccak"
    assert result.stone_generation == "unknown"  # keccak runs do not reveal it
    params = json.loads((trace_dir / "cpu_air_params.json").read_text())
    assert "channel_hash" not in params


@pytest.mark.parametrize("generation", ["stone5", "stone6"])
async def test_new_generations_accept_the_verifier_friendly_set(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch, generation: str
) -> None:
    monkeypatch.setenv("FAKE_STONE_GENERATION", generation)
    result = await StoneRunner(fake_settings(parameter_set=generation)).prove(trace_dir)
    assert result.stone_generation == "stone5_or_stone6"


async def test_timeout_kills_the_whole_process_group(
    trace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAKE_STONE_MODE", "hang")
    monkeypatch.setenv("FAKE_STONE_CHILD_PIDFILE", str(pidfile))
    with pytest.raises(StoneTimeoutError) as info:
        await StoneRunner(fake_settings(timeout_s=2.0)).prove(trace_dir)
    assert info.value.code == "timeout"
    assert _process_ends_within(int(pidfile.read_text()), 10)


async def test_cancellation_kills_the_whole_process_group(
    trace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    monkeypatch.setenv("FAKE_STONE_MODE", "hang")
    monkeypatch.setenv("FAKE_STONE_CHILD_PIDFILE", str(pidfile))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(StoneRunner(fake_settings()).prove(trace_dir), timeout=3.0)
    assert _process_ends_within(int(pidfile.read_text()), 10)


def test_a_killed_keeper_leaves_no_prover_behind(trace_dir: Path, tmp_path: Path) -> None:
    """SIGKILL of the process that started Stone (a keeper killed by the OOM killer or
    `kill -9`): the prover, in its own session, dies with it."""
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from tests.prover.test_stone import fake_settings\n"
        "from prover.stone import StoneRunner\n"
        "asyncio.run(StoneRunner(fake_settings()).prove(Path(sys.argv[1])))\n"
    )
    env = {**os.environ, "FAKE_STONE_MODE": "hang", "FAKE_STONE_CHILD_PIDFILE": str(pidfile)}
    keeper = subprocess.Popen([sys.executable, "-c", script, str(trace_dir)], env=env)
    try:
        deadline = time.monotonic() + 60
        provers: list[int] = []
        while not provers and time.monotonic() < deadline and keeper.poll() is None:
            provers = [
                pid
                for pid, parent in live_processes("cpu_air_prover").items()
                if parent == keeper.pid
            ]
            time.sleep(0.05)  # polling /proc for the child: nothing to wait on
        assert provers, "the prover never started"
        assert _process_ends_within(provers[0], 0) is False  # running
    finally:
        keeper.kill()
        keeper.wait()
    assert _process_ends_within(provers[0], 5)


@pytest.mark.parametrize(
    ("mode", "error", "code"),
    [
        ("crash", StoneAbortError, "prover_abort"),
        ("garbage", StoneUnreadableOutputError, "unreadable_output"),
        ("no_output", StoneUnreadableOutputError, "unreadable_output"),
        ("lib_missing", StoneLibraryMissingError, "library_missing"),
        ("tamper", StoneVerifyFailedError, "verify_failed"),
    ],
)
async def test_failure_modes(
    trace_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    error: type[Exception],
    code: str,
) -> None:
    monkeypatch.setenv("FAKE_STONE_MODE", mode)
    with pytest.raises(error) as info:
        await StoneRunner(fake_settings()).prove(trace_dir)
    assert getattr(info.value, "code", None) == code
    assert not (trace_dir / "proof.json").exists()  # nothing unverified is kept as proof.json


async def test_tampered_proof_reports_the_verifier_message(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STONE_MODE", "tamper")
    with pytest.raises(StoneVerifyFailedError, match="did not pass integrity check"):
        await StoneRunner(fake_settings()).prove(trace_dir)


async def test_out_of_memory_under_the_limit(
    trace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_STONE_MODE", "oom")
    with pytest.raises(StoneOutOfMemoryError) as info:
        await StoneRunner(fake_settings(memory_limit_mb=300)).prove(trace_dir)
    assert "memory_limit_mb" in str(info.value)
    assert "std::bad_alloc" in info.value.stderr_tail


async def test_missing_and_unexecutable_binaries(trace_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(StoneBinaryMissingError):
        await StoneRunner(fake_settings(stone_prover_path=tmp_path / "nope")).prove(trace_dir)
    not_exec = tmp_path / "cpu_air_prover"
    not_exec.write_text("#!/bin/sh\n")
    with pytest.raises(StoneBinaryMissingError) as info:
        await StoneRunner(fake_settings(stone_prover_path=not_exec)).prove(trace_dir)
    assert info.value.code == "binary_missing"
    with pytest.raises(StoneBinaryMissingError):
        StoneRunner(ProverSettings())


async def test_incomplete_trace_dir_is_bad_input(trace_dir: Path) -> None:
    (trace_dir / "memory.bin").unlink()
    with pytest.raises(InputError, match=r"lacks memory\.bin"):
        await StoneRunner(fake_settings()).prove(trace_dir)


# --- the stand-ins behave like the real binaries ------------------------------------------


def _run_fake(
    args: list[str], cwd: Path, *, shell: bool = False
) -> subprocess.CompletedProcess[str]:
    if shell:
        command = " ".join([str(FAKE_STONE / "cpu_air_prover"), *args])
        return subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True)
    return subprocess.run(
        [str(FAKE_STONE / "cpu_air_prover"), *args], cwd=cwd, capture_output=True, text=True
    )


def _prover_args(params: Path) -> list[str]:
    return [
        "--out_file=p.json",
        "--private_input_file=private_input.json",
        "--public_input_file=public_input.json",
        f"--prover_config_file={SAMPLES / 'prover_config.json'}",
        f"--parameter_file={params}",
        "--generate_annotations",
    ]


def test_fake_aborts_exactly_like_stone_on_bad_fri(trace_dir: Path) -> None:
    expected = (SAMPLES / "bad_fri.stderr.txt").read_text().splitlines()
    in_shell = _run_fake(_prover_args(SAMPLES / "params_bad_fri.json"), trace_dir, shell=True)
    assert in_shell.returncode == int((SAMPLES / "bad_fri.exit.txt").read_text().split("=")[1])
    lines = in_shell.stderr.splitlines()
    start = lines.index(expected[0])
    assert lines[start : start + len(expected)] == expected
    direct = _run_fake(_prover_args(SAMPLES / "params_bad_fri.json"), trace_dir)
    assert direct.returncode == -6


def test_fake_rejects_unknown_flags_like_gflags(trace_dir: Path) -> None:
    done = _run_fake(["--bogus_flag=1"], trace_dir)
    assert done.returncode == 1
    assert "ERROR: unknown command line flag 'bogus_flag'" in done.stderr


def test_fake_verifier_refuses_tampered_public_input(trace_dir: Path) -> None:
    assert _run_fake(_prover_args(SAMPLES / "params.json"), trace_dir).returncode == 0
    verifier = [str(FAKE_STONE / "cpu_air_verifier"), "--in_file=p.json", "--logtostderr"]
    ok = subprocess.run(verifier, cwd=trace_dir, capture_output=True, text=True)
    assert ok.returncode == 0
    assert "Proof verified successfully." in ok.stderr
    proof = json.loads((trace_dir / "p.json").read_text())
    proof["public_input"]["public_memory"][-1]["value"] = "0x1"
    (trace_dir / "p.json").write_text(json.dumps(proof))
    bad = subprocess.run(verifier, cwd=trace_dir, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "Out of domain sampling verification failed" in bad.stderr


# --- the real Stone -----------------------------------------------------------------------


def _real_stone() -> tuple[Path, Path] | None:
    build = locate_stone(os.environ)
    return None if build is None else (build.prover, build.verifier)


@pytest.mark.stone
async def test_real_stone_proves_and_verifies(trace_dir: Path) -> None:
    binaries = _real_stone()
    if binaries is None:
        pytest.skip(
            "no real Stone: `make setup` installs it from ../shared/stone/bin (or "
            "STONE_DIST); or set KEEPER_PROVER__STONE_PROVER_PATH"
        )
    prover, verifier = binaries
    settings = ProverSettings(
        stone_prover_path=prover, stone_verifier_path=verifier, timeout_s=600.0
    )
    runner = StoneRunner(settings)
    try:
        result = await runner.prove(trace_dir)
    except StoneParameterSetUnsupportedError:
        assert runner.generation == "cmake"
        runner = StoneRunner(
            ProverSettings(
                stone_prover_path=prover,
                stone_verifier_path=verifier,
                timeout_s=600.0,
                parameter_set="keccak",
            )
        )
        result = await runner.prove(trace_dir)
    assert result.fact_hash == _sample_fact()
    assert result.security_bits >= 96
    assert json.loads(result.proof_path.read_text())["public_input"]["n_steps"] == 4096
