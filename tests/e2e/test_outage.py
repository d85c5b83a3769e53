"""Issue 12's acceptance test: the node stops for 60 s in the middle of a job, in each
state the job passes, and comes back. The same epoch executes once, no job is parked or
failed, the keeper never exits, and /healthz is degraded (the node has not answered)
during the outage and ok after it.

A node can stop in two ways, and the keeper sees them differently, so both are here:

- ``hang``: the node is alive but answers nothing (overloaded, wedged, a network black
  hole). The starknet-devnet process is stopped with SIGSTOP and resumed with SIGCONT
  60 s later: it keeps its state and accepts connections, but every call of the keeper
  waits until the keeper's own deadline (30 s per RPC call, 30 s per receipt wait), so a
  step fails about twice in 60 s. A request the node had received when it stopped is
  processed when it resumes.
- ``down``: the node process is gone and comes back (a restart). Every connection is
  dropped at once without an answer, so a step fails fast and often (about nine times in
  60 s with the test's 0.2 s poll interval): a retry bounded by a count of attempts
  instead of by time parks the epoch here, which a hang does not reveal. Devnet cannot
  be killed and restarted with its state, so the proxy (below) plays the dead node: the
  request that triggers the outage reaches the devnet (it took the transaction, say) and
  its answer is lost, then every request is dropped unanswered until the node is back.

One keeper and one devnet serve every case in turn, one epoch per case
(``stream.stall_deadline_s`` is 120, above the outage; the ``[jobs]`` retry settings are
the defaults). The hang cases cover each state; the down cases cover one state where
nothing was sent and the one where the broadcast's answer was lost (each down case adds
about 100 s: after nine fast failures the step's backoff has grown to about 50 s).

When to stop the node. With the dev prover the keeper crosses a state in milliseconds,
so polling the store cannot stop the node "while the job is in state X" reliably. The
keeper reaches the node through a pass-through proxy (``OutageProxy``, in this file)
that forwards every request unchanged and, armed with a trap (epoch, job state, JSON-RPC
method, mode), starts the outage at the first request of that method that arrives while
the store shows the epoch's job in that state: a hang stops the devnet before forwarding
it (the stopped node holds exactly that call), a down forwards it and drops the answer.
"In state X" below means: the store shows X, and the keeper is blocked on the call that
leads out of X.

- ``detected``: the first ``starknet_call`` after the job is created, i.e. the read of
  the allocation inputs that the trace starts with. Nothing traced, nothing sent.
- ``traced`` and ``proving`` cannot be held by the node with the dev prover: the keeper
  leaves them without any chain call (the dev "proof" is the fact, computed locally). An
  outage that begins in either finds the job at ``proved``'s first chain call, which is
  the next case: they are indistinguishable from it and have no case of their own.
- ``proved``, nothing sent: the registry's ``get_verification`` (is the fact already
  registered?), the first call that only the registration step makes.
- ``proved``, registration sent: the first ``starknet_getTransactionReceipt`` while the
  job is ``proved``: the dev registration transaction is on-chain, its receipt is what the
  node holds. The keeper's receipt wait ends without an answer; the retry must find the
  fact registered and not register it again.
- ``fact_registered``: the fee estimate of ``execute_allocation`` (the state's step reads
  the router, then estimates); nothing sent.
- ``submitted``, broadcast held: ``starknet_addInvokeTransaction`` itself. The keeper
  persisted the transaction hash (``submitted``) and gets no answer to the broadcast: it
  cannot know whether it was sent ("send uncertain"); the node has it (hang: when it
  resumes). The keeper must wait for that hash and never send a second execution.
- ``submitted``, receipt pending: the first receipt request after the broadcast: the
  execution is on-chain, the node holds its receipt.

Each case checks that it did hit its situation: the job's first failed attempt during
the outage is in that state with the expected code, the job is still there when the
node resumes, and a down node in a read state made the step fail more than the five
times that used to park the epoch.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web
from starknet_py.hash.selector import get_selector_from_name

from keeper.devnet.node import free_port
from keeper.devnet.process import KeeperConfigSpec, KeeperProcess
from tests.contracts.conftest import Deployed
from tests.e2e.harness import (
    KeeperSetup,
    executed_events,
    fact_registered_events,
    healthz,
    wait_for_epoch,
    wait_until,
)
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet

OUTAGE_S = 60.0
HEALTH_SAMPLE_S = 0.5
NODE_SILENT = "the node has not answered"  # the reason /healthz gives during an outage
STRAIGHT_PATH = [
    (None, "detected"),
    ("detected", "traced"),
    ("traced", "proving"),
    ("proving", "proved"),
    ("proved", "fact_registered"),
    ("fact_registered", "submitted"),
    ("submitted", "confirmed"),
]


Mode = Literal["hang", "down"]


@dataclass(frozen=True)
class Trap:
    """Start an outage of ``mode`` at the first ``method`` request (of the view
    ``selector``, for ``starknet_call``) that arrives while the store shows ``epoch``'s
    job in ``state``."""

    epoch: int
    state: str
    method: str
    mode: Mode
    selector: int | None = None


@dataclass(frozen=True)
class OutageCase:
    name: str
    mode: Mode
    state: str
    method: str
    view: str | None  # starknet_call only: which view
    first_failure: str  # code of the job step's first failed attempt during the outage
    # Failed attempts of the step the outage must cause at least (a down node: more than
    # the 5 attempts after which the keeper used to park the epoch).
    min_failures: int = 1

    def trap(self, epoch: int) -> Trap:
        view = None if self.view is None else get_selector_from_name(self.view)
        return Trap(epoch, self.state, self.method, self.mode, view)


DETECTED = ("detected", "starknet_call", None, "rpc_unreachable")
PROVED = ("proved", "starknet_call", "get_verification", "rpc_unreachable")
REGISTRATION_SENT = ("proved", "starknet_getTransactionReceipt", None, "receipt_timeout")
FACT_REGISTERED = ("fact_registered", "starknet_estimateFee", None, "rpc_unreachable")
BROADCAST_HELD = ("submitted", "starknet_addInvokeTransaction", None, "send_uncertain")
RECEIPT_PENDING = ("submitted", "starknet_getTransactionReceipt", None, "receipt_pending")
CASES = (
    OutageCase("hang_detected", "hang", *DETECTED),  # epoch 0: armed before the keeper starts
    OutageCase("hang_proved", "hang", *PROVED),
    OutageCase("hang_proved_registration_sent", "hang", *REGISTRATION_SENT),
    OutageCase("hang_fact_registered", "hang", *FACT_REGISTERED),
    OutageCase("hang_submitted_broadcast_held", "hang", *BROADCAST_HELD),
    OutageCase("hang_submitted_receipt_pending", "hang", *RECEIPT_PENDING),
    OutageCase("down_detected", "down", *DETECTED, min_failures=6),
    OutageCase("down_submitted_broadcast_held", "down", *BROADCAST_HELD),
)


class OutageProxy:
    """A pass-through HTTP proxy from the keeper to the devnet, on its own thread and
    event loop (the test's loop may block, e.g. in ``KeeperProcess.stop``). Armed with a
    ``Trap``, it starts the trap's outage at the trapped request: ``hang`` stops the
    devnet (SIGSTOP, confirmed in /proc) just before forwarding it, and the stopped node
    holds it like any other; ``down`` forwards it, then drops its connection unanswered,
    and every later one, until ``resume``."""

    def __init__(self, devnet: Devnet, store_path: Path) -> None:
        self._devnet = devnet
        self._store_path = store_path
        self._lock = threading.Lock()
        self._trap: Trap | None = None
        self._down = threading.Event()
        self.began = threading.Event()
        self.began_at: float | None = None  # time.monotonic() when the outage began
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def __enter__(self) -> OutageProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.resume()
        finally:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def arm(self, trap: Trap) -> None:
        with self._lock:
            self._trap = trap
            self.began.clear()
            self.began_at = None

    def resume(self) -> None:
        """End the outage: the node answers again (SIGCONT is a no-op when it runs)."""
        self._down.clear()
        if self._devnet.process.poll() is None:
            os.kill(self._devnet.pid, signal.SIGCONT)

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close()  # requests still held by the node end here
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self._down.is_set():
            return _hang_up(request)
        body = await request.read()
        trap = self._springs(body)
        if trap is not None and trap.mode == "hang":
            self._freeze()
        answer = await self._upstream(request, body)
        if trap is not None and trap.mode == "down":
            self._go_down()
            return _hang_up(request)  # the node took the request; its answer is lost
        return answer

    async def _upstream(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        async with self._session.request(
            request.method,
            self._devnet.url + request.path_qs,
            data=body,
            headers={"Content-Type": request.headers.get("Content-Type", "application/json")},
        ) as upstream:
            payload = await upstream.read()
            content_type = upstream.headers.get("Content-Type", "application/json")
            return web.Response(
                status=upstream.status, body=payload, headers={"Content-Type": content_type}
            )

    def _springs(self, body: bytes) -> Trap | None:
        """The armed trap, when this request is its (it is disarmed then)."""
        with self._lock:
            trap = self._trap
            if trap is None:
                return None
            try:
                call = json.loads(body)
            except ValueError:
                return None
            if not isinstance(call, dict) or call.get("method") != trap.method:
                return None
            if trap.selector is not None and _selector_of(call) != trap.selector:
                return None
            if self._job_state(trap.epoch) != trap.state:
                return None
            self._trap = None
            return trap

    def _job_state(self, epoch: int) -> str | None:
        try:
            conn = sqlite3.connect(f"file:{self._store_path}?mode=ro", uri=True, timeout=5)
            try:
                row = conn.execute("SELECT state FROM jobs WHERE epoch = ?", (epoch,)).fetchone()
            finally:
                conn.close()
        except sqlite3.Error:  # no store or no jobs table yet: no job
            return None
        return None if row is None else str(row[0])

    def _freeze(self) -> None:
        os.kill(self._devnet.pid, signal.SIGSTOP)
        self.began_at = time.monotonic()
        _wait_until_stopped(self._devnet.pid)
        self.began.set()

    def _go_down(self) -> None:
        self._down.set()
        self.began_at = time.monotonic()
        self.began.set()


def _hang_up(request: web.Request) -> web.Response:
    """Drop the connection without an answer, as a node process that is gone would (the
    client sees the server disconnect; the response is never written)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=502)


