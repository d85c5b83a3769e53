"""``obsqra-keeper demo``: the whole product on a local starknet-devnet, in one command.

Starts a devnet (seed 0) on a free port, builds and deploys the contracts with the real
allocation program's hashes, starts ``python -m keeper run`` as its own process group
(dev prover, or Stone when configured), then drives it. The router's fact registry
follows the prover: the dev prover has no proofs, so its router trusts the
DevFactRegistry (verifies nothing; devnet only); Stone's router trusts our IntegrityGuard
over Integrity's real verifier, deployed from its compiled classes, so the real path runs:
Stone proof, swiftness pre-check, the verification transactions through the guard, the
fact, the execution.
The demo drives: the fresh router's first
rebalance, then per further epoch one oracle update (``set_all_metrics``: the whole
protocol set, one protocol changed) plus the owner's ``request_rebalance`` (one multicall
by devnet account 0, the owner and oracle; account 1 is the keeper).
Each interesting keeper log line becomes one progress line. At the end the keeper is
stopped with SIGTERM (it must exit 0) and the on-chain allocations and the cost table
are printed. Every process it started is stopped on any exit, Ctrl-C and SIGTERM
included.

The building blocks (``DemoRun``, ``LogFollower``, ``progress_line``…) are also used by
bench/bench_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TextIO

from keeper.core.errors import KeeperError, ObsqraError, UsageError
from keeper.devnet import deploy as devnet_deploy
from keeper.devnet import integrity as devnet_integrity
from keeper.devnet import node as devnet_node
from keeper.devnet.process import KeeperConfigSpec, KeeperProcess, start_keeper
from prover.stone_tools import locate_stone

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_PARAMS = ROOT / "config" / "deploy.devnet.toml"
BUILD_SCRIPT = ROOT / "scripts" / "build_contracts.sh"
CONTRACTS_DIR = ROOT / "contracts" / "target"
OWNER_INDEX = 0  # deployer, governance owner and RiskEngine oracle
KEEPER_INDEX = 1  # the keeper account and DevFactRegistry registrar
EXIT_INTERRUPTED = 130
PIDS_FILE = "pids.json"

ProverChoice = Literal["dev", "stone", "auto"]
Printer = Callable[[str], None]

_EPOCH_DEADLINE_S = {"dev": 180.0, "stone": 900.0}
_POLL_S = 0.2

# One oracle update per driven epoch, applied in turn (cycled, APY nudged each round so
# that every round changes the inputs). Each keeps the reference model feasible under
# config/deploy.devnet.toml (max_single 5000, min_diversification 2).
METRICS_UPDATES: tuple[tuple[int, Mapping[str, int]], ...] = (
    (
        1,
        {
            "utilization_bps": 9500,
            "volatility_bps": 6000,
            "liquidity_tier": 2,
            "audit_score": 60,
            "age_days": 100,
            "apy_bps": 300,
        },
    ),
    (
        2,
        {
            "utilization_bps": 4000,
            "volatility_bps": 2500,
            "liquidity_tier": 1,
            "audit_score": 88,
            "age_days": 700,
            "apy_bps": 1400,
        },
    ),
    (
        0,
        {
            "utilization_bps": 8000,
            "volatility_bps": 1500,
            "liquidity_tier": 0,
            "audit_score": 92,
            "age_days": 900,
            "apy_bps": 250,
        },
    ),
)


class DemoError(KeeperError):
    """A demo step failed; the message says which and what was seen."""

    code = "demo"


class DemoInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM of the demo (asyncio re-raises a KeyboardInterrupt at once)."""


# ---------------------------------------------------------------------------- pure parts


