"""Every table of the store, as one ordered list of forward migrations.

All migrations live here (not spread over the modules that use the tables) so that any
command that opens the store, however few modules it imports, knows the whole schema.
Append-only: a released migration is never edited; a change is a new migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite_utils.Database], None]


def _sql(*statements: str) -> Callable[[sqlite_utils.Database], None]:
    def apply(db: sqlite_utils.Database) -> None:
        for statement in statements:
            db.execute(statement)

    return apply


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "base",
        # meta: state that belongs to no other table, e.g. the deployment this store
        # was first used with, so a store is never silently reused for another router.
        _sql("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"),
    ),
    Migration(
        2,
        "stream",
        # keeper/stream: decoded-and-valid events in chain order (id), the consumer's
        # position (processed_at), malformed payloads kept with their reason, the hashes
        # of ingested blocks (reorg detection) and the one stream cursor. Felts are
        # 0x-hex text; keys/data are JSON arrays of them. The unique key makes replays
        # of a block idempotent.
        _sql(
            "CREATE TABLE stream_events ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " block_number INTEGER NOT NULL, block_hash TEXT NOT NULL,"
            " tx_hash TEXT NOT NULL, event_index INTEGER NOT NULL,"
            " contract TEXT NOT NULL, from_address TEXT NOT NULL, name TEXT NOT NULL,"
            " keys TEXT NOT NULL, data TEXT NOT NULL,"
            " ingested_at TEXT NOT NULL, processed_at TEXT,"
            " UNIQUE (block_hash, tx_hash, event_index))",
            "CREATE INDEX stream_events_block ON stream_events (block_number)",
            "CREATE INDEX stream_events_unprocessed ON stream_events (id) "
            "WHERE processed_at IS NULL",
            "CREATE TABLE stream_quarantine ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " block_number INTEGER NOT NULL, block_hash TEXT NOT NULL,"
            " tx_hash TEXT NOT NULL, event_index INTEGER NOT NULL,"
            " from_address TEXT NOT NULL, keys TEXT NOT NULL, data TEXT NOT NULL,"
            " reason TEXT NOT NULL, quarantined_at TEXT NOT NULL,"
            " UNIQUE (block_hash, tx_hash, event_index))",
            "CREATE INDEX stream_quarantine_block ON stream_quarantine (block_number)",
            "CREATE TABLE stream_blocks ("
            " block_number INTEGER PRIMARY KEY, block_hash TEXT NOT NULL)",
            "CREATE TABLE stream_cursor ("
            " id INTEGER PRIMARY KEY CHECK (id = 1), source TEXT NOT NULL,"
            " block_number INTEGER NOT NULL, block_hash TEXT, updated_at TEXT NOT NULL)",
        ),
    ),
]

# Migration 2 (the event stream) is appended above this line by keeper/stream's owner;
# migration 3 is the keeper's jobs, cost ledger and governance history.
_JOBS_V3 = _sql(
    # One job per (router, epoch): the idempotency key of everything retried for it.
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY,                -- '<router hex>:<epoch>'
        router TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        state TEXT NOT NULL,                -- see keeper.jobs.JobState
        trigger TEXT NOT NULL,              -- request | interval | drift | manual
        trigger_event_id INTEGER,           -- the stream event that caused it, if any
        trigger_block INTEGER,              -- its block (rolled back with it)
        prover TEXT,                        -- stone | atlantic | dev
        inputs_json TEXT,                   -- the exact on-chain inputs the model ran on
        output_json TEXT,                   -- the program's public output
        trace_dir TEXT,
        n_steps INTEGER,
        proof_path TEXT,
        fact_hash TEXT,
        program_hash TEXT,
        security_bits INTEGER,
        atlantic_query_id TEXT,
        fact_tx_hash TEXT,
        submit_tx_hash TEXT,
        attempts INTEGER NOT NULL DEFAULT 0, -- attempts in the current state
        failure_code TEXT,
        failure_reason TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (router, epoch)
    )""",
    "CREATE INDEX jobs_open ON jobs (state)"
    " WHERE state NOT IN ('confirmed', 'failed', 'superseded')",
    """CREATE TABLE job_transitions (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (id),
        from_state TEXT,
        to_state TEXT NOT NULL,
        detail TEXT,
        at TEXT NOT NULL
    )""",
    # The cost ledger: one row per attempt of anything that costs CPU, credit or fees.
    # Amounts are what was measured or charged, never assumed; fee amounts are TEXT
    # because they can exceed SQLite's 64-bit integers.
    """CREATE TABLE costs (
        id INTEGER PRIMARY KEY,
        job_id TEXT REFERENCES jobs (id),
        kind TEXT NOT NULL,                 -- trace | proof | fact_registration | execution
        prover TEXT,                        -- stone | atlantic | dev (for trace/proof rows)
        outcome TEXT NOT NULL,              -- ok | failed
        reason TEXT,                        -- failure code, or why it was skipped
        wall_s REAL,
        cpu_s REAL,
        peak_rss_mb REAL,
        proof_bytes INTEGER,
        n_steps INTEGER,
        atlantic_job_size TEXT,
        atlantic_price REAL,                -- the configured contract price for that job size
        fee_amount TEXT,                    -- actual fee from the receipt, smallest unit
        fee_unit TEXT,                      -- FRI | WEI
        tx_hash TEXT,
        at TEXT NOT NULL
    )""",
    "CREATE INDEX costs_at ON costs (at)",
    """CREATE TABLE governance_changes (
        id INTEGER PRIMARY KEY,
        contract TEXT NOT NULL,             -- router | risk_engine
        param TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT NOT NULL,
        block_number INTEGER,
        tx_hash TEXT,
        event_id INTEGER,
        at TEXT NOT NULL
    )""",
)