def _selector_of(call: dict[str, Any]) -> int | None:
    params = call.get("params")
    request = params.get("request") if isinstance(params, dict) else None
    if isinstance(params, list) and params:
        request = params[0]
    if not isinstance(request, dict) or "entry_point_selector" not in request:
        return None
    return int(str(request["entry_point_selector"]), 16)


def _wait_until_stopped(pid: int, deadline_s: float = 5.0) -> None:
    """Until every thread of ``pid`` is stopped (state T in /proc)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue  # the thread ended meanwhile
            states.append(stat.rsplit(")", 1)[1].split()[0])
        if states and all(s in ("T", "t") for s in states):
            return
        time.sleep(0.001)  # polling the kernel's view of a process, bounded by the deadline
    raise AssertionError(f"devnet {pid} did not stop within {deadline_s} s of SIGSTOP")


@dataclass
class KeeperThroughProxy(KeeperSetup):
    """A keeper whose ``chain.rpc_url`` is the proxy's (its stream polls through it too)."""

    rpc_url: str = ""

    def spec(self) -> KeeperConfigSpec:
        return replace(super().spec(), rpc_url=self.rpc_url)

    def job(self, epoch: int) -> sqlite3.Row:
        (row,) = self.query("SELECT * FROM jobs WHERE epoch = ?", (epoch,))
        return row


