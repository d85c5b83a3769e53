"""Local pre-check of a Stone proof with swiftness before any gas is spent.

swiftness (crate ``swiftness`` 1.0.0, the Rust port of Integrity's verifier) is built
once per verifier configuration (layout, hasher, Stone version: cargo features) by
``scripts/install_swiftness.sh`` into ``<root>/<layout>-<hasher>-<version>/bin/swiftness``.
Its CLI is ``swiftness --proof FILE``; on success it exits 0 and prints exactly::

    program hash: 0x<hex>
    program output: [0x<hex>, 0x<hex>, ...]

and on any failure it exits non-zero with ``Error: <Rust debug of the error>`` on stderr
(usage errors exit 2, panics 101). It does not print the security bits: it verifies at
the proof's own ``n_queries * log_n_cosets + proof_of_work_bits``, which we read from the
proof ourselves.

What the pre-check covers, and why it does more than run swiftness:
- swiftness reads the proof's ``annotations`` only, never ``proof_hex``; ``cpu_air_verifier``
  reads ``proof_hex`` only. Integrity's calldata is built from the annotations. So we check
  that every prover-to-verifier annotation equals the bytes of ``proof_hex`` at the offsets
  it names (``check_annotations_match_proof_hex``): together the two verifiers then cover
  the statement that goes on-chain.
- swiftness 1.0.0 discards the result of the inner FRI layers' Merkle decommitment (a
  tampered FRI authentication hash still verifies). ``cpu_air_verifier`` checks those
  paths in ``proof_hex``, which the annotation check binds to the annotations.
- The program hash swiftness prints is the *Pedersen* ``compute_hash_on_elements`` of the
  program words (not Integrity's Poseidon program hash): ``swiftness_program_hash``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from starknet_py.hash.utils import pedersen_hash

from prover.errors import ProverError
from prover.facts import FIELD_PRIME
from prover.program import INTEGRITY_LAYOUTS

SWIFTNESS_VERSION = "1.0.0"
StoneVersion = Literal["stone5", "stone6"]
STONE_VERSIONS: tuple[StoneVersion, ...] = get_args(StoneVersion)

# Layouts with an Integrity verifier; swiftness 1.0.0 implements the same set (FACTS §4).
LAYOUTS = INTEGRITY_LAYOUTS
# Stone's `commitment_hash` parameter -> Integrity's / swiftness' hasher name.
HASHER_BY_COMMITMENT_HASH: Mapping[str, str] = {
    "keccak256_masked160_lsb": "keccak_160_lsb",
    "keccak256_masked248_lsb": "keccak_248_lsb",
    "blake256_masked160_lsb": "blake2s_160_lsb",
    "blake256_masked248_lsb": "blake2s_248_lsb",
}

DEFAULT_TIMEOUT_S = 120.0
_DETAIL_CHARS = 2000  # how much of swiftness' stderr an error keeps

# Stone writes the field elements it sends through the channel (OODS values, last-layer
# coefficients) as plain integers, and the rows of Merkle-committed tables as it stores
# them: in Montgomery form, x * 2^256 mod P.
_MONTGOMERY_R_INV = pow(2**256, -1, FIELD_PRIME)
_TABLE_ROW = re.compile(r"/Decommitment/.*: Row \d+, Column \d+$")
_WORD_BYTES = 32


# --- errors ------------------------------------------------------------------------------


class SwiftnessError(ProverError):
    """The swiftness pre-check did not pass. ``detail`` holds what swiftness printed
    (bounded; it prints no secrets). No transaction may be sent for this proof."""

    code = "swiftness_failed"

    def __init__(
        self,
        message: str,
        *,
        detail: str = "",
        exit_status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.detail = detail[-_DETAIL_CHARS:]
        self.exit_status = exit_status


class SwiftnessBinaryMissingError(SwiftnessError):
    code = "swiftness_missing"


class SwiftnessUnreadableProofError(SwiftnessError):
    code = "proof_unreadable"


class SwiftnessUnsupportedProofError(SwiftnessError):
    code = "proof_unsupported"


class SwiftnessProofRejectedError(SwiftnessError):
    code = "proof_rejected"


class SwiftnessAnnotationMismatchError(SwiftnessProofRejectedError):
    code = "proof_annotations_mismatch"


class SwiftnessTimeoutError(SwiftnessError):
    code = "swiftness_timeout"


class SwiftnessUnreadableOutputError(SwiftnessError):
    code = "swiftness_unreadable_output"


class ProgramHashMismatchError(SwiftnessError):
    code = "program_hash_mismatch"


class OutputMismatchError(SwiftnessError):
    code = "output_mismatch"


class SecurityBitsTooLowError(SwiftnessError):
    code = "security_bits_too_low"


# --- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifierConfig:
    """One swiftness build: the cargo features ``layout,hasher,stone_version``."""

    layout: str
    hasher: str
    stone_version: StoneVersion

    @property
    def name(self) -> str:
        """Directory name of this build under the install root."""
        return f"{self.layout}-{self.hasher}-{self.stone_version}"

    @property
    def build_info(self) -> str:
        """The stamp scripts/install_swiftness.sh writes next to a finished build."""
        return (
            f"swiftness={SWIFTNESS_VERSION} layout={self.layout} hasher={self.hasher} "
            f"stone_version={self.stone_version}"
        )


@dataclass(frozen=True)
class SwiftnessReport:
    """What swiftness printed for a verified proof."""

    program_hash: int  # Pedersen compute_hash_on_elements of the program words
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class SwiftnessResult:
    config: VerifierConfig
    report: SwiftnessReport
    security_bits: int  # what swiftness verified at: the proof's own parameters
    wall_seconds: float


# --- pure parts: the proof -----------------------------------------------------------------


def verifier_config(proof: Mapping[str, Any], stone_version: str) -> VerifierConfig:
    """The swiftness build that can check ``proof``.

    Layout and hasher are in the proof; the Stone version is not (stone5 and stone6 proofs
    look alike), so it is the operator's declaration (``prover.parameter_set``).
    """
    if stone_version not in STONE_VERSIONS:
        raise SwiftnessUnsupportedProofError(
            f"Stone version {stone_version!r} cannot be checked by swiftness: use stone5 or "
            "stone6 (the `keccak` parameter set makes proofs Integrity cannot verify)"
        )
    layout = _path(proof, ("public_input", "layout"))
    if layout not in LAYOUTS:
        raise SwiftnessUnsupportedProofError(
            f"proof layout {layout!r} has no Integrity verifier; known: {', '.join(LAYOUTS)}"
        )
    commitment_hash = _path(proof, ("proof_parameters", "commitment_hash"))
    hasher = HASHER_BY_COMMITMENT_HASH.get(str(commitment_hash))
    if not isinstance(commitment_hash, str) or hasher is None:
        known = ", ".join(HASHER_BY_COMMITMENT_HASH)
        raise SwiftnessUnsupportedProofError(
            f"proof commitment_hash {commitment_hash!r} has no Integrity verifier (known: "
            f"{known}); prove with the stone5/stone6 verifier-friendly parameter set"
        )
    version: StoneVersion = "stone5" if stone_version == "stone5" else "stone6"
    return VerifierConfig(str(layout), hasher, version)


def proof_security_bits(proof: Mapping[str, Any]) -> int:
    """n_queries * log_n_cosets + proof_of_work_bits: the level swiftness verifies at."""
    values = [
        _path(proof, ("proof_parameters", "stark", "fri", "n_queries")),
        _path(proof, ("proof_parameters", "stark", "log_n_cosets")),
        _path(proof, ("proof_parameters", "stark", "fri", "proof_of_work_bits")),
    ]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
        raise SwiftnessUnreadableProofError(
            f"proof_parameters.stark has no usable n_queries / log_n_cosets / "
            f"proof_of_work_bits (got {values}); the proof file is damaged"
        )
    n_queries, log_n_cosets, pow_bits = values
    return int(n_queries * log_n_cosets + pow_bits)


def _path(proof: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    node: Any = proof
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            raise SwiftnessUnreadableProofError(
                f"proof has no {'.'.join(keys)}: it is not a Stone proof JSON (or is damaged)"
            )
        node = node[key]
    return node


_ANNOTATION = re.compile(
    r"P->V\[(?P<start>\d+):(?P<end>\d+)\]: (?P<path>.*): "
    r"(?P<kind>Hash|Data|Field Elements?)\((?P<values>0x[0-9a-f]+(?:, 0x[0-9a-f]+)*)\)"
)


def check_annotations_match_proof_hex(proof: Mapping[str, Any]) -> int:
    """Check that the annotations swiftness verifies are exactly ``proof_hex``.

    Every ``P->V[start:end]`` line must hold the value of those bytes of the proof
    (big-endian; table rows in Stone's Montgomery form, see ``_TABLE_ROW``), the lines
    must tile the proof from byte 0 to its end, and there must be at least one.
    Returns the number of annotations checked.
    """
    raw = _proof_bytes(proof)
    annotations = _path(proof, ("annotations",))
    if not isinstance(annotations, list) or not all(isinstance(a, str) for a in annotations):
        raise SwiftnessUnreadableProofError("proof annotations must be a list of strings")
    cursor = checked = 0
    for number, line in enumerate(annotations):
        if not line.startswith("P->V"):
            continue  # titles and verifier-to-prover randomness carry no proof bytes
        match = _ANNOTATION.fullmatch(line)
        if match is None:
            raise SwiftnessAnnotationMismatchError(
                f"annotation {number} is not in a form this keeper reads: {line[:160]!r}"
            )
        start, end = int(match["start"]), int(match["end"])
        if start != cursor or end <= start or end > len(raw):
            raise SwiftnessAnnotationMismatchError(
                f"annotation {number} covers bytes [{start}:{end}] but the next unannotated "
                f"byte of the {len(raw)}-byte proof is {cursor}: annotations and proof_hex "
                "are not from the same proof"
            )
        montgomery = _TABLE_ROW.search(match["path"]) is not None
        if not _annotation_matches(match["kind"], match["values"], raw[start:end], montgomery):
            raise SwiftnessAnnotationMismatchError(
                f"annotation {number} ({match['path']}) does not match proof_hex bytes "
                f"[{start}:{end}]: the proof was altered after Stone wrote it"
            )
        cursor, checked = end, checked + 1
    if checked == 0 or cursor != len(raw):
        raise SwiftnessAnnotationMismatchError(
            f"annotations cover {cursor} of the {len(raw)} proof bytes: regenerate the proof "
            "with --generate_annotations"
        )
    return checked


def _proof_bytes(proof: Mapping[str, Any]) -> bytes:
    proof_hex = _path(proof, ("proof_hex",))
    if not isinstance(proof_hex, str) or not proof_hex.startswith("0x"):
        raise SwiftnessUnreadableProofError('proof_hex must be a hex string starting with "0x"')
    try:
        return bytes.fromhex(proof_hex[2:])
    except ValueError as exc:
        raise SwiftnessUnreadableProofError(f"proof_hex is not valid hex ({exc})") from exc


def _annotation_matches(kind: str, values_text: str, chunk: bytes, montgomery: bool) -> bool:
    values = [int(v, 16) for v in values_text.split(", ")]
    if kind in ("Hash", "Data"):
        return len(values) == 1 and int.from_bytes(chunk, "big") == values[0]
    if len(chunk) != _WORD_BYTES * len(values):
        return False
    for index, value in enumerate(values):
        word = int.from_bytes(chunk[index * _WORD_BYTES : (index + 1) * _WORD_BYTES], "big")
        if montgomery:
            word = word * _MONTGOMERY_R_INV % FIELD_PRIME if word < FIELD_PRIME else -1
        if word != value:
            return False
    return True


# --- pure parts: swiftness' output and the checks against the trace ------------------------

_FELT = r"0x[0-9a-f]+"
_HASH_LINE = re.compile(rf"program hash: (?P<hash>{_FELT})")
_OUTPUT_LINE = re.compile(rf"program output: \[(?P<values>(?:{_FELT}(?:, {_FELT})*)?)\]")
_ERROR_LINE = re.compile(r"^(?:Error|error): (.*)$", re.MULTILINE)  # anyhow / clap
_PANIC_LINE = re.compile(r"^thread '[^']*' panicked at [^\n]*\n(.*)$", re.MULTILINE)


def parse_swiftness_stdout(stdout: str) -> SwiftnessReport:
    """Parse what swiftness 1.0.0 prints for a verified proof; anything else is an error."""
    lines = stdout.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    hash_match = _HASH_LINE.fullmatch(lines[0]) if len(lines) == 2 else None
    output_match = _OUTPUT_LINE.fullmatch(lines[1]) if len(lines) == 2 else None
    if hash_match is None or output_match is None:
        raise SwiftnessUnreadableOutputError(
            "swiftness exited 0 but printed something other than `program hash: 0x…` and "
            f"`program output: [...]`: {stdout[:300]!r}. Is the binary swiftness "
            f"{SWIFTNESS_VERSION}? Re-run scripts/install_swiftness.sh",
            detail=stdout,
        )
    program_hash = _felt_from_output(hash_match["hash"], stdout)
    values = output_match["values"]
    outputs = tuple(_felt_from_output(v, stdout) for v in values.split(", ")) if values else ()
    return SwiftnessReport(program_hash=program_hash, outputs=outputs)


def _felt_from_output(text: str, stdout: str) -> int:
    value = int(text, 16)
    if value >= FIELD_PRIME:
        raise SwiftnessUnreadableOutputError(
            f"swiftness printed {text}, which is not a field element", detail=stdout
        )
    return value


def rejection_reason(stderr: str) -> str:
    """The line of swiftness' stderr that says why it refused the proof."""
    if match := _ERROR_LINE.search(stderr):
        return match.group(1).strip()[:500]
    if match := _PANIC_LINE.search(stderr):
        return f"panic: {match.group(1).strip()[:500]}"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:500] if lines else "(no message)"