MIGRATIONS.append(Migration(3, "jobs_costs_governance", _JOBS_V3))

# Migration 4: jobs that are never stuck (a failed job of the current epoch is reopened
# after a cool-down: ``run`` counts its runs; ``retry_after`` NULL on a failed job means
# parked, waiting for the operator), the verification the router is pointed at, and the
# Integrity transactions that registered a fact (each hash stored before broadcast).
_JOBS_V4 = _sql(
    "ALTER TABLE jobs ADD COLUMN run INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE jobs ADD COLUMN failing_since TEXT",  # first failed attempt in this state
    "ALTER TABLE jobs ADD COLUMN retry_after TEXT",  # failed: reopen from then; NULL: parked
    "ALTER TABLE jobs ADD COLUMN paid_failures INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN verification_hash TEXT",
    "ALTER TABLE jobs ADD COLUMN atlantic_dedup_id TEXT",
    # Integrity's split-verification job id of this job's fact (random, persisted before
    # the first transaction; replaced only when the on-chain job cannot be resumed).
    "ALTER TABLE jobs ADD COLUMN integrity_job_id TEXT",
    """CREATE TABLE fact_registrations (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL REFERENCES jobs (id),
        fact_hash TEXT NOT NULL,
        integrity_job_id TEXT NOT NULL,     -- Integrity's split-verification job id
        step INTEGER NOT NULL,              -- 0 = initial, 1..k = steps, k+1 = final
        function TEXT NOT NULL,             -- the FactRegistry entry point
        calldata_felts INTEGER NOT NULL,
        tx_hash TEXT,                       -- stored before the broadcast
        status TEXT NOT NULL,               -- signing | sent | succeeded | reverted | dropped
        reason TEXT,
        at TEXT NOT NULL
    )""",
    "CREATE INDEX fact_registrations_job ON fact_registrations (job_id)",
)
MIGRATIONS.append(Migration(4, "jobs_liveness_registrations", _JOBS_V4))

# Migration 5: the router's timelocked governance, as its events say it: one row per
# GovernanceChangeProposed / Cancelled / Applied (keeper.store.governance). A change is
# pending while the latest row of its (param, subject) is 'proposed'.
_GOVERNANCE_PROPOSALS_V5 = _sql(
    """CREATE TABLE governance_proposals (
        id INTEGER PRIMARY KEY,
        param TEXT NOT NULL,                -- proposal param: 'max_single_bps', 'keeper', ...
        subject TEXT NOT NULL,              -- 0x-hex: the keeper for 'keeper', else 0x0
        values_json TEXT NOT NULL,          -- JSON array of 0x-hex felts
        eta INTEGER NOT NULL,               -- block timestamp from which it may be applied
        status TEXT NOT NULL,               -- proposed | cancelled | applied
        block_number INTEGER NOT NULL,
        tx_hash TEXT NOT NULL,
        event_id INTEGER NOT NULL UNIQUE,   -- the stream event: replays add nothing
        at TEXT NOT NULL
    )""",
    "CREATE INDEX governance_proposals_key ON governance_proposals (param, subject)",
)
MIGRATIONS.append(Migration(5, "governance_proposals", _GOVERNANCE_PROPOSALS_V5))

# Migration 6: RiskEngine's model parameters, oracle and delay follow the same timelock as
# the router's parameters: a proposal row says whose it is. Rows before it are the router's.
_GOVERNANCE_PROPOSALS_CONTRACT_V6 = _sql(
    "ALTER TABLE governance_proposals ADD COLUMN contract TEXT NOT NULL DEFAULT 'router'",
    "CREATE INDEX governance_proposals_contract_key "
    "ON governance_proposals (contract, param, subject)",
)
MIGRATIONS.append(
    Migration(6, "governance_proposals_contract", _GOVERNANCE_PROPOSALS_CONTRACT_V6)
)

# Migration 7: proofs made ahead of a due rebalance (keeper.store.ahead): at most one live
# proof per (router, epoch, inputs commitment, program, bits); a discarded one (its inputs
# changed, the keeper stopped during it) frees the key. ``costs.outcome`` gains
# 'discarded': the CPU of a proof nobody used, still counted.
_AHEAD_PROOFS_V7 = _sql(
    """CREATE TABLE ahead_proofs (
        id INTEGER PRIMARY KEY,
        router TEXT NOT NULL,
        epoch INTEGER NOT NULL,
        inputs_commitment TEXT NOT NULL,    -- 0x-hex: the model's Pedersen commitment
        program_hash TEXT NOT NULL,
        min_security_bits INTEGER NOT NULL, -- the router's minimum the proof was made for
        state TEXT NOT NULL,                -- proving | ready | used | discarded
        inputs_json TEXT NOT NULL,
        output_json TEXT,
        trace_dir TEXT,
        n_steps INTEGER,
        proof_path TEXT,
        fact_hash TEXT,
        security_bits INTEGER,
        proof_bytes INTEGER,
        trace_wall_s REAL,
        trace_cpu_s REAL,
        proof_wall_s REAL,
        proof_cpu_s REAL,
        used_by TEXT REFERENCES jobs (id),
        reason TEXT,                        -- why it was discarded
        created_at TEXT NOT NULL,
        finished_at TEXT
    )""",
    "CREATE UNIQUE INDEX ahead_proofs_live ON ahead_proofs "
    "(router, epoch, inputs_commitment, program_hash, min_security_bits) "
    "WHERE state IN ('proving', 'ready', 'used')",
)
MIGRATIONS.append(Migration(7, "ahead_proofs", _AHEAD_PROOFS_V7))
MIGRATIONS.sort(key=lambda m: m.version)
