"""``obsqra-keeper run``: the daemon's lifecycle and its main loop.

Start-up gates run in order, each failing with one message that says what to fix: the
store opens, the node answers with the configured chain id, the account's key loads, the
router and RiskEngine answer at the configured addresses, the program hash this keeper
proves is one the router accepts, and the prover prerequisites of the policy are there.
Only then is READY sent to systemd.

Three tasks then run until SIGTERM: the stream (chain → store), the pipeline (store →
policy → jobs → prover → chain) and the watchdog. Proving runs off the event loop (Stone
is a child process, the Cairo VM a thread), so the stream keeps up.

SIGTERM: stop taking work, refuse any new transaction (nothing is ever sent from the
shutdown path), cancel the job step in flight — every finished step is already persisted,
and a cancelled Stone run is killed with its process group — close the stream, exit 0.
SIGHUP: reload the operator config; an invalid one is logged and the old one kept.
A stalled stream exits 75 and an unwritable store 74, so systemd restarts the keeper;
an invalid config exits 78, which it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keeper.chain import (
    ChainClient,
    ChainUnreachableError,
    RouterState,
    SendUncertainError,
    VerifierConfig,
)
from keeper.chain.governance import VERIFICATION_PATHS, GovernanceParams
from keeper.chain.integrity import (
    GuardPin,
    guard_problem,
    known_fact_registry,
    verifier_preset,
)
from keeper.core import faults
from keeper.core.config import KeeperConfig, load_config
from keeper.core.errors import ConfigError, KeeperError, ObsqraError, StoreError
from keeper.core.logs import configure_logging, get_logger
from keeper.devnet.dev_prover import DevProver, is_starknet_devnet
from keeper.engine.ahead import AheadProver
from keeper.engine.funds_guard import FundsGuard
from keeper.engine.policy import (
    Decision,
    PendingGovernance,
    RouterSnapshot,
    accepted_provers,
    decide,
    halt_reason,
)
from keeper.engine.provers import build_proving_policy
from keeper.engine.registrar import IntegrityRegistrar
from keeper.engine.retries import RetryRules, step_backoff_s
from keeper.engine.worker import JobWorker, ProgramIdentity, ProofCheck
from keeper.ops.health import HealthServer, HealthState
from keeper.ops.metrics import KeeperMetrics
from keeper.ops.notify import SystemdNotifier, watchdog_interval
from keeper.store.ahead import AheadStore
from keeper.store.db import Store, open_store
from keeper.store.governance import GovernanceTracker, model_params_changes, model_params_values
from keeper.store.jobs import Job, JobState, JobStore
from keeper.store.ledger import Ledger
from keeper.store.registrations import RegistrationLog
from keeper.stream import (
    EX_TEMPFAIL,
    EventGoneError,
    EventLog,
    StoredEvent,
    StreamError,
    build_source,
    open_event_log,
)
from keeper.stream.events import (
    AllocationExecuted,
    GovernanceChangeApplied,
    GovernanceChangeCancelled,
    GovernanceChangeProposed,
    GovernanceParamsUpdated,
    MetricsUpdated,
    ModelParamsUpdated,
    RebalanceRequested,
)
from prover import facts
from prover.atlantic import AtlanticClient
from prover.errors import InfeasibleAllocation
from prover.model import compute_allocation
from prover.policy import ProofAttempt
from prover.program import DEFAULT_LAYOUT, compiled_program
from prover.settings import POLICY_PROVERS, ProverSettings
from prover.stone import StoneRunner
from prover.stone_tools import describe_generation
from prover.swiftness import SwiftnessError, SwiftnessRunner, swiftness_program_hash
from prover.swiftness import VerifierConfig as SwiftnessBuild

_log = get_logger("keeper.engine.daemon")
# Integrity's stone5/stone6 parameter sets commit with keccak256_masked160_lsb.
_STONE_HASHER = "keccak_160_lsb"

EX_SOFTWARE = 70
# A job step that failed with one of these got no answer from the node.
_NODE_SILENT_CODES = frozenset({ChainUnreachableError.code, SendUncertainError.code})
SHUTDOWN_BOUND_S = 30.0  # TimeoutStopSec in the unit leaves room above this
_EVENT_BATCH = 200


class GateError(KeeperError):
    """A start-up gate failed; the message says which and what to do."""

    code = "startup_gate"


def program_identity(cache_dir: Path | None = None) -> ProgramIdentity:
    compiled = compiled_program(cache_dir)
    return ProgramIdentity(
        compiled=compiled,
        program_hash=facts.program_hash(compiled),
        child_program_hash=facts.pedersen_program_hash_chain(compiled),
        swiftness_program_hash=swiftness_program_hash(compiled),
    )


class Keeper:
    def __init__(
        self,
        cfg: KeeperConfig,
        *,
        environ: Mapping[str, str],
        config_path: Path | None,
    ) -> None:
        self.cfg = cfg
        self._environ = environ
        self._config_path = config_path
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self.notifier = SystemdNotifier(environ)
        self.metrics = KeeperMetrics()
        self.health = HealthState()
        self._halted: str | None = None
        self._atlantic: AtlanticClient | None = None
        # Atlantic's facts are not trusted (issue 18): its policies prove with Stone only.
        self._atlantic_closed = False
        self._proving_bits: int | None = None
        self._ahead_settings: ProverSettings | None = None
        self._ahead_store: AheadStore
        self._last_attempt: dict[str, bool] = {}  # prover -> did its last attempt succeed
        self._node_down_since: float | None = None
        # Who got no answer from the node ("stream", "pipeline"), since when (Unix time).
        self._node_silent_since: dict[str, float] = {}
        self._waiting_for: object = None  # the pending change a due rebalance waits for
        self.funds: FundsGuard | None = None  # set by start(): the account's STRK
        self._router = int(cfg.chain.router_address, 16)
        # Set by start():
        self.store: Store
        self.chain: ChainClient
        self.jobs: JobStore
        self.worker: JobWorker
        self.event_log: EventLog
        self.governance: GovernanceTracker
        self.program: ProgramIdentity

    # ------------------------------------------------------------------ start-up gates
    async def start(self) -> None:
        cfg = self.cfg
        self.notifier.status("opening the store")
        self.store = open_store(cfg.store.path)
        self.jobs = JobStore(self.store)
        ledger = Ledger(self.store)
        self.governance = GovernanceTracker(self.store)

        self.notifier.status("checking the node")
        self.chain = ChainClient(cfg.chain, cfg.secrets)  # loads the key: gate "can sign"
        info = await self.chain.check_chain()
        _log.info(
            "gate.chain", chain=info.chain_name, spec=info.spec_version, block=info.block_number
        )
        if self._environ.get(faults.ENV):
            on_devnet = await is_starknet_devnet(cfg.chain.rpc_url)
            faults.arm(self._environ, chain_id=info.chain_name, on_devnet=on_devnet)

        self.notifier.status("reading the contracts")
        try:
            inputs, state = await self.chain.allocation_inputs()
        except KeeperError as exc:
            raise GateError(
                f"the router {cfg.chain.router_address} or RiskEngine "
                f"{cfg.chain.risk_engine_address} does not answer as expected: {exc}"
            ) from exc
        if not await self.chain.is_keeper():
            raise GateError(
                f"account {cfg.chain.account_address} is not a keeper of router "
                f"{cfg.chain.router_address}: ask governance to propose_change('keeper', "
                f"{cfg.chain.account_address}, [1]) and apply it after the timelock delay"
            )

        self.notifier.status("compiling the allocation program")
        self.program = await asyncio.to_thread(program_identity)

        dev_prover = await self._dev_prover()
        self.worker = JobWorker(
            jobs=self.jobs,
            ledger=ledger,
            chain=self.chain,
            dev_prover=dev_prover,
            program=self.program,
            work_dir=cfg.prover.work_dir or cfg.store.path.parent / "work",
            dev_security_bits=cfg.prover.dev_security_bits,
            metrics=self.metrics,
            retry=RetryRules(
                step_window_s=cfg.stream.stall_deadline_s,
                cooldown_s=cfg.jobs.retry_cooldown_s,
                cooldown_max_s=cfg.jobs.retry_cooldown_max_s,
                max_paid_failures=cfg.jobs.max_paid_failures,
            ),
            receipt_timeout_s=cfg.chain.receipt_timeout_s,
            fact_wait_s=cfg.prover.atlantic_deadline_s,
        )
        await self._set_up_fact_registration(info.chain_name, state.governance, ledger)
        await self._set_up_funds(ledger)
        self._ahead_store = AheadStore(self.store, ledger)
        for stopped in self._ahead_store.interrupted():
            _log.info("ahead.proof_discarded", proof_id=stopped.id, epoch=stopped.epoch,
                      reason=stopped.reason)
            self.metrics.ahead_proof("discarded", stopped.cpu_s)
        await self._rebuild_proving(state.governance.min_security_bits)
        self._apply_governance(state)

        self.governance.record_initial("router", state.governance.as_dict(), state.block_number)
        self.governance.record_initial(
            "risk_engine", model_params_values(inputs.params), state.block_number
        )

        def on_rollback(db: Any, block_number: int) -> None:
            self.jobs.rollback_after_block(db, block_number)
            self.governance.on_stream_rollback(db, block_number)

        self.event_log = open_event_log(
            self.store, cfg, on_rollback, on_quarantine=self.metrics.event_quarantined
        )

    async def _dev_prover(self) -> DevProver | None:
        """The devnet's trusted registrar, for the dev policy only (it registers facts of
        proofs that do not exist). Never available on any other chain: a start-up gate."""
        if self.cfg.prover.policy != "dev":
            return None
        dev = DevProver(self.chain)
        await dev.ensure_devnet()  # refuses with a message
        _log.warning("keeper.devnet_registrar", note="dev policy: DevFactRegistry, no proofs")
        return dev

    async def _set_up_fact_registration(
        self, chain_name: str, gov: GovernanceParams, ledger: Ledger
    ) -> None:
        """Gates of the real path: the router's registry is our IntegrityGuard, pinned like
        the router and driving Integrity's verifier of this chain (Integrity's own
        FactRegistry labels can be forged: issue 18; Atlantic registers there, so its
        bootloaded facts are not used); for Stone: proofs Integrity can verify, swiftness to
        check them first, and the registrar that sends the verification."""
        cfg = self.cfg
        if cfg.prover.policy == "dev":
            return
        known = None if await is_starknet_devnet(cfg.chain.rpc_url) else known_fact_registry(
            chain_name
        )
        await self._check_guard(gov, known)
        if "stone" not in POLICY_PROVERS[cfg.prover.policy]:
            raise GateError(
                f"prover.policy = {cfg.prover.policy!r} proves with Atlantic only, whose facts "
                "are registered in Integrity's public FactRegistry under a label anyone can "
                "forge (issue 18): the router trusts its IntegrityGuard, which records none of "
                "them. Use stone_only (Stone proofs verified through the guard)"
            )
        if "atlantic" in POLICY_PROVERS[cfg.prover.policy]:
            _log.warning(
                "gate.atlantic_closed",
                policy=cfg.prover.policy,
                note="Atlantic's facts live in Integrity's forgeable registry; proving with "
                "Stone only",
            )
            self._atlantic_closed = True
        stone_version = cfg.prover.parameter_set
        if stone_version not in ("stone5", "stone6"):
            raise GateError(
                f"prover.parameter_set = {stone_version!r} makes proofs Integrity cannot "
                "verify on-chain: use stone6 (or stone5) with a 2024 Stone build"
            )
        self._stone_gate()
        pin = gov.direct_pin
        if pin is not None:
            await self._check_verifier(gov.fact_registry, pin)
        runner = SwiftnessRunner()
        build = SwiftnessBuild(DEFAULT_LAYOUT, _STONE_HASHER, stone_version)
        try:
            runner.binary_for(build)
        except SwiftnessError as exc:
            raise GateError(f"the local proof check is not installed: {exc}") from exc
        self.worker.swiftness = ProofCheck(runner, stone_version)
        self.worker.registrar = IntegrityRegistrar(
            chain=self.chain,
            jobs=self.jobs,
            log=RegistrationLog(self.store),
            record_fee=lambda job, outcome: self.worker.record_fee(
                job, "fact_registration", outcome
            ),
            max_calldata_felts=cfg.chain.max_calldata_felts,
            receipt_timeout_s=cfg.chain.receipt_timeout_s,
            flow=cfg.chain.integrity_flow,
        )

    def _stone_gate(self) -> None:
        """Name the Stone this keeper will run (path, build, parameter set); stone_only
        without one cannot prove anything: refuse to start."""
        p = self.cfg.prover
        if p.stone_prover_path is None:
            if p.policy == "stone_only":
                raise GateError(
                    "prover.policy = 'stone_only' but no Stone was found (prover."
                    "stone_prover_path, .tools/stone, PATH): run `make setup`, which installs "
                    "Stone v3, or set prover.stone_prover_path"
                )
            _log.warning("gate.stone", stone=None, note="no Stone found: Atlantic proves alone")
            return
        build = p.stone_build
        _log.info(
            "gate.stone",
            prover=str(p.stone_prover_path),
            verifier=str(p.stone_verifier_path),
            generation=build.generation if build else describe_generation(p.stone_prover_path),
            found_in=build.source if build else "config",
            parameter_set=p.parameter_set,
        )

    async def _set_up_funds(self, ledger: Ledger) -> None:
        """The account's STRK: read now, watched from the loop, and a gate before every
        transaction of a job (keeper.engine.funds_guard)."""
        self.funds = FundsGuard(
            chain=self.chain,
            jobs=self.jobs,
            ledger=ledger,
            config=self.cfg.funds,
            margin=self.cfg.chain.fee_multiplier,
            metrics=self.metrics,
            health=self.health,
        )
        self.worker.funds = self.funds
        if self.worker.registrar is not None:
            self.worker.registrar.funds_gate = self.funds.hold
        await self.funds.refresh()

    async def _check_guard(self, gov: GovernanceParams, known_registry: int | None) -> None:
        """The router's fact_registry answers as an IntegrityGuard, with the router's
        direct pin and, on a public chain, Integrity's verifier for that pin."""
        guard = gov.fact_registry
        try:
            pin = GuardPin.from_felts(await self.chain.call_view(guard, "get_pin"))
        except (KeeperError, ValueError) as exc:
            raise GateError(
                f"the router's fact_registry {guard:#x} is not an IntegrityGuard ({exc}). "
                "Integrity's FactRegistry labels a verification with the configuration its "
                "caller named, which anyone can forge (issue 18): deploy the guard "
                "(obsqra-keeper deploy) and ask governance to propose fact_registry = guard"
            ) from exc
        direct = gov.direct_pin
        expected = None
        if known_registry is not None and direct is not None:
            preset = verifier_preset(direct.layout, direct.hasher)
            try:
                (verifier,) = await self.chain.call_view(
                    known_registry, "get_verifier_address", preset
                )
            except KeeperError as exc:
                raise GateError(
                    f"Integrity's FactRegistry {known_registry:#x} has no verifier for the "
                    f"router's direct pin ({direct.layout}, {direct.hasher}) ({exc}): no guard "
                    "could verify our proofs here; ask governance to pin a configuration "
                    "Integrity serves"
                ) from exc
            expected = int(verifier)
        problem = guard_problem(
            guard,
            pin,
            direct_pin=None if direct is None else (
                direct.layout, direct.hasher, direct.stone_version, direct.memory_verification
            ),
            expected_verifier=expected,
        )
        if problem is not None:
            raise GateError(problem)
        _log.info("gate.guard", guard=hex(guard), verifier=hex(pin.verifier), config=pin.config)

    async def _check_verifier(self, registry: int, pin: VerifierConfig) -> None:
        try:
            (verifier,) = await self.chain.call_view(
                registry, "get_verifier_address", verifier_preset(pin.layout, pin.hasher)
            )
        except (KeeperError, ValueError) as exc:
            raise GateError(
                f"the router's IntegrityGuard {registry:#x} has no Integrity verifier for "
                f"({pin.layout}, {pin.hasher}) ({exc}): ask governance to pin the guard to "
                "the router's direct configuration"
            ) from exc
        _log.info("gate.integrity", registry=hex(registry), verifier=hex(int(verifier)))

    async def _rebuild_proving(self, min_security_bits: int) -> None:
        """(Re)build the stone/atlantic policy for the router's current minimum bits.
        dev needs none: the worker registers the fact itself."""
        if self._atlantic is not None:
            await self._atlantic.aclose()
            self._atlantic = None
        if self.cfg.prover.policy == "dev":
            self.worker.proving = None
            await self._rebuild_ahead(None, min_security_bits)  # no Stone: none made ahead
            return
        settings = self.cfg.prover.runtime(
            self.cfg.secrets, required_security_bits=min_security_bits
        )
        previous = self.worker.proving
        self.worker.proving, self._atlantic = build_proving_policy(
            settings,
            on_attempt=self._on_proof_attempt,
            atlantic_credit=None if previous is None else previous.atlantic_credit,
        )
        self._proving_bits = min_security_bits
        await self._rebuild_ahead(settings, min_security_bits)

    async def _rebuild_ahead(
        self, settings: ProverSettings | None, min_security_bits: int
    ) -> None:
        """The prover of proofs made ahead (jobs.prove_ahead), for these Stone settings and
        bits (None: the dev policy, no Stone); proofs made under other ones are discarded
        (the router would refuse them, or they are not what a job would prove now)."""
        ahead_settings = (
            None
            if settings is None
            else settings.model_copy(update={"niceness": self.cfg.jobs.prove_ahead_niceness})
        )
        wanted = (
            ahead_settings is not None
            and self.cfg.jobs.prove_ahead
            and self.cfg.prover.policy != "atlantic_only"
            and ahead_settings.stone_prover_path is not None
            and ahead_settings.stone_verifier_path is not None
        )
        current = self.worker.ahead
        if current is not None and wanted and self._ahead_settings == ahead_settings:
            return
        if current is not None:
            await current.discard_all("the prover settings or the router's minimum bits changed")
        self.worker.ahead = None
        self._ahead_settings = ahead_settings
        if not wanted or ahead_settings is None:
            return
        self.worker.ahead = AheadProver(
            store=self._ahead_store,
            router=self._router,
            program_hash=self.program.program_hash,
            stone=StoneRunner(ahead_settings),
            min_security_bits=min_security_bits,
            work_dir=self.cfg.prover.work_dir or self.cfg.store.path.parent / "work",
            precheck=self.worker.precheck,
            metrics=self.metrics,
        )

    # ------------------------------------------------------------------ governance
    def _apply_governance(self, state: RouterState) -> None:
        gov = state.governance
        ours, child, policy = (
            self.program.program_hash,
            self.program.child_program_hash,
            self.cfg.prover.policy,
        )
        if self._atlantic_closed:
            policy = "stone_only"
        self.worker.accepted = accepted_provers(
            gov, program_hash=ours, child_program_hash=child, policy=policy
        )
        reason = halt_reason(gov, program_hash=ours, child_program_hash=child, policy=policy)
        if reason != self._halted:
            if reason:
                _log.error("keeper.halted", reason=reason)
                self.notifier.status(f"halted: {reason}")
            elif self._halted:
                _log.info("keeper.resumed", reason="the router accepts our program again")
        self._halted = reason
        self.health.fatal = reason

    # ------------------------------------------------------------------ the pipeline
    def _consume_events(self) -> bool:
        """Apply every pending stream event with its effects, one transaction each."""
        refresh = False
        for stored in self.event_log.next_unprocessed(_EVENT_BATCH):
            try:
                with self.store.transaction() as db:
                    refresh |= self._apply_event(db, stored)
                    self.event_log.mark_processed(stored.id)
            except EventGoneError:
                continue  # rolled back meanwhile: its effects were undone with it
            self.metrics.event_ingested(type(stored.event).__name__)
            self.health.last_event_at = time.time()
        return refresh

    def _apply_event(self, db: Any, stored: StoredEvent) -> bool:
        event = stored.event
        block, tx = event.meta.block_number, event.meta.tx_hash
        if isinstance(event, RebalanceRequested):
            # Only the owner's request lifts the router's schedule; _decide reads it with the
            # router's state (is_rebalance_requested). A keeper's request is a signal to look.
            _log.info("event.rebalance_requested", epoch=event.epoch, by_owner=event.by_owner)
            return True
        if isinstance(
            event, GovernanceChangeProposed | GovernanceChangeCancelled | GovernanceChangeApplied
        ):
            status = {
                GovernanceChangeProposed: "proposed",
                GovernanceChangeCancelled: "cancelled",
                GovernanceChangeApplied: "applied",
            }[type(event)]
            self.governance.apply_proposal_event(
                db, status, event.param, event.subject, event.values, event.eta,
                block, tx, stored.id, contract=event.contract,
            )
            _log.info(
                f"event.governance_change_{status}",
                contract=event.contract,
                param=event.param,
                subject=hex(event.subject),
                values=[hex(v) for v in event.values],
                eta=event.eta,
            )
            return True
        if isinstance(event, GovernanceParamsUpdated):
            self.governance.apply_event(
                db, event.contract, event.param, event.old_value, event.new_value, block, tx,
                stored.id,
            )
            _log.info(
                "event.governance",
                contract=event.contract,
                param=event.param,
                old=event.old_value,
                new=event.new_value,
            )
            return True
        if isinstance(event, ModelParamsUpdated):
            for param, old, new in model_params_changes(event.old_params, event.new_params):
                self.governance.apply_event(
                    db, "risk_engine", param, old, new, block, tx, stored.id
                )
            return True
        return isinstance(event, MetricsUpdated | AllocationExecuted)

    async def _decide(self) -> None:
        """Interval and drift triggers, on the chain's state and the chain's clock."""
        inputs, state = await self.chain.allocation_inputs()
        self._record_lag(state.block_number)
        self._record_provers()
        self._apply_governance(state)
        if (
            state.governance.min_security_bits != self._proving_bits
            and self.cfg.prover.policy != "dev"
        ):
            await self._rebuild_proving(state.governance.min_security_bits)
        self._run_failed_job_again(state.epoch)
        if self._halted:
            return
        try:
            model = compute_allocation(inputs).allocation
        except InfeasibleAllocation:
            model = None
        now = await self.chain.latest_block_timestamp()
        snapshot = RouterSnapshot(
            epoch=state.epoch,
            allocation=state.allocation,
            last_execution_ts=state.last_execution_timestamp,
            governance=state.governance,
        )
        open_epochs = self.jobs.open_epochs(self._router)
        decision = decide(
            snapshot,
            now=now,
            requested=state.rebalance_requested,
            model_allocation=model,
            open_job_epochs=open_epochs,
        )
        self.health.waiting_for_governance = None  # set again below while still held back
        if decision.due:
            decision = await self._decide_with_pending_changes(
                snapshot, decision, now, model, inputs.params.as_list()
            )
        self.metrics.waiting_for_governance(self.health.waiting_for_governance is not None)
        if decision.due and decision.trigger is not None:
            job = self.jobs.create(self._router, state.epoch, decision.trigger)
            if job is not None:
                _log.info(
                    "job.detected",
                    epoch=state.epoch,
                    trigger=decision.trigger,
                    reason=decision.reason,
                )
        elif (
            self.worker.ahead is not None
            and model is not None
            and self._proves_ahead(state.epoch, open_epochs)
        ):
            await self.worker.ahead.consider(state.epoch, inputs)

    def _proves_ahead(self, epoch: int, open_epochs: frozenset[int]) -> bool:
        """Whether to make the coming rebalance's proof now (a prover for it is set up):
        the router accepts Stone's proofs of our program, and no job of the epoch is open
        (an open job proves for itself)."""
        accepted = self.worker.accepted
        return accepted is not None and accepted.accepts("stone") and epoch not in open_epochs

    async def _decide_with_pending_changes(
        self,
        snapshot: RouterSnapshot,
        due: Decision,
        now: int,
        model: tuple[int, ...] | None,
        model_params: list[int],
    ) -> Decision:
        """``due`` again, unless a pending governance change holds it back. The router's
        and RiskEngine's pending changes are read (one view per parameter) only when a
        job would start; ``model_params``: RiskEngine's in force."""
        accepted = self.worker.accepted
        pending = PendingGovernance(
            changes=tuple(await self.chain.pending_changes()),
            margin_s=self.cfg.jobs.pending_change_margin_s,
            keeper=self.chain.account_address,
            proof_paths=accepted.paths if accepted else frozenset(VERIFICATION_PATHS),
            model_params=tuple(model_params),
        )
        decision = decide(
            snapshot,
            now=now,
            requested=due.trigger == "request",
            model_allocation=model,
            open_job_epochs=frozenset(),
            pending=pending,
        )
        if decision.waiting_for != self._waiting_for and decision.waiting_for is not None:
            _log.info("job.waiting_for_governance", epoch=snapshot.epoch, reason=decision.reason)
        self._waiting_for = decision.waiting_for
        self.health.waiting_for_governance = (
            None if decision.waiting_for is None else decision.reason
        )
        return decision

    def _run_failed_job_again(self, epoch: int) -> None:
        """The current epoch's failed job runs again once its cool-down has passed; a
        parked one waits for the operator. Either way /healthz says so."""
        job = self.jobs.for_epoch(self._router, epoch)
        problems: list[str] = []
        if job is not None and job.state == JobState.FAILED:
            now = datetime.now(UTC)
            if job.retry_after is None:
                problems.append(
                    f"epoch {epoch} is parked after run {job.run} ({job.failure_code}: "
                    f"{job.failure_reason}); after fixing the cause run "
                    f"`obsqra-keeper jobs retry {epoch}`"
                )
            elif datetime.fromisoformat(job.retry_after) <= now:
                self.jobs.reopen(job, f"cool-down over after {job.failure_code}")
                _log.info("job.reopened", epoch=epoch, run=job.run + 1)
            else:
                problems.append(
                    f"epoch {epoch} failed (run {job.run}: {job.failure_code}); it runs again "
                    f"at {job.retry_after}"
                )
        self.health.job_problems = problems
        self.metrics.jobs_parked(sum(1 for p in problems if "parked" in p))
        self.metrics.jobs_failing(sum(1 for p in problems if "parked" not in p))

    async def _decide_tolerating_outages(self) -> bool:
        """``_decide``, riding out a node that is briefly unreachable: a keeper that exits
        on every RPC blip restart-loops into systemd's start limit. Past the stream's stall
        deadline the outage is fatal (exit non-zero, systemd restarts us). True when done."""
        try:
            await self._decide()
        except ChainUnreachableError as exc:
            now = time.monotonic()
            if self._node_down_since is None:
                self._node_down_since = now
            self._node_silent("pipeline")
            down_s = now - self._node_down_since
            if down_s > self.cfg.stream.stall_deadline_s:
                raise
            _log.warning("keeper.node_unreachable", error=str(exc), down_s=round(down_s, 1))
            return False
        self._node_down_since = None
        self._node_answered("pipeline")
        return True

    def _node_silent(self, who: str) -> None:
        """``who`` got no answer from the node: /healthz is degraded from the first such
        report until each reporter has heard from the node again. Whoever is waiting on
        the node notices first (a job step, ``_decide`` or the stream, each after its own
        timeout), so all of them report."""
        self._node_silent_since.setdefault(who, time.time())
        self.health.node_unreachable_since = min(self._node_silent_since.values())

    def _node_answered(self, who: str) -> None:
        self._node_silent_since.pop(who, None)
        self.health.node_unreachable_since = min(self._node_silent_since.values(), default=None)

    async def _work(self) -> float | None:
        """One step of the oldest open job. Returns how long to wait before the next
        step: 0 when the job moved on, a growing backoff after a failed attempt, None
        when there is nothing to do (the loop then waits for events or the poll)."""
        if self._halted:
            return None
        open_jobs = self.jobs.open_jobs()
        if not open_jobs:
            return None
        job = open_jobs[0]
        after = await self.worker.step(job)
        if self.funds is not None:
            self.funds.settle(after)
        if _attempt_failed(job, after) and after.failure_code in _NODE_SILENT_CODES:
            self._node_silent("pipeline")  # answered again: the next _decide says so
        self.metrics.job_state_counts(self.jobs.counts_by_state())
        if after.state.value == "confirmed":
            self.health.last_successful_job_at = time.time()
            self.metrics.job_succeeded(time.time())
            due_at = datetime.fromisoformat(after.created_at)
            self.metrics.due_to_executed(max((datetime.now(UTC) - due_at).total_seconds(), 0.0))
        if after.state != job.state:
            return 0.0
        if after.attempts > job.attempts:
            return step_backoff_s(after.attempts, self.cfg.stream.poll_interval_s)
        return None

    async def pipeline(self) -> None:
        poll = self.cfg.stream.poll_interval_s
        refresh = True
        while not self._stop.is_set():
            if self.funds is not None:
                await self.funds.maybe_refresh()  # after each paid transaction, and when due
            refresh |= self._consume_events()
            if refresh:
                refresh = not await self._decide_tolerating_outages()
            delay = await self._work()
            if delay == 0.0:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                # After a failed attempt, new events do not cut the backoff short.
                waiter = self._stop.wait() if delay is not None else self._wake.wait()
                await asyncio.wait_for(waiter, timeout=delay if delay is not None else poll)
            refresh = True  # time passes: the interval trigger must be looked at again

    async def watchdog(self) -> None:
        interval = watchdog_interval(self._environ)
        if interval is None:  # no WatchdogSec: nothing to ping, but stay until stopped
            await self._stop.wait()
            return
        while not self._stop.is_set():
            self.notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)

    def _on_proof_attempt(self, attempt: ProofAttempt) -> None:
        if attempt.outcome != "skipped":
            self._last_attempt[attempt.prover] = attempt.outcome == "ok"
        self.worker.on_proof_attempt(attempt)

    # ------------------------------------------------------------------ health
    def stream_progress(self, what: str) -> None:
        """The stream's report. ``error`` is a poll the node did not answer (or answered
        with an error): no progress, and the node is silent. Anything else is progress."""
        if what == "error":
            self._node_silent("stream")
            return
        self.health.last_stream_progress_at = time.time()
        self.metrics.stream_progressed(self.health.last_stream_progress_at)
        self._node_answered("stream")

    def _record_lag(self, head_block: int) -> None:
        cursor = self.event_log.cursor()
        if cursor is not None:
            lag = max(0, head_block - cursor.block_number)
            self.health.stream_lag_blocks = lag
            self.metrics.stream_lag(lag)

    def _record_provers(self) -> None:
        """Which provers could run now (configured, and not failing their last attempt)."""
        policy = self.cfg.prover.policy
        available: dict[str, bool] = {}
        provers = POLICY_PROVERS[policy]
        if "dev" in provers:
            available["dev"] = True
        if "stone" in provers:
            p = self.cfg.prover
            configured = all(
                path is not None and path.is_file() and os.access(path, os.X_OK)
                for path in (p.stone_prover_path, p.stone_verifier_path)
            )
            available["stone"] = configured and self._last_attempt.get("stone", True)
        if "atlantic" in provers:
            proving = self.worker.proving
            available["atlantic"] = self._atlantic is not None and (
                proving is None or proving.atlantic_allows()
            )
        for name, up in available.items():
            self.metrics.prover_available(name, up)
        self.health.provers = available
        credit = self.worker.proving.atlantic_credit_status() if self.worker.proving else None
        out = credit is not None and credit.out_of_credit
        self.metrics.atlantic_out_of_credit(out)
        self.health.atlantic_out_of_credit = (
            f"Atlantic is out of credit since {credit.since}: top up the Herodotus Cloud "
            f"project ({credit.detail})"
            if credit is not None and out
            else None
        )

    # ------------------------------------------------------------------ signals
    def request_stop(self, reason: str = "SIGTERM") -> None:
        if not self._stop.is_set():
            _log.info("keeper.stopping", reason=reason)
            self.notifier.stopping("stopping: finishing nothing new, checkpointing")
            self.chain.close_for_shutdown()  # first: nothing is sent from here on
            self._stop.set()
            self._wake.set()

    def reload(self) -> None:
        asyncio.get_running_loop().create_task(self._reload(), name="reload")

    async def _reload(self) -> None:
        self.notifier.reloading("reloading config")
        try:
            new = load_config(self._config_path, self._environ)
        except ConfigError as exc:
            _log.error(
                "config.reload_rejected",
                problems=exc.problems,
                note="keeping the running configuration",
            )
            self.notifier.ready("running (config reload rejected)")
            return
        unchangeable = [
            name
            for name in ("chain", "store", "stream", "funds")
            if getattr(new, name) != getattr(self.cfg, name)
        ]
        configure_logging(level=new.log.level, fmt=new.log.format, secrets=new.secrets.values())
        self.cfg = replace_prover(self.cfg, new)
        await self._rebuild_proving(self._proving_bits or 0)
        if unchangeable:
            _log.warning(
                "config.reload_partial",
                needs_restart=unchangeable,
                note="these sections take effect at the next restart",
            )
        _log.info("config.reloaded")
        self.notifier.ready("running (config reloaded)")