def check_report(
    report: SwiftnessReport,
    *,
    expected_program_hash: int,
    expected_outputs: Sequence[int],
    security_bits: int,
    min_security_bits: int | None = None,
) -> None:
    """The proof is of OUR program with OUR output, at enough security; raises otherwise.

    ``expected_program_hash`` is ``swiftness_program_hash(compiled)`` of the program the
    trace ran; ``expected_outputs`` the trace's public output values.
    """
    if report.program_hash != expected_program_hash:
        raise ProgramHashMismatchError(
            f"the proof is of program {report.program_hash:#x} (Pedersen hash of its program "
            f"words, as swiftness reports it) but the trace's program hashes to "
            f"{expected_program_hash:#x}: the proof is for another program or build. It was "
            "not submitted; trace and prove the current program again"
        )
    expected = tuple(expected_outputs)
    if report.outputs != expected:
        difference = _first_difference(report.outputs, expected)
        raise OutputMismatchError(
            f"the proof's public output differs from the trace's: {difference}. It was not "
            "submitted; prove the job's own trace again"
        )
    if min_security_bits is not None and security_bits < min_security_bits:
        raise SecurityBitsTooLowError(
            f"the proof has {security_bits} security bits (n_queries * log_n_cosets + "
            f"proof_of_work_bits) but at least {min_security_bits} are required: raise "
            "n_queries or proof_of_work_bits and prove again"
        )


