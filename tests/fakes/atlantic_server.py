"""A local stand-in for Herodotus' Atlantic API (FACTS §5), real HTTP on 127.0.0.1.

Endpoints: POST /atlantic-query (multipart), GET /atlantic-query/{id},
GET /atlantic-query-by-dedup-id?dedupId=..., and the proof file a query's metadataUrls
point to. The fact hash it reports is computed with cairo-lang's own primitives (not
with prover.facts), so the client's check is tested against an independent formula.

Faults are scripted per endpoint ("submit", "lookup", "status", "proof") and consumed one
per request: see ``FakeAtlantic.script``. Each query follows ``plan`` (its status per poll)
unless ``plans`` holds a plan for it (consumed one per created query) or its own ``plan``
is set later, e.g. to fail a query between two attempts of the client.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOOTLOADER_PROGRAM_HASH = 0x5AB580B04E3532B6B18F81CFA654A05E29DD8E2352D88DF1E765A84072DB07

FAILURE_REASON = "Cairo program failed: assert failed"

FAULTS = (
    "429",  # rate limited, with Retry-After
    "500json",  # application error (JSON body)
    "500html",  # infrastructure error page
    "502",
    "503",
    "504",
    "html200",  # a captive portal / proxy page with status 200
    "slow",  # answers after ``slow_s`` (past the client's timeout)
    "drop",  # closes the connection without answering
    "drop_after_accept",  # submit only: creates the query, then drops the connection
    "accept_then_409",  # submit only: creates the query, answers 409 (as if a racing POST won)
    "402",  # out of credit
    "400",  # JSON validation error
    "404",  # lookup only: a lagging dedupId index that does not show the query yet
)


_CHILD_HASHES: dict[str, int] = {}


def atlantic_fact(compiled_program: dict[str, Any], outputs: Sequence[int]) -> int:
    """The bootloaded fact Atlantic registers, from cairo-lang primitives. Integrity's
    calculate_bootloaded_fact_hash hashes with PoseidonImpl update/finalize, i.e. the
    sponge ``poseidon_hash_many``, not the two-input ``poseidon_hash``."""
    from starkware.cairo.bootloaders.hash_program import HashFunction, compute_program_hash_chain
    from starkware.cairo.common.poseidon_hash import poseidon_hash_many
    from starkware.cairo.lang.compiler.program import Program

    key = json.dumps(compiled_program, sort_keys=True)
    if key not in _CHILD_HASHES:  # cairo-lang's Python Pedersen is slow: once per program
        program = Program.load(data=compiled_program)
        _CHILD_HASHES[key] = compute_program_hash_chain(
            program, program_hash_function=HashFunction.PEDERSEN
        )
    child = _CHILD_HASHES[key]
    inner = poseidon_hash_many([1, len(outputs) + 2, child, *outputs])
    return int(poseidon_hash_many([BOOTLOADER_PROGRAM_HASH, inner]))


@dataclass
class Query:
    id: str
    dedup_id: str | None
    form: dict[str, str]
    program: dict[str, Any]
    program_input: dict[str, Any]
    fact: int
    polls: int = 0
    plan: Sequence[str] | None = None  # this query's statuses; None: the server's plan


@dataclass
class FakeAtlantic:
    api_key: str = "test-atlantic-key"
    outputs: Sequence[int] = ()  # what "Atlantic's run" of the program outputs
    plan: Sequence[str] = ("RECEIVED", "IN_PROGRESS", "DONE")  # status per poll, last sticks
    wrong_fact: bool = False
    serve_proof: bool = True
    retry_after: str = "1"
    slow_s: float = 0.5
    job_size: str = "S"
    proof: dict[str, Any] = field(default_factory=lambda: {"proof_hex": "0x1234", "version": 1})

    def __post_init__(self) -> None:
        self.queries: dict[str, Query] = {}
        self.faults: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str]] = []  # (endpoint, outcome)
        self.created = 0  # queries created (what the money is spent on)
        self.plans: list[Sequence[str]] = []  # per created query, in order; then ``plan``
        self.duplicate_posts = 0  # POSTs that reused an existing dedupId
        self.key_in_query_string = False
        self.key_sent_to_storage = False
        self.fact_override: int | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0  # requests being handled (a slow POST may outlive its client)
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""
        self.storage_url = ""

    def script(self, endpoint: str, *faults: str) -> None:
        """Queue ``faults`` for the next requests to ``endpoint``."""
        assert endpoint in ("submit", "lookup", "status", "proof"), endpoint
        assert all(f in FAULTS for f in faults), faults
        self.faults.setdefault(endpoint, []).extend(faults)

    def count(self, endpoint: str) -> int:
        return sum(1 for name, _ in self.requests if name == endpoint)

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Until no request is being handled (e.g. a POST its client gave up on)."""
        with self._idle:
            assert self._idle.wait_for(lambda: self._in_flight == 0, timeout_s), "still busy"

    @contextmanager
    def _handling(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def by_dedup_id(self, dedup_id: str) -> Query:
        (query,) = [q for q in self.queries.values() if q.dedup_id == dedup_id]
        return query

    def set_plan(self, query_id: str, *plan: str) -> None:
        """From now on, ``query_id`` answers ``plan`` (from its first entry)."""
        with self._lock:
            query = self.queries[query_id]
            query.plan, query.polls = plan, 0

    @contextmanager
    def running(self) -> Iterator[FakeAtlantic]:
        server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        server.daemon_threads = True
        port = server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.storage_url = f"http://localhost:{port}"  # another origin: gets no api-key
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        self._server = server
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    # --- request handling (runs in server threads) -------------------------------------

    def _next_fault(self, endpoint: str) -> str | None:
        with self._lock:
            queue = self.faults.get(endpoint)
            return queue.pop(0) if queue else None

    def _record(self, endpoint: str, outcome: str) -> None:
        with self._lock:
            self.requests.append((endpoint, outcome))

    def _create(self, form: dict[str, str], files: dict[str, bytes]) -> tuple[int, Any]:
        program = json.loads(files["programFile"])
        program_input = json.loads(files["inputFile"])
        fact = atlantic_fact(program, list(self.outputs))
        if self.wrong_fact:
            fact = (fact + 1) % (2**251)
        with self._lock:
            dedup = form.get("dedupId")
            if dedup and any(q.dedup_id == dedup for q in self.queries.values()):
                self.duplicate_posts += 1
                return 409, {"error": "conflict", "message": f"dedupId {dedup} already used"}
            query = Query(uuid.uuid4().hex, dedup, form, program, program_input, fact)
            query.plan = self.plans.pop(0) if self.plans else None
            self.queries[query.id] = query
            self.created += 1
        return 200, {"atlanticQueryId": query.id}

    def _status_body(self, query: Query, *, advance: bool) -> dict[str, Any]:
        with self._lock:
            plan = query.plan if query.plan is not None else self.plan
            status = plan[min(query.polls, len(plan) - 1)]
            if advance:
                query.polls += 1
        body: dict[str, Any] = {
            "atlanticQuery": {
                "id": query.id,
                "dedupId": query.dedup_id,
                "status": status,
                "step": "PROOF_GENERATION" if status != "DONE" else None,
                "errorReason": FAILURE_REASON if status == "FAILED" else None,
                "integrityFactHash": None,
                "sharpFactHash": None,
                "programHash": None,
                "layout": query.form.get("layout"),
                "jobSize": self.job_size,
                "declaredJobSize": query.form.get("declaredJobSize"),
                "network": query.form.get("network"),
                "result": query.form.get("result"),
            },
            "metadataUrls": [],
        }
        if status == "DONE":
            fact = self.fact_override if self.fact_override is not None else query.fact
            body["atlanticQuery"]["integrityFactHash"] = hex(fact)
            urls = [f"{self.storage_url}/storage/{query.id}/metadata.json"]
            if self.serve_proof:
                urls.append(f"{self.storage_url}/storage/{query.id}/proof.json")
            body["metadataUrls"] = urls
        return body


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on slow or dropped answers is what the faults are for


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    form: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename():
            files[name] = payload
        else:
            form[name] = payload.decode()
    return form, files


def _handler_for(fake: FakeAtlantic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, *, html: bool = False,
                  headers: dict[str, str] | None = None) -> None:
            data = body.encode() if html else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if html else "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)

        def _fault(self, endpoint: str) -> bool:
            """Play the next scripted fault; True when it answered (or dropped)."""
            fault = fake._next_fault(endpoint)
            if fault is None or fault in ("drop_after_accept", "accept_then_409"):
                self._pending = fault
                return False
            fake._record(endpoint, fault)
            if fault == "slow":
                time.sleep(fake.slow_s)
                return False
            if fault == "drop":
                self._drop()
            elif fault == "429":
                self._send(429, {"error": "too many requests"},
                           headers={"Retry-After": fake.retry_after})
            elif fault == "500json":
                self._send(500, {"error": "internal", "message": "could not process program"})
            elif fault in ("500html", "502", "503", "504"):
                self._send(int(fault[:3]), f"<html><body><h1>{fault[:3]} error</h1></body></html>",
                           html=True)
            elif fault == "html200":
                self._send(200, "<html><body>Please log in</body></html>", html=True)
            elif fault == "402":
                self._send(402, {"error": "insufficient_credits",
                                 "message": "Not enough credits to run this query"})
            elif fault == "400":
                self._send(400, {"error": "bad_request", "message": "invalid layout"})
            elif fault == "404":
                self._send(404, {"error": "not_found", "message": "no query with this dedupId"})
            return True

        def _authorised(self) -> bool:
            query = parse_qs(urlsplit(self.path).query)
            if "apiKey" in query:
                fake.key_in_query_string = True
            if self.headers.get("api-key") != fake.api_key:
                self._send(401, {"error": "unauthorized", "message": "invalid api key"})
                return False
            return True

        def do_POST(self) -> None:
            with fake._handling():
                self._post()

        def _post(self) -> None:
            self._pending: str | None = None
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if urlsplit(self.path).path != "/atlantic-query":
                self._send(404, {"error": "not found"})
                return
            if self._fault("submit") or not self._authorised():
                return
            form, files = _parse_multipart(self.headers["Content-Type"], body)
            status, reply = fake._create(form, files)
            if self._pending == "drop_after_accept":
                fake._record("submit", "drop_after_accept")
                self._drop()
                return
            if self._pending == "accept_then_409":
                fake._record("submit", "accept_then_409")
                self._send(409, {"error": "conflict", "message": "dedupId already used"})
                return
            fake._record("submit", str(status))
            self._send(status, reply)

        def do_GET(self) -> None:
            self._pending = None
            parts = urlsplit(self.path)
            path = parts.path
            if path.startswith("/storage/"):
                if self.headers.get("api-key"):
                    fake.key_sent_to_storage = True
                if self._fault("proof"):
                    return
                query_id, name = path.split("/")[2:4]
                if query_id not in fake.queries or name not in ("proof.json", "metadata.json"):
                    self._send(404, {"error": "not found"})
                    return
                fake._record("proof", "200")
                self._send(200, fake.proof if name == "proof.json" else {"query": query_id})
                return
            if path == "/atlantic-query-by-dedup-id":
                if self._fault("lookup") or not self._authorised():
                    return
                dedup = parse_qs(parts.query).get("dedupId", [""])[0]
                match = [q for q in fake.queries.values() if q.dedup_id == dedup]
                fake._record("lookup", "200" if match else "404")
                if match:
                    self._send(200, fake._status_body(match[0], advance=False))
                else:
                    self._send(404, {"error": "not_found", "message": "no query with this dedupId"})
                return
            if path.startswith("/atlantic-query/"):
                if self._fault("status") or not self._authorised():
                    return
                query = fake.queries.get(path.rsplit("/", 1)[1])
                if query is None:
                    fake._record("status", "404")
                    self._send(404, {"error": "not found"})
                    return
                fake._record("status", "200")
                self._send(200, fake._status_body(query, advance=True))
                return
            self._send(404, {"error": "not found"})

    return Handler
