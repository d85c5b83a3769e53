"""Run the local Stone prover on a trace directory, verify the proof, compute its fact.

A trace directory holds what ``cairo-run --proof_mode`` wrote (trace.bin, memory.bin,
public_input.json, private_input.json) and the compiled program (program.json). The
runner writes the parameter and prover-config files next to the proof, runs
``cpu_air_prover`` in its own process group under a wall-clock timeout and an
address-space limit, runs ``cpu_air_verifier`` on the result, and only then renames
the proof to ``proof.json``: a ``proof.json`` it leaves behind has been verified.

Stone generation detection: neither binary reports its revision (``--version`` and
``--help`` do not tell). The CMake-era build (2023) has no Poseidon channel and aborts
on the verifier-friendly parameter sets with "InvokeGenericTemplateVersion(): Unexpected
type" (FACTS §1, stone-samples/README). We detect by outcome at no extra cost: the first
stone5/stone6 run either succeeds (the build is a 2024 Bazel one: "stone5_or_stone6";
which of the two is the operator's declaration, ``parameter_set``) or fails with that
message ("cmake", error ``parameter_set_unsupported``). The runner remembers the answer,
so later verifier-friendly runs on a CMake build fail at once without starting Stone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from prover.errors import FriParameterError, InputError, ProverError
from prover.facts import direct_fact, program_hash
from prover.fri import FriParameters, check_fri_rule, fri_parameters
from prover.settings import ParameterSet, ProverSettings

StoneGeneration = Literal["cmake", "stone5_or_stone6", "unknown"]

STDERR_TAIL_BYTES = 2048

# FACTS §1: without cached_lde_config the prover aborts ("Missing configuration object").
PROVER_CONFIG: Mapping[str, Any] = {
    "cached_lde_config": {"store_full_lde": False, "use_fft_for_eval": False},
    "constraint_polynomial_task_size": 256,
    "n_out_of_memory_merkle_layers": 1,
    "table_prover_n_tasks_per_segment": 32,
}

# FACTS §1/§4: what makes a proof verifiable by Integrity (stone5 and stone6 share them;
# they differ only inside the prover, in what goes into the public-input seed).
_VERIFIER_FRIENDLY: Mapping[str, Any] = {
    "channel_hash": "poseidon3",
    "commitment_hash": "keccak256_masked160_lsb",
    "n_verifier_friendly_commitment_layers": 1000,
    "pow_hash": "keccak256",
    "statement": {"page_hash": "pedersen"},
    "verifier_friendly_channel_updates": True,
    "verifier_friendly_commitment_hash": "poseidon3",
}

TRACE_FILES = ("trace.bin", "memory.bin", "public_input.json", "private_input.json")
PARAMS_FILE = "cpu_air_params.json"
PROVER_CONFIG_FILE = "cpu_air_prover_config.json"
PROOF_FILE = "proof.json"
PROVER_LOG = "cpu_air_prover.log"
VERIFIER_LOG = "cpu_air_verifier.log"


class StoneError(ProverError):
    """The local Stone prover did not produce a verified proof. ``stderr_tail`` holds the
    last ~2 KB of what the binary printed (Stone prints no secrets)."""

    code = "stone_failed"

    def __init__(
        self, message: str, *, stderr_tail: str = "", exit_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.exit_status = exit_status


class StoneBinaryMissingError(StoneError):
    code = "binary_missing"


class StoneLibraryMissingError(StoneError):
    code = "library_missing"


class StoneFriMismatchError(StoneError, FriParameterError):
    """Stone aborted: the FRI parameters do not match the trace's degree bound."""

    code = "fri_mismatch"


class StoneParameterSetUnsupportedError(StoneError):
    code = "parameter_set_unsupported"


class StoneAbortError(StoneError):
    code = "prover_abort"


class StoneTimeoutError(StoneError):
    code = "timeout"


class StoneOutOfMemoryError(StoneError):
    code = "out_of_memory"


class StoneUnreadableOutputError(StoneError):
    code = "unreadable_output"