def _first_difference(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    for index, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"output[{index}] is {a:#x} in the proof, {b:#x} in the trace"
    return f"the proof has {len(got)} output values, the trace {len(want)}"


def swiftness_program_hash(compiled: Mapping[str, Any]) -> int:
    """The program hash swiftness prints for a proof of this compiled program.

    Pedersen ``compute_hash_on_elements(data)`` = h(...h(h(0, d0), d1)..., len(data)),
    the same as cairo-lang's ``compute_hash_on_elements``; swiftness hashes the program
    words of the public memory, which equal ``compiled["data"]`` for a proof-mode run.
    """
    data = compiled.get("data") if isinstance(compiled, Mapping) else None
    if not isinstance(data, list) or not data:
        raise SwiftnessError(
            'compiled program has no "data" list: pass the JSON cairo-compile wrote',
            code="bad_compiled_program",
        )
    digest = 0
    for index, word in enumerate(data):
        value = int(word, 16) if isinstance(word, str) and word.startswith("0x") else word
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < FIELD_PRIME:
            raise SwiftnessError(
                f'compiled program "data"[{index}] is {word!r}, not a field element',
                code="bad_compiled_program",
            )
        digest = pedersen_hash(digest, value)
    return int(pedersen_hash(digest, len(data)))


# --- the runner ----------------------------------------------------------------------------


def default_install_root() -> Path:
    """Where scripts/install_swiftness.sh installs by default (same rule as the script)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "obsqra-keeper" / "swiftness"


class SwiftnessRunner:
    """Runs the swiftness build matching each proof and checks what it reports."""

    def __init__(
        self, install_root: Path | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._root = install_root if install_root is not None else default_install_root()
        self._timeout_s = timeout_s

    def binary_for(self, config: VerifierConfig) -> Path:
        """The installed build for ``config``; raises when it is absent or not finished."""
        directory = self._root / config.name
        binary = directory / "bin" / "swiftness"
        try:
            stamp = (directory / "BUILD_INFO").read_text(encoding="utf-8").strip()
        except OSError:
            stamp = ""
        if not (binary.is_file() and os.access(binary, os.X_OK)) or stamp != config.build_info:
            raise SwiftnessBinaryMissingError(
                f"swiftness {SWIFTNESS_VERSION} for {config.layout} / {config.hasher} / "
                f"{config.stone_version} is not installed at {binary}: run `make setup` "
                f"(or scripts/install_swiftness.sh "
                f"{config.layout}:{config.hasher}:{config.stone_version})"
            )
        return binary

    async def verify(self, proof_path: Path, *, stone_version: str) -> SwiftnessResult:
        """Check the proof's annotations against proof_hex, then run swiftness on it."""
        # Reading and checking a ~1 MB proof takes tens of ms: keep it off the event loop.
        raw, config, security_bits, binary = await asyncio.to_thread(
            self._inspect, proof_path, stone_version
        )
        # swiftness reads a private copy of the very bytes checked above, so a proof file
        # changed in between cannot pass unchecked.
        with tempfile.TemporaryDirectory(prefix="obsqra-swiftness-") as scratch:
            copy = os.path.join(scratch, "proof.json")
            await asyncio.to_thread(_write_private, copy, raw)
            started = time.monotonic()
            status, stdout, stderr = await self._run(binary, copy)
            wall = time.monotonic() - started
        if status != 0:
            reason = rejection_reason(stderr)
            raise SwiftnessProofRejectedError(
                f"swiftness ({config.name}) rejected the proof (exit status {status}): "
                f"{reason}. No transaction was sent; prove the trace again (and check that "
                f"prover.parameter_set {config.stone_version!r} matches the Stone build)",
                detail=stderr,
                exit_status=status,
            )
        report = parse_swiftness_stdout(stdout)
        return SwiftnessResult(config, report, security_bits, wall)

    def _inspect(
        self, proof_path: Path, stone_version: str
    ) -> tuple[bytes, VerifierConfig, int, Path]:
        raw, proof = _read_proof(proof_path)
        config = verifier_config(proof, stone_version)
        security_bits = proof_security_bits(proof)
        check_annotations_match_proof_hex(proof)
        return raw, config, security_bits, self.binary_for(config)

    async def precheck(
        self,
        proof_path: Path,
        *,
        stone_version: str,
        expected_program_hash: int,
        expected_outputs: Sequence[int],
        min_security_bits: int | None = None,
    ) -> SwiftnessResult:
        """``verify`` and ``check_report`` together: what runs before any gas is spent."""
        result = await self.verify(proof_path, stone_version=stone_version)
        check_report(
            result.report,
            expected_program_hash=expected_program_hash,
            expected_outputs=expected_outputs,
            security_bits=result.security_bits,
            min_security_bits=min_security_bits,
        )
        return result

    async def _run(self, binary: Path, proof_path: str) -> tuple[int, str, str]:
        # A minimal environment: nothing of the keeper's (keys included) reaches the child,
        # and RUST_BACKTRACE=0 keeps Rust's error output to its one-line form.
        env = {"PATH": "/usr/bin:/bin", "RUST_BACKTRACE": "0", "LC_ALL": "C"}
        try:
            proc = await asyncio.create_subprocess_exec(
                str(binary),
                "--proof",
                proof_path,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise SwiftnessBinaryMissingError(
                f"cannot start {binary}: {exc.strerror}. Run `make setup` to rebuild it"
            ) from exc
        try:
            async with asyncio.timeout(self._timeout_s):
                out, err = await proc.communicate()
        except TimeoutError:
            await _kill(proc)
            raise SwiftnessTimeoutError(
                f"swiftness did not finish within {self._timeout_s:g} s and was killed; no "
                "transaction was sent. Check the machine's load, or raise the swiftness timeout"
            ) from None
        except BaseException:  # cancelled: never leave a verifier running behind us
            await _kill(proc)
            raise
        status = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # pgid == pid: started with start_new_session
    await proc.wait()


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _read_proof(proof_path: Path) -> tuple[bytes, dict[str, Any]]:
    try:
        raw = proof_path.read_bytes()
        proof = json.loads(raw)
    except FileNotFoundError as exc:
        raise SwiftnessUnreadableProofError(f"proof file not found: {proof_path}") from exc
    except (OSError, ValueError) as exc:
        raise SwiftnessUnreadableProofError(
            f"proof file {proof_path} is not readable JSON ({exc.__class__.__name__}: {exc})"
        ) from exc
    if not isinstance(proof, dict):
        raise SwiftnessUnreadableProofError(f"proof file {proof_path} is not a JSON object")
    return raw, proof
