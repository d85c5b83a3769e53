"""The governance history in the store: parameter values (``governance_changes``) and the
router's timelocked proposals (``governance_proposals``).

Parameter rows are of two kinds:
- *observed* rows (``record_initial``): what the keeper read from the contracts at start
  (tx and event id empty). Written only for values that differ from the last recorded
  one, so restarts add nothing when nothing changed.
- *event* rows (``apply_event``): one per ``GovernanceParamsUpdated`` of the router and per
  changed parameter of a RiskEngine ``ModelParamsUpdated``, with block and tx. Written
  inside the event consumer's transaction and idempotent on (event id, contract, param).

Proposal rows (``apply_proposal_event``): one per ``GovernanceChangeProposed``,
``GovernanceChangeCancelled`` and ``GovernanceChangeApplied`` of either contract (contract,
param, subject, values, eta), idempotent on the event id. A change is pending while the
latest row of its (contract, param, subject) is 'proposed' (``pending_proposals``).
RiskEngine's proposals are 'model_params' (12 values), 'oracle' and 'governance_delay_s'.

Values are TEXT: 0x-hex for addresses, hashes and the verifier pins' short strings,
decimal otherwise (``int(text, 0)`` reads both). ``format_value`` is how they are shown:
pins as their text. "Last value" orders rows by block, then by insertion.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, date, datetime
from typing import Any, Literal

import sqlite_utils

from keeper.store.db import Store
from prover.model import ModelParams

Contract = Literal["router", "risk_engine"]
CONTRACTS: tuple[Contract, ...] = ("router", "risk_engine")

# Params that are addresses or hashes (the router's, and RiskEngine's oracle proposals):
# stored and shown in hex.
HEX_PARAMS = frozenset(
    {"fact_registry", "program_hash", "child_program_hash", "risk_engine", "oracle"}
)
# The verifier pins' fields (short strings): stored in hex, shown as text.
PIN_PARAMS = frozenset(
    f"{path}_{field}"
    for path in ("direct", "bootloaded")
    for field in ("layout", "hasher", "stone_version", "memory_verification")
)
# Proposal params whose values are those of other params (a pin is four short strings).
PIN_PROPOSALS = frozenset({"direct_verifier", "bootloaded_verifier"})
KEEPER_PROPOSAL = "keeper"

ProposalStatus = Literal["proposed", "cancelled", "applied"]
PROPOSAL_STATUSES: tuple[ProposalStatus, ...] = ("proposed", "cancelled", "applied")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def model_params_values(params: ModelParams) -> dict[str, int]:
    """RiskEngine's 12 model parameters by name (for ``record_initial``)."""
    return {f.name: getattr(params, f.name) for f in fields(params)}


def model_params_changes(old: ModelParams, new: ModelParams) -> list[tuple[str, int, int]]:
    """The (param, old, new) of a ``ModelParamsUpdated`` that actually changed, in order."""
    before, after = model_params_values(old), model_params_values(new)
    return [(name, before[name], after[name]) for name in before if before[name] != after[name]]


def format_value(param: str, value: int | None) -> str:
    """How a value is shown: hex for addresses and hashes, the text of a pin's short
    string (hex when it is none; 0 = unset), else decimal."""
    if value is None:
        return ""
    if param in PIN_PARAMS:
        return (_short_string(value) or hex(value)) if value else "0"
    return hex(value) if param in HEX_PARAMS else str(value)


def stored_value(param: str, value: int) -> str:
    """How a value is stored: hex for addresses, hashes and pins, else decimal."""
    return hex(value) if param in HEX_PARAMS or param in PIN_PARAMS else str(value)