class StoneVerifyFailedError(StoneError):
    code = "verify_failed"


@dataclass(frozen=True)
class StoneResult:
    proof_path: Path
    proof_bytes: int
    wall_seconds: float
    cpu_seconds: float  # prover + verifier, user + system
    peak_rss_mb: float  # the prover's
    security_bits: int
    fact_hash: int
    outputs: tuple[int, ...]
    parameter_set: ParameterSet
    stone_generation: StoneGeneration
    fri: FriParameters


@dataclass(frozen=True)
class _ChildExit:
    status: int  # os.waitstatus_to_exitcode: negative = killed by that signal
    cpu_seconds: float
    peak_rss_mb: float
    timed_out: bool
    log_tail: str


# --- pure parts -------------------------------------------------------------------------


def stone_parameter_file(
    fri: FriParameters, parameter_set: ParameterSet, keccak_commitment_layers: int = 0
) -> dict[str, Any]:
    """The ``--parameter_file`` content for this FRI shape and hash parameter set.

    ``keccak_commitment_layers``: how many of the deepest Merkle layers (the table rows
    counting as one) are hashed with keccak instead of Poseidon (see
    ``verifier_friendly_layers``); 0 keeps every layer Poseidon.
    """
    params: dict[str, Any] = {
        "field": "PrimeField0",
        "stark": fri.to_stone_stark(),
        "use_extension_field": False,
    }
    if parameter_set != "keccak":
        params.update(json.loads(json.dumps(_VERIFIER_FRIENDLY)))
        if keccak_commitment_layers:
            params["n_verifier_friendly_commitment_layers"] = verifier_friendly_layers(
                fri, keccak_commitment_layers
            )
    return params


def verifier_friendly_layers(fri: FriParameters, keccak_commitment_layers: int) -> int:
    """Integrity's ``n_verifier_friendly_commitment_layers`` that leaves the deepest
    ``keccak_commitment_layers`` layers of the trace tables to keccak.

    Both Stone and Integrity count Merkle depth from the root: a node at depth d is hashed
    with Poseidon iff d <= n; the rows of a table of height h (the leaves' parents sit at
    depth h) iff n >= h + 1. The trace and composition tables are the tallest (height =
    log2 of the evaluation domain = log2(16 * n_steps) + log_n_cosets); FRI layers are
    shorter, so they stay all-Poseidon unless more layers are asked for. Measured
    (bench/bench_integrity.py): hashing the 23-column trace rows with Poseidon is most of
    Stone's time; one keccak per decommitted row is cheap on-chain next to that.
    """
    if keccak_commitment_layers < 0:
        raise FriParameterError(
            f"keccak_commitment_layers must be >= 0, got {keccak_commitment_layers}"
        )
    log_degree = sum(fri.fri_step_list) + (fri.last_layer_degree_bound.bit_length() - 1)
    height = log_degree + fri.log_n_cosets
    return max(0, height + 1 - keccak_commitment_layers)


def choose_fri(n_steps: int, settings: ProverSettings) -> FriParameters:
    """FRI parameters for ``n_steps`` under the settings; raises FriParameterError."""
    fri = fri_parameters(
        n_steps,
        required_bits=settings.required_security_bits,
        log_n_cosets=settings.log_n_cosets,
        proof_of_work_bits=settings.proof_of_work_bits,
        last_layer_degree_bound=settings.last_layer_degree_bound,
    )
    if settings.fri_step_list is not None:
        fri = replace(fri, fri_step_list=tuple(settings.fri_step_list))
    check_fri_rule(n_steps, fri, for_integrity=settings.parameter_set != "keccak")
    return fri


def public_outputs(public_input: Mapping[str, Any]) -> tuple[int, ...]:
    """The program's output values, read from the public memory of the output segment."""
    try:
        segment = public_input["memory_segments"]["output"]
        begin, stop = int(segment["begin_addr"]), int(segment["stop_ptr"])
        memory = {
            int(cell["address"]): int(str(cell["value"]), 0)
            for cell in public_input["public_memory"]
        }
        return tuple(memory[address] for address in range(begin, stop))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"public input has no readable output segment ({exc!r}): regenerate the trace "
            "with cairo-run --proof_mode and a layout that has the output builtin"
        ) from exc