@dataclass
class Outage:
    reports: list[dict[str, Any]]  # /healthz bodies sampled while the node was stopped
    first_failure: tuple[str, str] | None  # (state, code) of the job's first failed attempt
    failures: int  # failed attempts of the job's step when the node resumed
    held_in: str  # the job's state when the node resumed


async def _ride_out(
    proxy: OutageProxy, setup: KeeperThroughProxy, keeper: KeeperProcess, epoch: int
) -> Outage:
    """Keep the node stopped until OUTAGE_S after the outage began, sampling /healthz
    and the job meanwhile; the keeper must stay up the whole time."""
    assert proxy.began_at is not None and setup.health_port is not None
    end = proxy.began_at + OUTAGE_S
    reports: list[dict[str, Any]] = []
    first_failure: tuple[str, str] | None = None
    while time.monotonic() < end:
        if keeper.process.poll() is not None:
            raise AssertionError(
                f"the keeper exited ({keeper.process.returncode}) during the outage:\n"
                f"{keeper.log.tail()}"
            )
        reports.append(await healthz(setup.health_port))
        job = setup.job(epoch)
        if first_failure is None and job["attempts"] > 0:
            first_failure = (job["state"], job["failure_code"])
        await asyncio.sleep(HEALTH_SAMPLE_S)  # a sampling period, not a synchronisation
    job = setup.job(epoch)
    return Outage(reports, first_failure, job["attempts"], job["state"])


