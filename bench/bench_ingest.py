"""Ingest throughput of the event stream: decode + persist + cursor commit.

100,000 synthetic events (RebalanceRequested, MetricsUpdated, AllocationExecuted mixed,
1 in 1,000 malformed and quarantined), 10 events per block, into a fresh store with the
production pragmas (WAL, synchronous=FULL). Prints one JSON line per run:

- ``"source": "eventlog"``: ``EventLog.ingest`` directly, in batches of 256 events
  (stream.chunk_size's default);
- ``"source": "dna"``: the same blocks through the DNA v2 source: a local DnaStream
  server (tests/fakes/dna_server.py, in its own process, as a remote server would be)
  sends them as 10,000 Data messages over gRPC on loopback; the time runs from
  connecting to the last block's commit (protobuf decoding, gRPC, the store).

``--source eventlog|dna`` runs one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
TARGET_DNA_EVENTS_PER_S = 20_000  # issue 19's bar for the DNA v2 source


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


def bench_eventlog() -> None:
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
                "source": "eventlog",
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


def _serve_dna(conn: Any) -> None:
    """The child process: a DnaStream server sending every block once, then silence."""
    from keeper.stream.dna_codec import BACKFILL, FINALIZED
    from tests.fakes.dna_server import FakeDnaServer, FakeEvent, block_bytes, data

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    script = []
    for blocks, _ in _blocks():
        for block in blocks:
            events = [
                FakeEvent(e.meta.from_address, e.keys, e.data, e.meta.tx_hash, index)
                for index, e in enumerate(block.events)
            ]
            raw = block_bytes(block.number, block.hash, events)
            script.append(data(raw, block.number, block.hash, finality=FINALIZED,
                               production=BACKFILL))

    async def serve() -> None:
        async with FakeDnaServer([script]) as server:
            conn.send(server.url)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told

    asyncio.run(serve())


def bench_dna() -> None:
    from keeper.stream.dna_source import DnaSource
    from keeper.stream.events import decode_event

    n_blocks = N_EVENTS // PER_BLOCK
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=_serve_dna, args=(child,), daemon=True)
    server.start()
    if not parent.poll(300):  # building 10,000 blocks takes seconds, not minutes
        server.terminate()
        raise SystemExit("bench_ingest: the DnaStream server process did not start")
    url = parent.recv()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.sqlite3") as store:
        addresses: dict[int, ContractKind] = {ROUTER: "router", RISK_ENGINE: "risk_engine"}
        log = EventLog(store, source="dna", addresses=addresses)
        done = asyncio.Event()
        seen = 0

        def progress(what: str) -> None:
            nonlocal seen
            seen += what == "data"
            if seen == n_blocks:
                done.set()

        # The ABIs are parsed once, at the first decode: start-up, not ingest time.
        _, keys, values = _payload(0)
        decode_event("router", keys, values, EventMeta(0, 0, 1, 0, ROUTER))

        async def run() -> tuple[float, float]:
            source = DnaSource(log, url=url, addresses=addresses, stall_deadline_s=120,
                               on_progress=progress)
            cpu = time.process_time()
            start = time.perf_counter()
            task = asyncio.create_task(source.run())
            await asyncio.wait({task, asyncio.create_task(done.wait())},
                               return_when=asyncio.FIRST_COMPLETED)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu
            task.cancel()
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
            return seconds, cpu

        seconds, cpu_s = asyncio.run(run())
        status = log.status()
    parent.send("stop")
    server.join(30)
    assert status.events + status.quarantined == N_EVENTS, status
    assert status.cursor is not None
    assert status.cursor.block_number == n_blocks - 1
    print(
        json.dumps(
            {
                "bench": "ingest",
                "source": "dna",
                "events": N_EVENTS,
                "stored": status.events,
                "quarantined": status.quarantined,
                "blocks": n_blocks,
                "seconds": round(seconds, 3),
                "events_per_s": round(N_EVENTS / seconds),
                # The keeper process's CPU time in that window (all its threads): on a
                # shared machine, events_per_s falls with the load, this does not.
                "client_cpu_s": round(cpu_s, 3),
                "target_events_per_s": TARGET_DNA_EVENTS_PER_S,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="ingest throughput")
    parser.add_argument("--source", choices=("eventlog", "dna", "all"), default="all")
    args = parser.parse_args()
    if args.source in ("eventlog", "all"):
        bench_eventlog()
    if args.source in ("dna", "all"):
        bench_dna()


if __name__ == "__main__":
    main()