_FRI_ABORT = re.compile(r"Fri parameters do not match stark degree bound[^\n]*")
_LIB_MISSING = re.compile(r"error while loading shared libraries: ([^\n]*)")


def classify_prover_failure(
    status: int, log_tail: str, *, memory_limited: bool, binary: str
) -> StoneError:
    """Map a failed prover exit (signal as negative status, or 128+signal via a shell)
    to the error class the operator can act on."""
    aborted = status in (-signal.SIGABRT, 128 + signal.SIGABRT)
    killed = status in (-signal.SIGKILL, 128 + signal.SIGKILL)
    kw: dict[str, Any] = {"stderr_tail": log_tail, "exit_status": status}
    if fri := _FRI_ABORT.search(log_tail):
        return StoneFriMismatchError(
            f"Stone rejected the FRI parameters: {fri.group(0)}. The rule is "
            "log2(last_layer_degree_bound) + sum(fri_step_list) == log2(n_steps) + 4; "
            "fix prover.fri_step_list / last_layer_degree_bound or let them be computed",
            **kw,
        )
    if "InvokeGenericTemplateVersion(): Unexpected type" in log_tail:
        return StoneParameterSetUnsupportedError(
            f"{binary} is a CMake-era Stone build: it has no Poseidon channel and rejects "
            "the verifier-friendly parameter set, and its proofs can never verify on "
            "Integrity. Install a stone5/stone6 (2024 Bazel) build, or set "
            "prover.parameter_set=keccak for off-chain proofs only",
            **kw,
        )
    if status == 127 and (lib := _LIB_MISSING.search(log_tail)):
        return StoneLibraryMissingError(
            f"{binary} cannot start: {lib.group(1).strip()}. Install the libraries the "
            "Stone build links to (libglog, libgflags, libdw) or point "
            "prover.stone_prover_path at a build made for this machine",
            **kw,
        )
    if (
        "std::bad_alloc" in log_tail
        or "Cannot allocate" in log_tail
        or (killed and memory_limited)
    ):
        return StoneOutOfMemoryError(
            f"Stone ran out of memory (exit status {status}): raise prover.memory_limit_mb "
            "or prove a smaller trace (n_steps drives memory linearly)",
            **kw,
        )
    if status == 126:
        return StoneBinaryMissingError(
            f"{binary} is not executable: fix its permissions or prover.stone_prover_path",
            **kw,
        )
    what = "aborted (SIGABRT)" if aborted else f"failed with exit status {status}"
    return StoneAbortError(
        f"Stone prover {what}; see the last lines of its log: {_last_line(log_tail)}", **kw
    )


_GLOG_ERROR = re.compile(r"^[EF]\d{4} [^\]]*\] (.*)$")


def _last_line(text: str) -> str:
    """The most telling line of a log tail: the last glog error, else the last line."""
    lines = text.splitlines()
    for line in reversed(lines):
        if match := _GLOG_ERROR.match(line):
            return match.group(1).strip()[:300]
    for line in reversed(lines):
        if line.strip() and not line.startswith("Stack trace"):
            return line.strip()[:300]
    return "(no output)"