def metrics_update(round_no: int) -> tuple[int, dict[str, int]]:
    """(protocol index, metrics) of driven round ``round_no`` (0-based)."""
    index, metrics = METRICS_UPDATES[round_no % len(METRICS_UPDATES)]
    values = dict(metrics)
    values["apy_bps"] += 10 * (round_no // len(METRICS_UPDATES))
    return index, values


def with_protocol_replaced(
    inputs: Sequence[int], index: int, metrics: Mapping[str, int]
) -> list[int]:
    """``set_all_metrics`` calldata: RiskEngine's ``get_inputs`` answer (``[n, 6n metric
    fields, 12 model params]``) with protocol ``index`` replaced by ``metrics``."""
    width = len(devnet_deploy.PROTOCOL_FIELDS)
    count = inputs[0]
    if not 0 <= index < count or len(inputs) < 1 + width * count:
        raise DemoError(f"RiskEngine has {count} protocols; the demo updates protocol {index}")
    rows = [list(inputs[1 + width * i : 1 + width * (i + 1)]) for i in range(count)]
    rows[index] = [metrics[name] for name in devnet_deploy.PROTOCOL_FIELDS]
    return [count, *(value for row in rows for value in row)]


@dataclass(frozen=True)
class ProverSetup:
    """What ``--prover`` resolves to: the keeper's policy, Stone's binaries, and the
    router's fact registry ('dev' for the dev prover, 'integrity' for Stone)."""

    policy: str
    stone_prover: Path | None = None
    stone_verifier: Path | None = None
    integrity_classes: Path | None = None

    @property
    def fact_registry(self) -> str:
        return "dev" if self.policy == "dev" else "integrity"


def resolve_prover(choice: ProverChoice, environ: Mapping[str, str]) -> ProverSetup:
    """The setup ``--prover`` asks for.

    Stone counts as configured when ``prover.stone_tools.locate_stone`` finds both
    binaries (the environment's paths, the tools directory `make setup` fills, PATH);
    its facts are registered by Integrity, so the stone path also needs Integrity's
    compiled classes (``keeper.devnet.integrity.classes_dir``). ``auto`` takes Stone
    when both are there, else dev.
    """
    if choice == "dev":
        return ProverSetup("dev")
    stone = locate_stone(environ)
    classes = devnet_integrity.classes_dir(environ)
    if stone is not None and classes is not None:
        return ProverSetup("stone_only", stone.prover, stone.verifier, classes)
    if choice == "auto":
        return ProverSetup("dev")
    if stone is None:
        raise UsageError(
            "--prover stone: no Stone found; `make setup` installs Stone v3 into "
            ".tools/stone (from ../shared/stone/bin or STONE_DIST), or set "
            "KEEPER_PROVER__STONE_PROVER_PATH and KEEPER_PROVER__STONE_VERIFIER_PATH, or put "
            "cpu_air_prover and cpu_air_verifier on PATH (or use --prover dev)"
        )
    raise UsageError(
        "--prover stone: Integrity's compiled classes are absent "
        f"({devnet_integrity.DEFAULT_CLASSES_DIR}; or set {devnet_integrity.CLASSES_ENV}). "
        "Stone's proofs are verified by Integrity's CairoVerifier through our IntegrityGuard, "
        "which the demo deploys on the devnet from those classes (the DevFactRegistry is for the "
        "dev prover only); get them, or use --prover dev"
    )


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 18 else f"{text[:10]}…{text[-6:]}"


def _fee(line: Mapping[str, Any]) -> str:
    from keeper.store.cost_table import format_fee

    fee, unit = line.get("fee"), line.get("unit")
    try:
        return format_fee(int(str(fee)), str(unit))
    except ValueError:
        return f"{fee} {unit}"


def progress_line(line: Mapping[str, Any]) -> str | None:
    """One human line for an interesting keeper log line (JSON), else None."""
    event = str(line.get("event", ""))
    epoch = line.get("epoch")
    who = f"epoch {epoch}: " if epoch is not None else ""
    match event:
        case "keeper.ready":
            return f"keeper ready (prover policy {line.get('policy')})"
        case "event.rebalance_requested":
            return f"{who}rebalance requested on-chain"
        case "job.detected":
            return f"{who}job detected ({line.get('trigger')}: {line.get('reason')})"
        case "job.traced":
            return (
                f"{who}traced the allocation program: {line.get('n_steps')} steps "
                f"in {line.get('seconds')} s"
            )
        case "dev_prover.registering":
            return (
                f"{who}dev prover: registering fact {_short(line.get('fact_hash'))} "
                "(no proof: trusted devnet registry)"
            )
        case "dev_prover.registered":
            return f"{who}fact registered (fee {_fee(line)})"
        case "job.proof_started":
            expected = line.get("expected_s")
            return f"{who}proof started" + (
                f" (recent proofs took ~{expected} s)" if expected is not None else ""
            )
        case "job.proof_progress":
            expected = line.get("expected_s")
            return (
                f"{who}  … {line.get('phase')}: {line.get('elapsed_s')} s"
                + (f" of ~{expected} s expected" if expected is not None else "")
            )
        case "job.prover_chosen":
            return f"{who}prover {line.get('prover')} chosen ({line.get('reason')})"
        case "job.proof_prechecked":
            return (
                f"{who}proof pre-checked by swiftness ({line.get('verifier')}, "
                f"{line.get('security_bits')} bits)"
            )
        case "registrar.step_done":
            return (
                f"{who}Integrity {line.get('function')} step {line.get('step')} "
                f"(fee {_fee({'fee': line.get('fee'), 'unit': 'FRI'})})"
            )
        case "job.fact_registered":
            return f"{who}fact registered (verification {_short(line.get('verification_hash'))})"
        case "job.fact_already_registered":
            return f"{who}fact already registered"
        case "job.submitted":
            return f"{who}execute_allocation sent (tx {_short(line.get('tx_hash'))})"
        case "job.confirmed":
            return f"{who}allocation executed in block {line.get('block')} (fee {_fee(line)})"
        case "job.confirmed_from_chain":
            return f"{who}allocation found executed on-chain"
        case "job.superseded":
            return f"{who}job superseded: {line.get('reason')}"
        case "job.attempt_failed":
            return f"{who}attempt {line.get('attempts')} failed: {line.get('reason')}"
        case "job.failed":
            return f"{who}JOB FAILED: {line.get('reason')}"
        case "keeper.halted":
            return f"KEEPER HALTED: {line.get('reason')}"
        case "keeper.stopped":
            return f"keeper stopped (exit {line.get('exit_code')})"
    if line.get("level") in ("error", "critical"):
        detail = line.get("error") or line.get("reason") or line.get("text") or ""
        return f"keeper error: {event} {detail}".rstrip()
    return None


@dataclass(frozen=True)
class ExecutedAllocation:
    epoch: int
    fact_hash: int
    allocation: tuple[int, ...]
    prover_kind: str


def decode_executed(keys: Sequence[int], data: Sequence[int]) -> ExecutedAllocation:
    """An AllocationExecuted event: keys [selector, epoch]; data [fact, n, alloc…, kind]."""
    count = int(data[1])
    kind = int(data[2 + count])
    text = kind.to_bytes((kind.bit_length() + 7) // 8, "big").decode("ascii", "replace")
    return ExecutedAllocation(
        epoch=int(keys[1]),
        fact_hash=int(data[0]),
        allocation=tuple(int(v) for v in data[2 : 2 + count]),
        prover_kind=text,
    )


# ---------------------------------------------------------------------------- processes


def build_contracts(say: Printer) -> dict[str, devnet_deploy.ContractArtifact]:
    """scripts/build_contracts.sh (a no-op when up to date), then the artifacts."""
    if BUILD_SCRIPT.is_file():
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DemoError(f"building the contracts failed:\n{result.stderr[-3000:]}")
        last = result.stderr.strip().splitlines()[-1:] or ["contracts up to date"]
        say(last[0])
    return devnet_deploy.load_artifacts(CONTRACTS_DIR)


# ---------------------------------------------------------------------------- the run


@dataclass
class DemoRun:
    """One devnet, one deployment and one keeper; the pieces the demo and bench share."""

    work_dir: Path
    say: Printer
    devnet: devnet_node.Devnet | None = None
    deployment: devnet_deploy.Deployment | None = None
    keeper: KeeperProcess | None = None
    config_path: Path | None = None
    keeper_env: dict[str, str] = field(default_factory=dict)
    _stack: ExitStack = field(default_factory=ExitStack)

    # -- set-up ---------------------------------------------------------------------
    def start_devnet(self) -> devnet_node.Devnet:
        self.devnet = self._stack.enter_context(devnet_node.start_devnet(self.work_dir, seed=0))
        self._write_pids()
        self.say(f"devnet up at {self.devnet.url} (pid {self.devnet.pid})")
        return self.devnet

    def deploy(
        self,
        artifacts: Mapping[str, devnet_deploy.ContractArtifact],
        setup: ProverSetup | None = None,
    ) -> None:
        """Deploy with the fact registry ``setup`` needs (default: the dev prover's)."""
        devnet = self._require_devnet()
        setup = setup or ProverSetup("dev")
        params = devnet_deploy.load_deploy_params(DEPLOY_PARAMS)
        program_hash, child_hash = devnet_deploy.default_program_hashes()

        def step(name: str, action: str) -> None:
            if action in ("declared", "deployed"):
                self.say(f"  {action} {name}")

        self.deployment, _ = asyncio.run(
            devnet_deploy.deploy_devnet(
                devnet.url,
                params,
                artifacts,
                self.work_dir / "deployment.json",
                program_hash=program_hash,
                child_program_hash=child_hash,
                on_step=step,
                fact_registry=setup.fact_registry,
                integrity_classes=setup.integrity_classes,
            )
        )
        registry = (
            "DevFactRegistry (trusted)" if setup.fact_registry == "dev"
            else "IntegrityGuard (over Integrity's verifier)"
        )
        self.say(
            f"router {self.deployment.address('StrategyRouterV2'):#x} accepts program "
            f"{program_hash:#x}, facts from {registry} {self.deployment.fact_registry:#x}"
        )

    def start_keeper(
        self, policy: str, stone: tuple[Path | None, Path | None], environ: Mapping[str, str]
    ) -> KeeperProcess:
        devnet, deployment = self._require_devnet(), self._require_deployment()
        account = devnet.accounts[KEEPER_INDEX]
        key_path = self.work_dir / "account_private_key"
        key_path.touch(mode=0o600)
        key_path.chmod(0o600)
        key_path.write_text(hex(account.private_key))
        self.config_path = self.work_dir / "keeper.toml"
        spec = KeeperConfigSpec(
            rpc_url=devnet.url,
            chain_id=deployment.chain_id,
            router=deployment.address("StrategyRouterV2"),
            risk_engine=deployment.address("RiskEngine"),
            account=account.address,
            work_dir=self.work_dir,
            policy=policy,
            stone_prover=stone[0],
            stone_verifier=stone[1],
        )
        self.config_path.write_text("# Written by `obsqra-keeper demo`.\n" + spec.toml())
        self.keeper = start_keeper(
            self.config_path, key_path, self.work_dir / "keeper.log", environ
        )
        self._stack.callback(devnet_node.stop_process_group, self.keeper.process, 10.0)
        self.keeper_env = {"KEEPER_ACCOUNT_PRIVATE_KEY_FILE": str(key_path)}
        self._write_pids()
        self.say(f"keeper started (pid {self.keeper.pid}, policy {policy})")
        return self.keeper

    # -- driving --------------------------------------------------------------------
    async def epoch(self) -> int:
        from starknet_py.net.full_node_client import FullNodeClient

        client = FullNodeClient(node_url=self._require_devnet().url)
        router = self._require_deployment().address("StrategyRouterV2")
        (value,) = await devnet_deploy.call_view(client, router, "get_epoch")
        return value

    async def update_and_request(self, round_no: int) -> tuple[int, dict[str, int], int]:
        """Oracle metrics update + the owner's request_rebalance in one owner multicall.

        The oracle publishes the whole protocol set at once (``set_all_metrics``: the
        RiskEngine has no per-protocol setter), with this round's protocol changed.
        Returns (protocol index, metrics, transaction hash)."""
        index, metrics = metrics_update(round_no)
        current = await self._risk_engine_inputs()
        tx_hash = await self._as_owner(
            [self._set_metrics_call(with_protocol_replaced(current, index, metrics))],
            request=True,
        )
        return index, metrics, tx_hash

    async def nudge_and_maybe_request(self, round_no: int, *, request: bool) -> None:
        """New inputs too close to the current ones to make a rebalance due by drift:
        protocol ``round_no % n``'s APY up by ``round_no + 1`` bps (an oracle snapshot),
        with the owner's ``request_rebalance`` in the same multicall when ``request``."""
        current = await self._risk_engine_inputs()
        width = len(devnet_deploy.PROTOCOL_FIELDS)
        index = round_no % current[0]
        row = current[1 + width * index : 1 + width * (index + 1)]
        metrics = dict(zip(devnet_deploy.PROTOCOL_FIELDS, row, strict=True))
        metrics["apy_bps"] += round_no + 1
        snapshot = with_protocol_replaced(current, index, metrics)
        await self._as_owner([self._set_metrics_call(snapshot)], request=request)

    async def request_rebalance(self) -> None:
        """The owner's ``request_rebalance`` alone."""
        await self._as_owner([], request=True)

    async def _risk_engine_inputs(self) -> list[int]:
        """RiskEngine's ``get_inputs``: ``[n, 6n metric fields, 12 model params]``."""
        from starknet_py.net.full_node_client import FullNodeClient

        client = FullNodeClient(node_url=self._require_devnet().url)
        risk_engine = self._require_deployment().address("RiskEngine")
        return list(await devnet_deploy.call_view(client, risk_engine, "get_inputs"))

    def _set_metrics_call(self, snapshot: list[int]) -> Any:
        risk_engine = self._require_deployment().address("RiskEngine")
        return devnet_deploy.make_call(risk_engine, "set_all_metrics", snapshot)

    async def _as_owner(self, calls: list[Any], *, request: bool) -> int:
        """One owner multicall of ``calls``, then ``request_rebalance`` when ``request``."""
        devnet, deployment = self._require_devnet(), self._require_deployment()
        if request:
            router = deployment.address("StrategyRouterV2")
            calls = [*calls, devnet_deploy.make_call(router, "request_rebalance")]
        owner = devnet_deploy.make_account(
            devnet.url, devnet.accounts[OWNER_INDEX], deployment.chain_id
        )
        tx_hash: int = await devnet_deploy.invoke(owner, calls)
        return tx_hash

    async def wait_for_epoch(self, target: int, deadline_s: float) -> None:
        """Until the router reaches ``target``, printing the keeper's progress meanwhile."""
        keeper = self._require_keeper()
        end = time.monotonic() + deadline_s
        while True:
            self.show_progress()
            if await self.epoch() >= target:
                return
            if keeper.process.poll() is not None:
                self.show_progress()
                raise DemoError(
                    f"the keeper exited ({keeper.process.returncode}) while the demo waited "
                    f"for epoch {target}"
                )
            if time.monotonic() > end:
                raise DemoError(
                    f"the router did not reach epoch {target} within {deadline_s:.0f} s"
                )
            await asyncio.sleep(_POLL_S)

    async def wait_for_confirmed(self, count: int, deadline_s: float) -> None:
        """Until ``count`` jobs are confirmed in the keeper's store (the chain moves
        before the keeper has read the receipt)."""
        end = time.monotonic() + deadline_s
        while self.count_jobs("confirmed") < count:
            self.show_progress()
            if time.monotonic() > end:
                raise DemoError(
                    f"the keeper did not confirm {count} jobs within {deadline_s:.0f} s"
                )
            await asyncio.sleep(_POLL_S)
        self.show_progress()

    def show_progress(self) -> None:
        if self.keeper is None:
            return
        for line in self.keeper.log.poll():
            text = progress_line(line)
            if text is not None:
                self.say(f"  keeper: {text}")

    def count_jobs(self, state: str) -> int:
        rows = self.query("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,))
        return int(rows[0][0]) if rows else 0

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import sqlite3

        store = self.work_dir / "keeper.sqlite3"
        if not store.is_file():
            return []
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(sql, params))
        except sqlite3.OperationalError:
            return []  # schema not created yet
        finally:
            conn.close()

    # -- results --------------------------------------------------------------------
    async def executed(self) -> list[ExecutedAllocation]:
        from starknet_py.hash.selector import get_selector_from_name
        from starknet_py.net.full_node_client import FullNodeClient

        client = FullNodeClient(node_url=self._require_devnet().url)
        chunk = await client.get_events(
            address=self._require_deployment().address("StrategyRouterV2"),
            keys=[[get_selector_from_name("AllocationExecuted")]],
            from_block_number=0,
            to_block_number="latest",
            chunk_size=1000,
        )
        return [decode_executed(e.keys, e.data) for e in chunk.events]

    def cost_table(self) -> list[str]:
        """What ``obsqra-keeper costs`` prints, for this keeper's config and store."""
        from keeper.core.config import load_config
        from keeper.store.cost_table import render
        from keeper.store.db import open_existing_store
        from keeper.store.ledger import Ledger

        cfg = load_config(self.config_path, self.keeper_env)
        with open_existing_store(cfg.store.path) as store:
            report = Ledger(store).report(
                None,
                atlantic_price_per_job_size=cfg.prover.atlantic_price_per_job_size,
            )
        return render(report)

    def stop_keeper(self) -> int:
        keeper = self._require_keeper()
        code = keeper.stop()
        self.show_progress()
        return code

    def close(self) -> None:
        """Stop the keeper's and the devnet's process groups (idempotent)."""
        self._stack.close()

    # -- helpers --------------------------------------------------------------------
    def _write_pids(self) -> None:
        pids = {
            "devnet": None if self.devnet is None else self.devnet.pid,
            "keeper": None if self.keeper is None else self.keeper.pid,
        }
        (self.work_dir / PIDS_FILE).write_text(json.dumps(pids) + "\n")

    def _require_devnet(self) -> devnet_node.Devnet:
        if self.devnet is None:
            raise DemoError("no devnet started")
        return self.devnet

    def _require_deployment(self) -> devnet_deploy.Deployment:
        if self.deployment is None:
            raise DemoError("the contracts are not deployed")
        return self.deployment

    def _require_keeper(self) -> KeeperProcess:
        if self.keeper is None:
            raise DemoError("no keeper started")
        return self.keeper


# ---------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class DemoOptions:
    epochs: int = 3
    prover: ProverChoice = "auto"
    keep_dir: Path | None = None


def _printer(out: TextIO) -> Printer:
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=out, flush=True)

    return say


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise DemoInterrupted wherever the demo is. Our own SIGINT
    handler also keeps asyncio.run from installing its own, which only cancels the main
    task: a cancellation a library swallows (asyncio.wait_for's race) ran the demo on."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise DemoInterrupted()

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _work_dir(keep_dir: Path | None) -> Iterator[Path]:
    if keep_dir is not None:
        keep_dir.mkdir(parents=True, exist_ok=True)
        _clear_previous_run(keep_dir)
        yield keep_dir.resolve()
        return
    path = Path(tempfile.mkdtemp(prefix="obsqra-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _clear_previous_run(work_dir: Path) -> None:
    """A kept dir's earlier run belongs to a devnet that is gone: its store (stream
    cursor, jobs), deployment and logs would mislead this run."""
    for pattern in ("keeper.sqlite3*", "deployment.json*", "keeper.log", "devnet-*.log"):
        for path in work_dir.glob(pattern):
            path.unlink()
    shutil.rmtree(work_dir / "work", ignore_errors=True)


def run_demo(
    options: DemoOptions, *, out: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> int:
    """The demo; 0 on success, 1 on any failure, 130 when interrupted."""
    out = sys.stdout if out is None else out
    if options.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    env = dict(os.environ if environ is None else environ)
    setup = resolve_prover(options.prover, env)
    say = _printer(out)
    with _signals_as_interrupt(), _work_dir(options.keep_dir) as work_dir:
        run = DemoRun(work_dir, say)
        say(f"work dir {work_dir}")
        try:
            _drive(run, options, setup, env, out)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (DemoInterrupted)
            say("interrupted: stopping the keeper and the devnet")
            return EXIT_INTERRUPTED
        except ObsqraError as exc:
            say(f"demo failed: {exc}")
            if run.keeper is not None:
                say("keeper log tail:\n" + run.keeper.log.tail())
            return 1
        finally:
            run.close()
    return 0


def _drive(
    run: DemoRun,
    options: DemoOptions,
    setup: ProverSetup,
    env: Mapping[str, str],
    out: TextIO,
) -> None:
    run.say("starting starknet-devnet (seed 0)")
    run.start_devnet()
    run.say("building the contracts")
    artifacts = build_contracts(run.say)
    if setup.fact_registry == "dev":
        run.say("deploying RiskEngine, DevFactRegistry (trusted: dev prover), StrategyRouterV2")
    else:
        run.say("deploying Integrity (FactRegistry + verifier), RiskEngine, StrategyRouterV2")
    run.deploy(artifacts, setup)
    run.start_keeper(setup.policy, (setup.stone_prover, setup.stone_verifier), env)
    deadline = _EPOCH_DEADLINE_S["dev" if setup.policy == "dev" else "stone"]

    async def drive() -> list[ExecutedAllocation]:
        run.say("epoch 0: a fresh router has no allocation: the keeper rebalances it itself")
        await run.wait_for_epoch(1, deadline)
        await run.wait_for_confirmed(1, deadline)
        for target in range(2, options.epochs + 1):
            index, metrics, _ = await run.update_and_request(target - 2)
            run.say(
                f"epoch {target - 1}: oracle updates protocol {index} "
                f"(utilization {metrics['utilization_bps']} bps, volatility "
                f"{metrics['volatility_bps']} bps, APY {metrics['apy_bps']} bps) and "
                "the owner requests a rebalance"
            )
            await run.wait_for_epoch(target, deadline)
            await run.wait_for_confirmed(target, deadline)
        return await run.executed()

    executed = asyncio.run(drive())
    run.say("stopping the keeper (SIGTERM)")
    code = run.stop_keeper()
    if code != 0:
        raise DemoError(f"the keeper exited {code} on SIGTERM (expected 0)")
    run.say("keeper exited 0")
    lines = ["", "allocations executed on-chain (AllocationExecuted events):"]
    lines += [_allocation_row(e) for e in executed]
    lines += ["", *run.cost_table(), ""]
    print("\n".join(lines), file=out, flush=True)
    count = len(executed)
    run.say(f"demo ok: {count} executed epochs")
    if count < options.epochs:
        raise DemoError(f"only {count} of {options.epochs} epochs executed")


def _allocation_row(e: ExecutedAllocation) -> str:
    bps = ", ".join(f"{v:>5}" for v in e.allocation)
    fact = _short(hex(e.fact_hash))
    return f"  epoch {e.epoch}: [{bps}] bps  ({e.prover_kind} proof, fact {fact})"
