"""Ingest throughput of the event stream: decode + persist + cursor commit.

100,000 synthetic events (RebalanceRequested, MetricsUpdated, AllocationExecuted mixed,
1 in 1,000 malformed and quarantined), 10 events per block, ingested in batches of 256
events (stream.chunk_size's default) into a fresh store with the production pragmas
(WAL, synchronous=FULL). Prints one JSON object.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keeper.store.db import open_store
from keeper.stream.eventlog import Block, Cursor, EventLog, RawEvent
from keeper.stream.events import SELECTORS, ContractKind, EventMeta

N_EVENTS = 100_000
PER_BLOCK = 10
BATCH_EVENTS = 256
ROUTER = 0x0123_4567_89AB_CDEF
RISK_ENGINE = 0x0FED_CBA9_8765_4321
TARGET_EVENTS_PER_S = 5_000  # acceptance bar on the 2-core machine


def _payload(i: int) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    kind = i % 3
    if i % 1000 == 999:
        return ROUTER, (SELECTORS["KeeperUpdated"], 5), (7,)  # bool 7: quarantined
    if kind == 0:
        return ROUTER, (SELECTORS["RebalanceRequested"], i), (0xAB, 1)
    if kind == 1:
        data = (5000, 1200, 1, 90, 800, 450, 4, 0x1234_5678_9ABC)
        return RISK_ENGINE, (SELECTORS["MetricsUpdated"], i % 16), data
    alloc = (4000, 3000, 2000, 1000)
    return ROUTER, (SELECTORS["AllocationExecuted"], i), (0xFAC7, 4, *alloc, 0x646972656374)


def _blocks() -> list[tuple[list[Block], Cursor]]:
    batches: list[tuple[list[Block], Cursor]] = []
    blocks: list[Block] = []
    count = 0
    for number in range(N_EVENTS // PER_BLOCK):
        block_hash = 0xB10C_0000 + number
        events = []
        for j in range(PER_BLOCK):
            i = number * PER_BLOCK + j
            address, keys, data = _payload(i)
            meta = EventMeta(number, block_hash, 0x7000_0000 + i, 0, address)
            events.append(RawEvent(meta, keys, data))
        blocks.append(Block(number, block_hash, tuple(events)))
        count += PER_BLOCK
        if count >= BATCH_EVENTS:
            batches.append((blocks, Cursor(number, block_hash)))
            blocks, count = [], 0
    if blocks:
        batches.append((blocks, Cursor(blocks[-1].number, blocks[-1].hash)))
    return batches


def main() -> None:
    batches = _blocks()
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.sqlite3") as store:
        # Quarantine warnings would measure the terminal, not the ingest.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
        addresses: dict[int, ContractKind] = {ROUTER: "router", RISK_ENGINE: "risk_engine"}
        log = EventLog(store, source="bench", addresses=addresses)
        stored = quarantined = 0
        start = time.perf_counter()
        for blocks, cursor in batches:
            result = log.ingest(blocks, cursor)
            stored += result.stored
            quarantined += result.quarantined
        seconds = time.perf_counter() - start
    assert stored + quarantined == N_EVENTS, (stored, quarantined)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "bench": "ingest",
                "events": N_EVENTS,
                "stored": stored,
                "quarantined": quarantined,
                "batches": len(batches),
                "seconds": round(seconds, 3),
                "events_per_s": round(N_EVENTS / seconds),
                "peak_rss_mb": round(peak_rss_mb, 1),  # includes the prebuilt input events
                "target_events_per_s": TARGET_EVENTS_PER_S,
            }
        )
    )


if __name__ == "__main__":
    main()
