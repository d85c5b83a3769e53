"""The event log: the one ingest path of both sources, and the consumer's exactly-once API.

Sources hand over batches of *blocks* (``Block``: number, hash, raw events) with the
cursor the batch ends at. ``EventLog.ingest`` decodes every event, stores the valid ones,
quarantines the rest (with the reason), records the block hashes and moves the cursor,
all in ONE store transaction: after a crash the store holds either the whole batch and
its cursor, or neither, so a restarted source resumes exactly after the last committed
block. Replays are harmless: events are unique on (block_hash, tx_hash, event_index) and
blocks at or below the cursor are skipped.

Consumer (the keeper loop)::

    log = EventLog(store, source="rpc")
    log.register_rollback_hook(jobs.on_stream_rollback)
    for stored in log.next_unprocessed(limit=100):      # chain order
        with store.transaction() as db:
            ...effects of stored.event...                # e.g. create a job
            log.mark_processed(stored.id)                # same transaction

``mark_processed`` must run inside the consumer's own ``store.transaction()``: the effect
and "this event is done" commit together, so each event takes effect exactly once across
restarts. It raises ``EventGoneError`` when the event was rolled back meanwhile (a reorg
between read and commit): the consumer's transaction then rolls back too.

Rollback (Apibara invalidate, or a reorg the RPC source detects): ``rollback_after(n)``
deletes every event, quarantined event and block hash above block ``n`` and moves the
cursor back to ``n``, in one transaction. A source that hears of finality (DNA v2's
``Finalize``) records it with ``record_finalized``: no rollback below that block is
accepted afterwards (``ReorgTooDeepError``). Each rollback hook ``fn(db, n)`` runs inside
that transaction *before* the deletion, so it can still join its own rows against the
doomed events (``stream_events.block_number > n``) — e.g. jobs triggered by them that
have not reached the chain are marked rolled back. A hook that raises aborts the rollback.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from keeper.core.logs import get_logger
from keeper.store.db import Store
from keeper.stream.errors import DecodeError, ReorgTooDeepError, StreamError
from keeper.stream.events import (
    CONTRACT_KINDS,
    ContractKind,
    Event,
    EventMeta,
    decode_event,
)

RollbackHook = Callable[[sqlite_utils.Database, int], None]
# Told how many events a committed ingest newly quarantined (the daemon counts them in
# keeper_events_quarantined_total; the stream knows nothing of metrics).
QuarantineHook = Callable[[int], None]
KEPT_BLOCK_HASHES = 1024  # newest block hashes kept for reorg detection
# The finalized cursor lives in the store's meta table (one value, no table of its own).
FINALIZED_META_KEY = "stream_finalized"

_log = get_logger("keeper.stream")


class EventGoneError(StreamError):
    """The event was rolled back (reorg) or already processed: do not apply its effects."""

    code = "stream_event_gone"


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event as a source received it. ``problem`` is set when the source already knows
    it is malformed (e.g. a field that is not hex): such an event is quarantined as is."""

    meta: EventMeta
    keys: tuple[int, ...]
    data: tuple[int, ...]
    problem: str | None = None
    raw_keys: tuple[str, ...] = ()  # the source's text, kept only for problem events
    raw_data: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    hash: int
    events: Sequence[RawEvent] = ()


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last block whose events are all stored. ``block_hash`` None: not known."""

    block_number: int
    block_hash: int | None = None


@dataclass(slots=True)
class StreamPosition:
    """Where the stream stands, for /healthz, /metrics and status: kept current by the
    ``EventLog`` (cursor, finalized) and by the source (``head``: the newest block its
    server or node knows, None until it said)."""

    source: str
    cursor: Cursor | None = None
    finalized: Cursor | None = None
    head: Cursor | None = None

    @property
    def lag_blocks(self) -> int | None:
        if self.head is None or self.cursor is None:
            return None
        return max(0, self.head.block_number - self.cursor.block_number)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int  # position in chain order
    event: Event


@dataclass(frozen=True, slots=True)
class IngestResult:
    stored: int = 0
    quarantined: int = 0
    skipped: int = 0  # replays of events or blocks already ingested


@dataclass(frozen=True, slots=True)
class StreamStatus:
    source: str | None
    cursor: Cursor | None
    events: int
    unprocessed: int
    quarantined: int
    last_event: dict[str, Any] | None = field(default=None)
    finalized: Cursor | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _hex(value: int) -> str:
    return hex(value)


class EventLog:
    """The store's stream tables. One per store connection (not thread-safe)."""

    def __init__(
        self,
        store: Store,
        *,
        source: str,
        addresses: dict[int, ContractKind] | None = None,
        on_rollback: RollbackHook | None = None,
        on_quarantine: QuarantineHook | None = None,
    ) -> None:
        """``addresses`` maps contract address -> kind; events from any other address are
        quarantined. Without it, the kind comes from nowhere and every event is quarantined,
        so sources always pass it. ``on_quarantine(n)`` runs after each ingest that
        committed n > 0 new quarantined events (replays are not counted again)."""
        self._store = store
        self._source = source
        self._addresses = dict(addresses or {})
        self._hooks: list[RollbackHook] = [] if on_rollback is None else [on_rollback]
        self._on_quarantine = on_quarantine
        self.position = StreamPosition(source, cursor=self.cursor(), finalized=self.finalized())

    @property
    def store(self) -> Store:
        return self._store

    def register_rollback_hook(self, hook: RollbackHook) -> None:
        self._hooks.append(hook)

    # -- cursor -------------------------------------------------------------------------
    def cursor(self) -> Cursor | None:
        row = self._store.db.execute(
            "SELECT block_number, block_hash FROM stream_cursor WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        return Cursor(int(row[0]), None if row[1] is None else int(row[1], 16))

    def finalized(self) -> Cursor | None:
        """The last block the source said can no longer be rolled back, if any."""
        row = self._store.db.execute(
            "SELECT value FROM meta WHERE key = ?", (FINALIZED_META_KEY,)
        ).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        block_hash = value.get("block_hash")
        number = int(value["block_number"])
        return Cursor(number, None if block_hash is None else int(block_hash, 16))

    def record_finalized(self, cursor: Cursor) -> bool:
        """Record that nothing up to ``cursor`` can be rolled back; a cursor below the one
        recorded is ignored (finality only moves forward). True when it moved."""
        with self._store.transaction() as db:
            moved = self._set_finalized(db, cursor)
        if moved:
            self.position.finalized = cursor
        return moved

    def _set_finalized(self, db: sqlite_utils.Database, cursor: Cursor) -> bool:
        current = self.finalized()
        if current is not None and cursor.block_number <= current.block_number:
            return False
        value = {
            "block_number": cursor.block_number,
            "block_hash": None if cursor.block_hash is None else _hex(cursor.block_hash),
        }
        db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (FINALIZED_META_KEY, json.dumps(value)),
        )
        return True

    def _set_cursor(self, db: sqlite_utils.Database, cursor: Cursor) -> None:
        db.execute(
            "INSERT INTO stream_cursor (id, source, block_number, block_hash, updated_at) "
            "VALUES (1, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET source = excluded.source, "
            "block_number = excluded.block_number, block_hash = excluded.block_hash, "
            "updated_at = excluded.updated_at",
            (
                self._source,
                cursor.block_number,
                None if cursor.block_hash is None else _hex(cursor.block_hash),
                _now(),
            ),
        )

    # -- ingest -------------------------------------------------------------------------
    def ingest(
        self, blocks: Sequence[Block], end: Cursor, *, finalized: Cursor | None = None
    ) -> IngestResult:
        """Store ``blocks`` (ascending) and move the cursor to ``end``, atomically; with
        ``finalized``, record it too (see ``record_finalized``) in the same transaction."""
        now = _now()
        stored_rows: list[tuple[Any, ...]] = []
        quarantine_rows: list[tuple[Any, ...]] = []
        block_rows: list[tuple[int, str]] = []
        skipped = 0
        with self._store.transaction() as db:
            current = self.cursor()
            floor = -1 if current is None else current.block_number
            if end.block_number < floor:
                raise StreamError(
                    f"the source moved the cursor back from block {floor} to "
                    f"{end.block_number} without an invalidate; restart the keeper to resync"
                )
            previous = floor
            for block in blocks:
                if block.number <= floor:  # already ingested: a replay
                    skipped += len(block.events)
                    continue
                if block.number > end.block_number:
                    raise StreamError(
                        f"the source sent block {block.number} in a batch ending at block "
                        f"{end.block_number}; restart the keeper to resync"
                    )
                if block.number < previous:
                    raise StreamError(
                        f"the source sent block {block.number} after block {previous}; "
                        "blocks must arrive in chain order"
                    )
                previous = block.number
                block_rows.append((block.number, _hex(block.hash)))
                for raw in block.events:
                    self._classify(raw, now, stored_rows, quarantine_rows)
            conn = db.conn
            stored = _insert_new(
                conn,
                "INSERT OR IGNORE INTO stream_events (block_number, block_hash, tx_hash, "
                "event_index, contract, from_address, name, keys, data, ingested_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                stored_rows,
            )
            quarantined = _insert_new(
                conn,
                "INSERT OR IGNORE INTO stream_quarantine (block_number, block_hash, "
                "tx_hash, event_index, from_address, keys, data, reason, quarantined_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                quarantine_rows,
            )
            skipped += len(stored_rows) - stored + len(quarantine_rows) - quarantined
            if end.block_hash is not None and end.block_number > floor:
                block_rows.append((end.block_number, _hex(end.block_hash)))
            conn.executemany(
                "INSERT OR REPLACE INTO stream_blocks (block_number, block_hash) VALUES (?, ?)",
                block_rows,
            )
            if block_rows:  # reorg detection walks back at most this far; older rows go
                conn.execute(
                    "DELETE FROM stream_blocks WHERE block_number < (SELECT block_number "
                    "FROM stream_blocks ORDER BY block_number DESC LIMIT 1 OFFSET ?)",
                    (KEPT_BLOCK_HASHES - 1,),
                )
            if current is None or end != current:
                self._set_cursor(db, end)
            moved = finalized is not None and self._set_finalized(db, finalized)
        self.position.cursor = end
        if moved:
            self.position.finalized = finalized
        if quarantined and self._on_quarantine is not None:  # committed: count them now
            self._on_quarantine(quarantined)
        return IngestResult(stored=stored, quarantined=quarantined, skipped=skipped)

    def _classify(
        self,
        raw: RawEvent,
        now: str,
        stored_rows: list[tuple[Any, ...]],
        quarantine_rows: list[tuple[Any, ...]],
    ) -> None:
        meta = raw.meta
        kind = self._addresses.get(meta.from_address)
        reason = raw.problem
        name = ""
        if reason is None and kind is None:
            reason = f"event from unexpected address {_hex(meta.from_address)}"
        if reason is None and kind is not None:
            try:
                name = type(decode_event(kind, raw.keys, raw.data, meta)).__name__
            except DecodeError as exc:
                reason = exc.reason
        if raw.problem:  # the source's text, whatever it holds
            keys, data = json.dumps(list(raw.raw_keys)), json.dumps(list(raw.raw_data))
        else:
            keys, data = _hex_json(raw.keys), _hex_json(raw.data)
        common = (
            meta.block_number,
            _hex(meta.block_hash),
            _hex(meta.tx_hash),
            meta.event_index,
        )
        if reason is not None:
            _log.warning(
                "stream.event_quarantined",
                block=meta.block_number,
                tx=_hex(meta.tx_hash),
                event_index=meta.event_index,
                reason=reason,
            )
            quarantine_rows.append(
                (*common, _hex(meta.from_address), keys, data, reason, now)
            )
            return
        assert kind is not None
        stored_rows.append(
            (*common, kind, _hex(meta.from_address), name, keys, data, now)
        )

    # -- rollback -----------------------------------------------------------------------
    def rollback_after(self, block_number: int, to: Cursor | None = None) -> int:
        """Forget everything above ``block_number``; return how many events were removed.
        ``to``: the cursor to move back to when the source knows its hash (else the stored
        hash of that block, if any)."""
        finalized = self.finalized()
        if finalized is not None and block_number < finalized.block_number:
            raise ReorgTooDeepError(
                f"the source asked to roll back to block {block_number}, below block "
                f"{finalized.block_number} which it reported finalized; refusing (finalized "
                "blocks cannot be rolled back): check the stream server, or re-sync a fresh "
                "store from stream.start_block"
            )
        if to is not None and to.block_number != block_number:
            raise StreamError(f"rollback to block {block_number} with a cursor at {to}")
        with self._store.transaction() as db:
            for hook in self._hooks:
                hook(db, block_number)
            conn = db.conn
            removed = conn.execute(
                "DELETE FROM stream_events WHERE block_number > ?", (block_number,)
            ).rowcount
            conn.execute("DELETE FROM stream_quarantine WHERE block_number > ?", (block_number,))
            conn.execute("DELETE FROM stream_blocks WHERE block_number > ?", (block_number,))
            row = conn.execute(
                "SELECT block_hash FROM stream_blocks WHERE block_number = ?", (block_number,)
            ).fetchone()
            current = self.cursor()
            if current is None or current.block_number > block_number:
                if to is None:
                    to = Cursor(block_number, None if row is None else int(row[0], 16))
                self._set_cursor(db, to)
        self.position.cursor = self.cursor()
        _log.warning("stream.rolled_back", after_block=block_number, events_removed=removed)
        return int(removed)

    def stored_block_hashes(self, limit: int) -> list[tuple[int, int]]:
        """The most recent recorded (block_number, block_hash), newest first."""
        rows = self._store.db.execute(
            "SELECT block_number, block_hash FROM stream_blocks "
            "ORDER BY block_number DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(int(n), int(h, 16)) for n, h in rows]

    # -- consumer -----------------------------------------------------------------------
    def next_unprocessed(self, limit: int = 100) -> list[StoredEvent]:
        rows = self._store.db.execute(
            "SELECT id, block_number, block_hash, tx_hash, event_index, contract, "
            "from_address, keys, data FROM stream_events WHERE processed_at IS NULL "
            "ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [_stored_event(row) for row in rows]

    def mark_processed(self, event_id: int) -> None:
        """Mark one event done; call inside the transaction that applies its effects."""
        conn = self._store.db.conn
        if not conn.in_transaction:
            raise StreamError(
                "mark_processed must run inside store.transaction(), together with the "
                "event's effects (otherwise a crash between them loses or repeats the effect)"
            )
        changed = conn.execute(
            "UPDATE stream_events SET processed_at = ? WHERE id = ? AND processed_at IS NULL",
            (_now(), event_id),
        ).rowcount
        if changed != 1:
            raise EventGoneError(
                f"stream event {event_id} is no longer pending: it was rolled back by a reorg "
                "or already processed; its effects must not be applied"
            )

    # -- status -------------------------------------------------------------------------
    def status(self) -> StreamStatus:
        db = self._store.db
        source_row = db.execute("SELECT source FROM stream_cursor WHERE id = 1").fetchone()
        events, unprocessed = db.execute(
            "SELECT COUNT(*), COUNT(*) - COUNT(processed_at) FROM stream_events"
        ).fetchone()
        quarantined = db.execute("SELECT COUNT(*) FROM stream_quarantine").fetchone()[0]
        last = db.execute(
            "SELECT id, name, contract, block_number, tx_hash, event_index, processed_at "
            "FROM stream_events ORDER BY id DESC LIMIT 1"
        ).fetchone()
        last_event = None
        if last is not None:
            last_event = dict(
                zip(
                    ("id", "name", "contract", "block_number", "tx_hash", "event_index",
                     "processed_at"),
                    last,
                    strict=True,
                )
            )
        return StreamStatus(
            source=None if source_row is None else str(source_row[0]),
            cursor=self.cursor(),
            events=int(events),
            unprocessed=int(unprocessed or 0),
            quarantined=int(quarantined),
            last_event=last_event,
            finalized=self.finalized(),
        )


def _hex_json(values: Sequence[int]) -> str:
    """The JSON array of the values' 0x-hex text (what json.dumps gives; hex digits need no
    escaping, and this is the ingest's hot path)."""
    if not values:
        return "[]"
    return '["' + '", "'.join(map(hex, values)) + '"]'


def _insert_new(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    """executemany, returning how many rows were new (INSERT OR IGNORE skips replays)."""
    if not rows:
        return 0
    before = conn.total_changes
    conn.executemany(sql, rows)
    return conn.total_changes - before


def _stored_event(row: Sequence[Any]) -> StoredEvent:
    event_id, number, block_hash, tx_hash, index, contract, address, keys, data = row
    if contract not in CONTRACT_KINDS:
        raise StreamError(f"stream event {event_id} has unknown contract kind {contract!r}")
    meta = EventMeta(
        int(number), int(block_hash, 16), int(tx_hash, 16), int(index), int(address, 16)
    )
    keys_int = [int(k, 16) for k in json.loads(keys)]
    data_int = [int(d, 16) for d in json.loads(data)]
    return StoredEvent(int(event_id), decode_event(contract, keys_int, data_int, meta))