async def _request(deployed: Deployed) -> None:
    """The owner's request: it lifts the router's schedule, the keeper runs the epoch."""
    await deployed.invoke(deployed.owner, "StrategyRouterV2", "request_rebalance")


async def _run_case(
    case: OutageCase,
    epoch: int,
    deployed: Deployed,
    proxy: OutageProxy,
    setup: KeeperThroughProxy,
    keeper: KeeperProcess,
) -> None:
    if epoch > 0:  # epoch 0 starts on its own: a fresh router has no allocation
        proxy.arm(case.trap(epoch))
        await _request(deployed)

    async def began() -> bool:
        return proxy.began.is_set()

    await wait_until(f"the node stopped at {case.name} (epoch {epoch})", began, keeper=keeper)
    try:
        outage = await _ride_out(proxy, setup, keeper, epoch)
    finally:
        proxy.resume()
    where = f"case {case.name} (epoch {epoch})"
    assert outage.first_failure == (case.state, case.first_failure), where
    assert outage.held_in == case.state, where
    assert outage.failures >= case.min_failures, (where, outage.failures)
    statuses = {r["status"] for r in outage.reports}
    assert "failing" not in statuses, (where, outage.reports)
    assert any(
        r["status"] == "degraded" and any(x.startswith(NODE_SILENT) for x in r["reasons"])
        for r in outage.reports
    ), (where, outage.reports)

    await wait_for_epoch(deployed, epoch + 1, keeper)

    async def confirmed() -> bool:
        return bool(setup.job(epoch)["state"] == "confirmed")

    await wait_until(f"epoch {epoch}'s job confirmed", confirmed, keeper=keeper)
    port = setup.health_port
    assert port is not None

    async def healthy() -> dict[str, Any] | None:
        report = await healthz(port)
        return report if report["status"] == "ok" else None

    await wait_until(f"/healthz ok after {case.name}", healthy, keeper=keeper)
    await _assert_done_once(deployed, setup, epoch, where)


async def _assert_done_once(
    deployed: Deployed, setup: KeeperThroughProxy, epoch: int, where: str
) -> None:
    job = setup.job(epoch)
    assert (job["state"], job["run"], job["retry_after"]) == ("confirmed", 1, None), where
    moves = setup.query(
        "SELECT from_state, to_state FROM job_transitions WHERE job_id = ? ORDER BY id",
        (job["id"],),
    )
    assert [(m["from_state"], m["to_state"]) for m in moves] == STRAIGHT_PATH, where
    executed = [int(e.keys[1]) for e in await executed_events(deployed)]
    assert executed.count(epoch) == 1, (where, executed)
    fact = int(job["fact_hash"], 16)
    registered = [int(e.keys[1]) for e in await fact_registered_events(deployed)]
    assert registered.count(fact) == 1, (where, registered)
    executions = setup.query(
        "SELECT outcome FROM costs WHERE job_id = ? AND kind = 'execution'", (job["id"],)
    )
    assert [e["outcome"] for e in executions] == ["ok"], where
    # The registration's fee is in the ledger once, its receipt seen or not.
    registrations = setup.query(
        "SELECT tx_hash FROM costs WHERE job_id = ? AND kind = 'fact_registration'", (job["id"],)
    )
    assert [r["tx_hash"] for r in registrations] == [job["fact_tx_hash"]], where


async def test_a_60_s_node_outage_in_each_job_state_executes_each_epoch_once(
    deployed: Deployed, keeper_dir: Path
) -> None:
    setup = KeeperThroughProxy(deployed, keeper_dir, health_port=free_port())
    with OutageProxy(deployed.devnet, setup.store_path) as proxy:
        setup.rpc_url = proxy.url
        proxy.arm(CASES[0].trap(0))  # before the start: epoch 0's job begins at once
        keeper = setup.start()
        try:
            for epoch, case in enumerate(CASES):
                await _run_case(case, epoch, deployed, proxy, setup, keeper)
            assert keeper.process.poll() is None  # rode out every outage without exiting
        finally:
            proxy.resume()
            assert keeper.stop() == 0
    executed = [int(e.keys[1]) for e in await executed_events(deployed)]
    assert executed == list(range(len(CASES)))
    jobs = setup.query("SELECT epoch, state, run FROM jobs ORDER BY epoch")
    assert [(j["epoch"], j["state"], j["run"]) for j in jobs] == [
        (epoch, "confirmed", 1) for epoch in range(len(CASES))
    ]
    assert not keeper.events("job.parked") and not keeper.events("job.failed")