def format_proposal_values(param: str, values: Sequence[int]) -> str:
    """A proposal's values as shown: a pin's four strings, a keeper flag, or the value."""
    if param in PIN_PROPOSALS:
        return "(" + ", ".join(format_value("direct_layout", v) for v in values) + ")"
    if param == KEEPER_PROPOSAL and len(values) == 1 and values[0] in (0, 1):
        return "enable" if values[0] else "disable"
    names = [f.name for f in fields(ModelParams)]
    if param == "model_params" and len(values) == len(names):  # RiskEngine's 12, named
        return ", ".join(f"{n}={v}" for n, v in zip(names, values, strict=True))
    return ", ".join(format_value(param, v) for v in values)


def _short_string(value: int) -> str | None:
    """The printable ASCII a felt encodes (1..31 bytes), else None."""
    if not 0 < value < 2**248:
        return None
    data = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return data.decode("ascii") if all(0x20 <= b < 0x7F for b in data) else None


class GovernanceTracker:
    def __init__(self, store: Store, *, clock: Clock = _utcnow) -> None:
        self._store = store
        self._clock = clock

    def record_initial(self, contract: str, params: Mapping[str, int], block_number: int) -> int:
        """Record the values read at ``block_number`` that differ from the last recorded
        ones; return how many rows were written."""
        _check_contract(contract)
        for name, value in params.items():
            _check_value(name, value)
        written = 0
        with self._store.transaction() as db:
            last = _latest(db.conn, contract)
            for name, value in params.items():
                if name in last and last[name] == value:
                    continue
                self._insert(db, contract, name, last.get(name), value, block_number, None, None)
                written += 1
        return written

    def apply_event(
        self,
        db: sqlite_utils.Database,
        contract: str,
        param: str,
        old: int,
        new: int,
        block_number: int,
        tx_hash: int,
        event_id: int,
    ) -> bool:
        """Record one on-chain change inside the caller's transaction (``db`` from
        ``Store.transaction()``). Returns False when this event was already recorded."""
        _check_contract(contract)
        _check_value(param, old)
        _check_value(param, new)
        seen = db.conn.execute(
            "SELECT 1 FROM governance_changes WHERE event_id = ? AND contract = ? AND param = ?",
            (event_id, contract, param),
        ).fetchone()
        if seen is not None:
            return False
        self._insert(db, contract, param, old, new, block_number, tx_hash, event_id)
        return True

    def on_stream_rollback(self, db: sqlite_utils.Database, block_number: int) -> None:
        """EventLog rollback hook: forget rows of blocks above ``block_number``.

        Observed rows above it go too (they may describe a state that no longer exists);
        re-read the contracts and call ``record_initial`` after a rollback.
        """
        db.conn.execute("DELETE FROM governance_changes WHERE block_number > ?", (block_number,))
        db.conn.execute(
            "DELETE FROM governance_proposals WHERE block_number > ?", (block_number,)
        )

    def latest(self, contract: str) -> dict[str, int]:
        """The last recorded value of each parameter of ``contract``."""
        _check_contract(contract)
        return _latest(self._store.db.conn, contract)

    def changes(self, since: date | None = None) -> list[dict[str, Any]]:
        """Every row (recorded on or after ``since``, a UTC day), oldest first; ints for
        values and hashes, None where unknown."""
        sql = (
            "SELECT id, contract, param, old_value, new_value, block_number, tx_hash, "
            "event_id, at FROM governance_changes"
        )
        args: tuple[str, ...] = ()
        if since is not None:
            sql += " WHERE at >= ?"
            args = (since.isoformat(),)
        sql += " ORDER BY COALESCE(block_number, -1), id"
        return [
            {
                "id": row["id"],
                "contract": row["contract"],
                "param": row["param"],
                "old": None if row["old_value"] is None else int(row["old_value"], 0),
                "new": int(row["new_value"], 0),
                "block_number": row["block_number"],
                "tx_hash": None if row["tx_hash"] is None else int(row["tx_hash"], 16),
                "event_id": row["event_id"],
                "at": row["at"],
            }
            for row in self._store.query(sql, args)
        ]

    def apply_proposal_event(
        self,
        db: sqlite_utils.Database,
        status: str,
        param: str,
        subject: int,
        values: Sequence[int],
        eta: int,
        block_number: int,
        tx_hash: int,
        event_id: int,
        contract: str = "router",
    ) -> bool:
        """Record one GovernanceChange{Proposed,Cancelled,Applied} of ``contract`` inside
        the caller's transaction. Returns False when this event was already recorded."""
        _check_contract(contract)
        if status not in PROPOSAL_STATUSES:
            raise ValueError(f"unknown proposal status {status!r} ({', '.join(PROPOSAL_STATUSES)})")
        if not param:
            raise ValueError("governance proposal param is empty")
        for what, value in (("subject", subject), ("eta", eta), *(("value", v) for v in values)):
            _check_value(f"{param} {what}", value)
        cursor = db.conn.execute(
            "INSERT OR IGNORE INTO governance_proposals (contract, param, subject, values_json, "
            "eta, status, block_number, tx_hash, event_id, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                contract,
                param,
                hex(subject),
                json.dumps([hex(v) for v in values]),
                eta,
                status,
                block_number,
                hex(tx_hash),
                event_id,
                self._clock().astimezone(UTC).isoformat(timespec="seconds"),
            ),
        )
        return bool(cursor.rowcount == 1)

    def proposals(self, since: date | None = None) -> list[dict[str, Any]]:
        """Every proposal event (recorded on or after ``since``), in chain order."""
        sql = (
            "SELECT id, contract, param, subject, values_json, eta, status, block_number, "
            "tx_hash, event_id, at FROM governance_proposals"
        )
        args: tuple[str, ...] = ()
        if since is not None:
            sql += " WHERE at >= ?"
            args = (since.isoformat(),)
        sql += " ORDER BY block_number, event_id"
        return [_proposal(row) for row in self._store.query(sql, args)]

    def pending_proposals(self) -> list[dict[str, Any]]:
        """The changes proposed and neither cancelled nor applied since, by eta."""
        latest: dict[tuple[str, str, int], dict[str, Any]] = {}
        for row in self.proposals():
            latest[(row["contract"], row["param"], row["subject"])] = row
        pending = [row for row in latest.values() if row["status"] == "proposed"]
        return sorted(
            pending, key=lambda r: (r["eta"], r["contract"], r["param"], r["subject"])
        )

    def _insert(
        self,
        db: sqlite_utils.Database,
        contract: str,
        param: str,
        old: int | None,
        new: int,
        block_number: int,
        tx_hash: int | None,
        event_id: int | None,
    ) -> None:
        db.conn.execute(
            "INSERT INTO governance_changes (contract, param, old_value, new_value, "
            "block_number, tx_hash, event_id, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                contract,
                param,
                None if old is None else stored_value(param, old),
                stored_value(param, new),
                block_number,
                None if tx_hash is None else hex(tx_hash),
                event_id,
                self._clock().astimezone(UTC).isoformat(timespec="seconds"),
            ),
        )


def _proposal(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "contract": row["contract"],
        "param": row["param"],
        "subject": int(row["subject"], 16),
        "values": [int(v, 16) for v in json.loads(row["values_json"])],
        "eta": row["eta"],
        "status": row["status"],
        "block_number": row["block_number"],
        "tx_hash": int(row["tx_hash"], 16),
        "event_id": row["event_id"],
        "at": row["at"],
    }


def _latest(conn: sqlite3.Connection, contract: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT param, new_value FROM governance_changes WHERE contract = ? "
        "ORDER BY COALESCE(block_number, -1), id",
        (contract,),
    ).fetchall()
    return {str(param): int(value, 0) for param, value in rows}


def _check_contract(contract: str) -> None:
    if contract not in CONTRACTS:
        raise ValueError(f"unknown contract kind {contract!r} (known: {', '.join(CONTRACTS)})")


def _check_value(param: str, value: object) -> None:
    if not param:
        raise ValueError("governance parameter name is empty")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"governance parameter {param} must be a non-negative integer, got {value!r}"
        )