def _attempt_failed(before: Job, after: Job) -> bool:
    """Did the step from ``before`` to ``after`` record a failed attempt?"""
    return after.attempts > (before.attempts if after.state == before.state else 0)


def replace_prover(old: KeeperConfig, new: KeeperConfig) -> KeeperConfig:
    """The running config with the sections a reload may change live."""
    return old.model_copy(update={"prover": new.prover, "log": new.log, "secrets": new.secrets})


async def run_keeper(
    cfg: KeeperConfig, environ: Mapping[str, str], config_path: Path | None
) -> int:
    keeper = Keeper(cfg, environ=environ, config_path=config_path)
    loop = asyncio.get_running_loop()
    try:
        await keeper.start()
    except ObsqraError as exc:
        keeper.notifier.status(f"start-up failed: {exc}")
        raise
    loop.add_signal_handler(signal.SIGTERM, keeper.request_stop)
    loop.add_signal_handler(signal.SIGINT, keeper.request_stop)
    loop.add_signal_handler(signal.SIGHUP, keeper.reload)

    source = build_source(cfg, keeper.event_log, keeper.stream_progress)
    keeper.health.stream = keeper.event_log.position  # /healthz and /metrics show it
    tasks = {
        asyncio.create_task(source.run(), name="stream"),
        asyncio.create_task(keeper.pipeline(), name="pipeline"),
        asyncio.create_task(keeper.watchdog(), name="watchdog"),
    }
    stop_waiter = asyncio.create_task(keeper._stop.wait(), name="stop")
    health_cm = (
        HealthServer.from_config(
            cfg.health, keeper.health, keeper.metrics, stall_deadline_s=cfg.stream.stall_deadline_s
        )
        if cfg.health.enabled
        else contextlib.nullcontext()
    )
    exit_code = 0
    async with health_cm:
        keeper.notifier.ready(f"running: router {cfg.chain.router_address}")
        _log.info(
            "keeper.ready",
            router=cfg.chain.router_address,
            policy=cfg.prover.policy,
            program_hash=hex(keeper.program.program_hash),
            halted=keeper._halted,
        )
        done, _ = await asyncio.wait({*tasks, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is stop_waiter or task.cancelled():
                continue
            failure = task.exception()
            if failure is not None:
                exit_code = _fatal_exit_code(task.get_name(), failure)
        keeper.request_stop("fatal error" if exit_code else "SIGTERM")
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_BOUND_S)
        if pending:
            _log.error("keeper.shutdown_timeout", pending=[t.get_name() for t in pending])
        if keeper.worker.ahead is not None:
            await keeper.worker.ahead.close("the keeper stopped while it was being made")
    if keeper._atlantic is not None:
        await keeper._atlantic.aclose()
    keeper.store.close()
    _log.info("keeper.stopped", exit_code=exit_code)
    return exit_code


def _fatal_exit_code(task: str, exc: BaseException) -> int:
    if isinstance(exc, StreamError):
        _log.error("keeper.fatal", task=task, error=str(exc), code=exc.code)
        return exc.exit_code if exc.exit_code != 1 else EX_TEMPFAIL
    if isinstance(exc, StoreError):
        _log.error("keeper.fatal", task=task, error=str(exc), code=exc.code)
        return exc.exit_code
    if isinstance(exc, ObsqraError):
        _log.error("keeper.fatal", task=task, error=str(exc), code=exc.code)
        return 1
    _log.error("keeper.crashed", task=task, error=repr(exc), exc_info=exc)
    return EX_SOFTWARE


__all__ = ["Keeper", "program_identity", "run_keeper"]