# --- process handling -------------------------------------------------------------------


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _child_setup(limit_bytes: int | None, niceness: int, parent_pid: int) -> None:
    """In the child, before exec: tie the prover's life to the keeper's, lower its
    priority, cap its address space.

    Stone runs in its own session (so a timeout or a cancelled job can kill its whole
    group), which also takes it out of the keeper's process group: a keeper killed with
    SIGKILL, or a systemd unit whose main process died, would leave it running and a
    restarted keeper would start a second one. PR_SET_PDEATHSIG makes the kernel kill it
    when the thread that started it (the event loop's) goes away."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the keeper died before the request took effect
            os._exit(1)
    if niceness:
        os.nice(niceness)
    if limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


async def _wait4(pid: int) -> tuple[int, resource.struct_rusage]:
    """Reap ``pid`` with its own rusage (precise even when several children run)."""
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # no pidfd (old kernel, seccomp): a thread blocks in wait4 instead
        return await asyncio.to_thread(_reap, pid)
    try:
        exited: asyncio.Future[None] = loop.create_future()
        loop.add_reader(pidfd, _set_done, exited)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
        return _reap(pid)  # returns at once: the pidfd said it exited
    finally:
        os.close(pidfd)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _reap(pid: int) -> tuple[int, resource.struct_rusage]:
    _, status, usage = os.wait4(pid, 0)
    return status, usage


def _kill_and_reap(pid: int) -> tuple[int, resource.struct_rusage] | None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # pgid == pid: started with start_new_session
    try:
        return _reap(pid)
    except ChildProcessError:  # already reaped by the fallback thread
        return None


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - STDERR_TAIL_BYTES))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


async def _run_child(
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    timeout_s: float,
    memory_limit_mb: int | None,
    env: Mapping[str, str],
    niceness: int = 0,
) -> _ChildExit:
    limit = memory_limit_mb * 1024 * 1024 if memory_limit_mb else None
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(  # noqa: ASYNC220 - reaped asynchronously via pidfd
                list(argv),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=functools.partial(_child_setup, limit, niceness, os.getpid()),
                env=dict(env),
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise StoneBinaryMissingError(
                f"cannot start {argv[0]}: {exc.strerror}. Set prover.stone_prover_path / "
                "stone_verifier_path to an executable Stone build"
            ) from exc
    timed_out = False
    usage: resource.struct_rusage | None
    try:
        try:
            async with asyncio.timeout(timeout_s):
                status, usage = await _wait4(proc.pid)
        except TimeoutError:
            timed_out = True
            reaped = _kill_and_reap(proc.pid)
            status, usage = reaped if reaped else (int(signal.SIGKILL), None)
    except BaseException:  # cancelled: never leave a prover running behind us
        _kill_and_reap(proc.pid)
        proc.returncode = -signal.SIGKILL
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
    return _ChildExit(
        status=proc.returncode,
        cpu_seconds=usage.ru_utime + usage.ru_stime if usage else 0.0,
        peak_rss_mb=usage.ru_maxrss / 1024.0 if usage else 0.0,  # Linux reports KiB
        timed_out=timed_out,
        log_tail=_tail(log_path),
    )


# --- the runner -------------------------------------------------------------------------


@dataclass(frozen=True)
class _TraceInputs:
    trace_dir: Path
    public_input: dict[str, Any]
    compiled: dict[str, Any]
    n_steps: int


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{what} not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{what} is not readable JSON: {path} ({exc})") from exc


def _load_trace_dir(trace_dir: Path, program_path: Path | None) -> _TraceInputs:
    if not trace_dir.is_dir():
        raise InputError(f"trace directory not found: {trace_dir}")
    missing = [name for name in TRACE_FILES if not (trace_dir / name).is_file()]
    if missing:
        raise InputError(
            f"trace directory {trace_dir} lacks {', '.join(missing)}: run the allocation "
            "program in proof mode first (cairo-run --proof_mode writes them)"
        )
    public_input = _read_json(trace_dir / "public_input.json", "public input")
    n_steps = public_input.get("n_steps") if isinstance(public_input, dict) else None
    if not isinstance(n_steps, int) or n_steps < 1 or n_steps & (n_steps - 1):
        raise InputError(f"public input in {trace_dir} has no power-of-two n_steps")
    compiled = _read_json(program_path or trace_dir / "program.json", "compiled program")
    if not isinstance(compiled, dict) or not isinstance(compiled.get("data"), list):
        raise InputError(f"compiled program for {trace_dir} has no 'data' list")
    return _TraceInputs(trace_dir, public_input, compiled, n_steps)


@dataclass(frozen=True)
class _Job:
    inputs: _TraceInputs
    out_dir: Path
    fri: FriParameters
    params: dict[str, Any]
    unverified: Path


def _prepare(
    trace_dir: Path, out_dir: Path | None, program_path: Path | None, settings: ProverSettings
) -> _Job:
    """Validate the trace directory and write the parameter and prover-config files."""
    inputs = _load_trace_dir(trace_dir.resolve(), program_path)
    fri = choose_fri(inputs.n_steps, settings)
    params = stone_parameter_file(fri, settings.parameter_set, settings.keccak_commitment_layers)
    out = (out_dir or inputs.trace_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n")
    (out / PROVER_CONFIG_FILE).write_text(json.dumps(PROVER_CONFIG, indent=2) + "\n")
    unverified = out / (PROOF_FILE + ".unverified")
    unverified.unlink(missing_ok=True)
    return _Job(inputs, out, fri, params, unverified)


def _executable(path: Path) -> Path:
    """Absolute path (Stone runs with cwd = the trace dir); bare names go through PATH."""
    if os.sep not in str(path):
        found = shutil.which(str(path))
        return Path(found) if found else path
    return path.absolute()


class StoneRunner:
    """Proves trace directories with the configured Stone binaries."""

    def __init__(
        self, settings: ProverSettings, *, extra_env: Mapping[str, str] | None = None
    ) -> None:
        if settings.stone_prover_path is None or settings.stone_verifier_path is None:
            raise StoneBinaryMissingError(
                "Stone is not configured: set prover.stone_prover_path and "
                "prover.stone_verifier_path"
            )
        self._settings = settings
        self._prover = _executable(settings.stone_prover_path)
        self._verifier = _executable(settings.stone_verifier_path)
        # glibc makes one malloc arena per thread; capping them keeps the address space
        # (what RLIMIT_AS counts) close to the resident size.
        self._env = {**os.environ, "MALLOC_ARENA_MAX": "2", **(extra_env or {})}
        self._generation: StoneGeneration = "unknown"
        self._phase: str | None = None

    @property
    def phase(self) -> str | None:
        """What the runner is doing now (for progress reports), None when idle."""
        return self._phase

    @property
    def generation(self) -> StoneGeneration:
        """What the runs so far revealed about the binary (see the module docstring)."""
        return self._generation

    async def prove(
        self,
        trace_dir: Path,
        *,
        out_dir: Path | None = None,
        program_path: Path | None = None,
    ) -> StoneResult:
        started = time.monotonic()
        settings = self._settings
        if self._generation == "cmake" and settings.parameter_set != "keccak":
            raise classify_prover_failure(
                1,
                "InvokeGenericTemplateVersion(): Unexpected type (detected on an earlier run)",
                memory_limited=False,
                binary=str(self._prover),
            )
        job = _prepare(trace_dir, out_dir, program_path, settings)
        inputs, fri, unverified = job.inputs, job.fri, job.unverified
        outputs = public_outputs(inputs.public_input)
        try:
            self._phase = f"proving {inputs.n_steps} steps ({fri.security_bits()} bits)"
            prover_exit = await self._run_prover(job)
            proof_bytes = self._check_proof(
                unverified, inputs.public_input, job.params, prover_exit
            )
            self._phase = "verifying the proof locally"
            verifier_exit = await self._run_verifier(unverified, job.out_dir)
        finally:
            self._phase = None
        proof_path = job.out_dir / PROOF_FILE
        os.replace(unverified, proof_path)
        return StoneResult(
            proof_path=proof_path,
            proof_bytes=proof_bytes,
            wall_seconds=time.monotonic() - started,
            cpu_seconds=prover_exit.cpu_seconds + verifier_exit.cpu_seconds,
            peak_rss_mb=prover_exit.peak_rss_mb,
            security_bits=fri.security_bits(),
            fact_hash=direct_fact(program_hash(inputs.compiled), outputs),
            outputs=outputs,
            parameter_set=settings.parameter_set,
            stone_generation=self._generation,
            fri=fri,
        )

    async def _run_prover(self, job: _Job) -> _ChildExit:
        """cpu_air_prover on the job's files; a failed run raises its classified error."""
        settings, trace_dir, out_dir = self._settings, job.inputs.trace_dir, job.out_dir
        prover_exit = await _run_child(
            [
                str(self._prover),
                f"--out_file={job.unverified}",
                f"--private_input_file={trace_dir / 'private_input.json'}",
                f"--public_input_file={trace_dir / 'public_input.json'}",
                f"--prover_config_file={out_dir / PROVER_CONFIG_FILE}",
                f"--parameter_file={out_dir / PARAMS_FILE}",
                "--generate_annotations",
                "--logtostderr",
            ],
            cwd=trace_dir,
            log_path=out_dir / PROVER_LOG,
            timeout_s=settings.timeout_s,
            memory_limit_mb=settings.memory_limit_mb,
            env=self._env,
            niceness=settings.niceness,
        )
        if prover_exit.timed_out:
            raise StoneTimeoutError(
                f"Stone did not finish within {settings.timeout_s:g} s (n_steps "
                f"{job.inputs.n_steps}); it was killed. Raise prover.timeout_s or prove a "
                "smaller trace",
                stderr_tail=prover_exit.log_tail,
            )
        if prover_exit.status != 0:
            error = classify_prover_failure(
                prover_exit.status,
                prover_exit.log_tail,
                memory_limited=bool(settings.memory_limit_mb),
                binary=str(self._prover),
            )
            if isinstance(error, StoneParameterSetUnsupportedError):
                self._generation = "cmake"
            raise error
        if settings.parameter_set != "keccak":
            self._generation = "stone5_or_stone6"
        return prover_exit

    async def _run_verifier(self, proof: Path, out_dir: Path) -> _ChildExit:
        """cpu_air_verifier on the fresh proof; a refusal raises StoneVerifyFailedError."""
        verifier_exit = await _run_child(
            [str(self._verifier), f"--in_file={proof}", "--logtostderr"],
            cwd=out_dir,
            log_path=out_dir / VERIFIER_LOG,
            timeout_s=self._settings.verify_timeout_s,
            memory_limit_mb=self._settings.memory_limit_mb,
            env=self._env,
        )
        if verifier_exit.timed_out or verifier_exit.status != 0:
            why = "timed out" if verifier_exit.timed_out else f"exit {verifier_exit.status}"
            raise StoneVerifyFailedError(
                f"cpu_air_verifier refused the proof ({why}): "
                f"{_last_line(verifier_exit.log_tail)} The proof was not kept; check the "
                "Stone build (prover and verifier from the same revision)",
                stderr_tail=verifier_exit.log_tail,
                exit_status=verifier_exit.status,
            )
        return verifier_exit

    @staticmethod
    def _check_proof(
        path: Path, public_input: Mapping[str, Any], params: Mapping[str, Any], run: _ChildExit
    ) -> int:
        """The proof must be JSON of Stone's shape, for OUR statement and parameters."""
        try:
            raw = path.read_bytes()
            proof = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise StoneUnreadableOutputError(
                f"Stone exited 0 but left no readable proof at {path} ({exc.__class__.__name__})",
                stderr_tail=run.log_tail,
            ) from exc
        if not isinstance(proof, dict) or not isinstance(proof.get("proof_hex"), str):
            raise StoneUnreadableOutputError(
                f"Stone's output {path} is not a proof (no proof_hex)", stderr_tail=run.log_tail
            )
        if proof.get("public_input") != public_input:
            raise StoneUnreadableOutputError(
                f"the proof at {path} is for another public input than the trace's",
                stderr_tail=run.log_tail,
            )
        if proof.get("proof_parameters", {}).get("stark") != params["stark"]:
            raise StoneUnreadableOutputError(
                f"the proof at {path} was made with other STARK parameters than requested",
                stderr_tail=run.log_tail,
            )
        return len(raw)
