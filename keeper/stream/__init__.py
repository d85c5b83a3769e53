"""The event stream: chain events of StrategyRouterV2 and RiskEngine, in order, exactly once.

- ``events``: typed, immutable events and the pure ``decode_event``.
- ``eventlog.EventLog``: the one ingest path (decode + persist + cursor in one transaction)
  and the consumer API (``next_unprocessed``, ``mark_processed``, rollback hooks).
- ``rpc_source.RpcSource`` / ``dna_source.DnaSource`` / ``apibara_source.ApibaraSource``:
  the ways to follow the chain (node RPC polling; an Apibara DNA v2 stream, with
  ``dna_codec`` and the generated ``dna_proto`` modules; DNA v1alpha2, legacy); each has
  ``async run()``.

``open_event_log(store, config, …)`` opens the log; ``build_source(config, log)`` picks the
configured source (the RPC one with ``stream.ws_url`` for new-head notifications).
"""

from __future__ import annotations

from collections.abc import Callable

from keeper.core.config import KeeperConfig
from keeper.store.db import Store
from keeper.stream.apibara_source import ApibaraSource
from keeper.stream.dna_source import DnaSource
from keeper.stream.errors import (
    EX_TEMPFAIL,
    DecodeError,
    ReorgTooDeepError,
    StreamError,
    StreamStalledError,
)
from keeper.stream.eventlog import (
    Cursor,
    EventGoneError,
    EventLog,
    QuarantineHook,
    RollbackHook,
    StoredEvent,
    StreamPosition,
    StreamStatus,
)
from keeper.stream.events import ContractKind, Event, EventMeta, decode_event
from keeper.stream.rpc_source import RpcSource

__all__ = [
    "EX_TEMPFAIL",
    "ApibaraSource",
    "ContractKind",
    "Cursor",
    "DecodeError",
    "DnaSource",
    "Event",
    "EventGoneError",
    "EventLog",
    "EventMeta",
    "QuarantineHook",
    "ReorgTooDeepError",
    "RollbackHook",
    "RpcSource",
    "StoredEvent",
    "StreamError",
    "StreamPosition",
    "StreamStalledError",
    "StreamStatus",
    "build_source",
    "contract_addresses",
    "decode_event",
    "open_event_log",
]


def contract_addresses(config: KeeperConfig) -> dict[int, ContractKind]:
    return {
        int(config.chain.router_address, 16): "router",
        int(config.chain.risk_engine_address, 16): "risk_engine",
    }


def open_event_log(
    store: Store,
    config: KeeperConfig,
    on_rollback: RollbackHook | None = None,
    *,
    on_quarantine: QuarantineHook | None = None,
) -> EventLog:
    """``on_quarantine(n)``: n events were newly quarantined (the daemon counts them)."""
    return EventLog(
        store,
        source=config.stream.source,
        addresses=contract_addresses(config),
        on_rollback=on_rollback,
        on_quarantine=on_quarantine,
    )


def build_source(
    config: KeeperConfig, log: EventLog, on_progress: Callable[[str], None] | None = None
) -> RpcSource | ApibaraSource | DnaSource:
    """The configured source, reading from and writing to ``log``; ``on_progress`` is
    called whenever it hears from the chain (liveness for /healthz)."""
    stream = config.stream
    addresses = contract_addresses(config)
    if stream.source == "dna":
        assert stream.dna_url is not None  # StreamConfig requires it for this source
        token = config.secrets.dna_token
        return DnaSource(
            log,
            url=stream.dna_url,
            addresses=addresses,
            token=None if token is None else token.get_secret_value(),
            finality=stream.dna_finality,
            heartbeat_interval_s=stream.dna_heartbeat_interval_s,
            start_block=stream.start_block,
            stall_deadline_s=stream.stall_deadline_s,
            on_progress=on_progress,
        )
    if stream.source == "apibara":
        return ApibaraSource(
            log,
            url=stream.apibara_url,
            addresses=addresses,
            finality=stream.apibara_finality,
            batch_size=stream.apibara_batch_size,
            start_block=stream.start_block,
            stall_deadline_s=stream.stall_deadline_s,
            on_progress=on_progress,
        )
    return RpcSource(
        log,
        rpc_url=config.chain.rpc_url,
        addresses=addresses,
        start_block=stream.start_block,
        chunk_size=stream.chunk_size,
        poll_interval_s=stream.poll_interval_s,
        confirmation_depth=stream.confirmation_depth,
        stall_deadline_s=stream.stall_deadline_s,
        on_progress=on_progress,
        ws_url=stream.ws_url,
    )
