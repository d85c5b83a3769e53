"""Client for Herodotus' Atlantic proving service (FACTS §5).

One job, one paid query for its whole life. The caller names the job with a stable
``job_key`` (the keeper's job id: the same for every attempt, every restart); the query's
``dedupId`` is ``<job_key>#<n>`` where n counts the job's queries Atlantic reported FAILED
(0 for the first). Any call first finds the job's current query — by the query id the
caller persisted from an earlier call, else by looking its dedupId up — and resumes it
(poll, download) instead of submitting. A new query is submitted only when the current one
is FAILED (and at most ``atlantic_max_queries_per_job`` per job), under the next dedupId,
so a crash between seeing FAILED and the new POST still finds the new query. Before every
POST the dedupId is looked up (404 = none); after a POST that got no answer (it may still
be accepted while Atlantic handles it, and the lookup says 404 until then), the dedupId is
looked up over ``atlantic_submit_settle_s`` before any second POST. ``on_query`` hears of
the query as soon as it exists, before anything else can fail, so the caller can persist
its id.

Then: poll until DONE or FAILED within a deadline, download proof.json, and check the fact
hash Atlantic reports against our own computation. A mismatch is never accepted.

Retries (tenacity, per HTTP call, jittered exponential backoff, bounded in attempts AND
seconds) cover infrastructure failures only: connection errors, timeouts, 429 (honouring
Retry-After), 502/503/504, and HTML or other non-JSON bodies (a proxy or load balancer
talking, not Atlantic), on every request including the proof download. A JSON 4xx is
final; 402 is its own error (out of credit). A JSON 500 is treated as final too: it is
Atlantic's application answering (it parsed our request and failed on it), and retrying a
POST that the service rejected can only duplicate work; an HTML 500 comes from the
infrastructure in front of it and is retried.

The API key travels only in the ``api-key`` header, only to the configured base URL (not
to the storage URLs of metadataUrls), and appears in no log, exception or repr.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from prover.errors import InputError, ProverError
from prover.facts import bootloaded_fact, pedersen_program_hash_chain
from prover.settings import ProverSettings

_log = structlog.get_logger(__name__)

_TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
_PROOF_SUFFIX = "/proof.json"
_VERIFYING_RESULTS = frozenset({"PROOF_VERIFICATION_ON_L1", "PROOF_VERIFICATION_ON_L2"})

_T = TypeVar("_T")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


class SupportsSecret(Protocol):
    """pydantic's SecretStr and friends."""

    def get_secret_value(self) -> str: ...


class AtlanticError(ProverError):
    code = "atlantic_failed"


class AtlanticUnavailableError(AtlanticError):
    """Transient failures outlasted the retry budget (the service or network is down)."""

    code = "atlantic_unavailable"


class AtlanticRejectedError(AtlanticError):
    """Atlantic answered with a final error (JSON 4xx, JSON 500)."""

    code = "atlantic_rejected"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class AtlanticOutOfCreditError(AtlanticError):
    """Atlantic answered 402: the Herodotus project of the API key has no credit left.
    ``detail``: what Atlantic said."""

    code = "atlantic_out_of_credit"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class AtlanticFailure:
    """A query Atlantic reported FAILED."""

    query_id: str
    dedup_id: str
    step: str | None
    reason: str | None

    def describe(self) -> str:
        return (
            f"Atlantic query {self.query_id} (dedupId {self.dedup_id}) FAILED at step "
            f"{self.step or 'unknown'}: {self.reason or 'no reason given'}"
        )


class AtlanticQueryFailedError(AtlanticError):
    """The job's current query FAILED. ``next_dedup_id``: where the job's next attempt
    submits its replacement (None when the job may not submit another)."""

    code = "atlantic_query_failed"

    def __init__(
        self, message: str, *, failure: AtlanticFailure, next_dedup_id: str | None
    ) -> None:
        super().__init__(message)
        self.failure = failure
        self.next_dedup_id = next_dedup_id


class AtlanticQueryLimitError(AtlanticError):
    """The job's queries all FAILED and it may not pay for another one."""

    code = "atlantic_query_limit"

    def __init__(self, message: str, *, failure: AtlanticFailure | None) -> None:
        super().__init__(message)
        self.failure = failure


class AtlanticDeadlineError(AtlanticError):
    """The query did not finish in time. It may still finish: the next call with the same
    dedupId picks it up instead of submitting again."""

    code = "atlantic_deadline"


class AtlanticFactMismatchError(AtlanticError):
    code = "atlantic_fact_mismatch"


class AtlanticBadResponseError(AtlanticError):
    code = "atlantic_bad_response"


@dataclass(frozen=True)
class AtlanticQueryRef:
    """The job's current query, told to ``on_query`` as soon as it is known."""

    job_key: str
    query_id: str
    dedup_id: str
    generation: int  # how many FAILED queries of the job came before it
    submitted: bool  # this call's POST created it (else it was found)
    replaces: AtlanticFailure | None  # the FAILED query it follows, when one does


OnQuery = Callable[[AtlanticQueryRef], None]


def query_dedup_id(job_key: str, generation: int) -> str:
    """The dedupId of a job's query after ``generation`` FAILED ones."""
    return f"{job_key}#{generation}"


def _generation_of(job_key: str, dedup_id: object) -> int | None:
    """n when ``dedup_id`` is ``<job_key>#<n>``, else None (not this job's query)."""
    prefix = job_key + "#"
    if not isinstance(dedup_id, str) or not dedup_id.startswith(prefix):
        return None
    suffix = dedup_id[len(prefix) :]
    return int(suffix) if suffix.isascii() and suffix.isdigit() else None


@dataclass(frozen=True)
class AtlanticResult:
    query_id: str
    resumed: bool  # this call submitted nothing: the query already existed
    proof_path: Path | None  # None when the query verifies on-chain and serves no proof
    proof_bytes: int
    fact_hash: int  # ours (bootloaded fact), equal to Atlantic's integrityFactHash if given
    reported_fact_hash: int | None
    job_size: str | None
    layout: str | None
    wall_seconds: float
    dedup_id: str = ""
    generation: int = 0


class _TransientError(Exception):
    """An infrastructure failure worth retrying. ``maybe_delivered``: the request may have
    reached Atlantic (a timeout or a dropped connection after sending, a gateway error):
    for a POST that means it may still be accepted, so it is not simply sent again."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, maybe_delivered: bool = True
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered


class _UnansweredPost(Exception):
    """A POST that got no usable answer and may have been accepted; not retried as it is
    (``_find_or_submit`` looks the dedupId up over the settle window first)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Secret:
    """Holds the API key; prints as ***."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class _Submission:
    program: bytes
    program_input: bytes
    declared_size: str


@dataclass(frozen=True)
class _Found:
    """A query of the job as Atlantic describes it."""

    query_id: str
    dedup_id: str
    generation: int
    status: object
    step: object
    error_reason: object

    @classmethod
    def of(
        cls,
        query: Mapping[str, Any],
        dedup_id: str,
        generation: int,
        *,
        query_id: str | None = None,
    ) -> _Found:
        return cls(
            query_id=query_id or str(query["id"]),
            dedup_id=dedup_id,
            generation=generation,
            status=query.get("status"),
            step=query.get("step"),
            error_reason=query.get("errorReason"),
        )

    def failure(self) -> AtlanticFailure:
        return AtlanticFailure(
            self.query_id, self.dedup_id, _opt_str(self.step), _opt_str(self.error_reason)
        )


class AtlanticClient:
    """Async Atlantic client. Use as ``async with AtlanticClient(settings) as client``."""

    def __init__(
        self,
        settings: ProverSettings,
        *,
        api_key: str | SupportsSecret | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        key = api_key if api_key is not None else settings.atlantic_api_key
        if key is not None and not isinstance(key, str):
            key = key.get_secret_value()
        if not key:
            raise InputError(
                "no Atlantic API key: put it in the secrets file the keeper's config names "
                "(atlantic_api_key) or disable Atlantic in prover.policy"
            )
        self._key = _Secret(key)
        self._settings = settings
        self._base_url = settings.atlantic_base_url.rstrip("/")
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.AsyncClient(
            timeout=settings.atlantic_request_timeout_s, transport=transport
        )
        # dedupId -> when our last POST of it went out and got no answer (this clock).
        self._unanswered_posts: dict[str, float] = {}

    def __repr__(self) -> str:
        network = self._settings.atlantic_network
        return f"AtlanticClient(base_url={self._base_url!r}, network={network!r})"

    async def __aenter__(self) -> AtlanticClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the whole job ---------------------------------------------------------------

    async def prove(
        self,
        *,
        program: Mapping[str, Any],
        program_input: Mapping[str, Any],
        outputs: Sequence[int],
        job_key: str,
        n_steps: int,
        out_dir: Path,
        query_id: str | None = None,
        on_query: OnQuery | None = None,
    ) -> AtlanticResult:
        """Get a proof of ``program`` on ``program_input`` whose output must be ``outputs``
        (the local run's), from the one Atlantic query of the job ``job_key``.

        ``job_key`` must be stable: the same for every attempt of the job, across restarts
        (a key that changes per attempt buys a new query per attempt). ``query_id``: the
        job's query as the caller persisted it from ``on_query``; it is resumed directly
        (a lagging dedupId index cannot hide it). ``on_query`` is called once the job's
        current query is known (right after the POST, or after finding it), before any
        polling, whenever it differs from ``query_id``; if it raises, so does this call,
        and the next call finds the query by its dedupId. ``n_steps`` (the trace length)
        chooses declaredJobSize unless ``atlantic_declared_job_size`` overrides it."""
        if not job_key:
            raise InputError("an Atlantic job key cannot be empty (the keeper's job id)")
        started = self._clock()
        # Our fact first: a program we cannot hash must not cost an Atlantic job.
        child_hash = await asyncio.to_thread(pedersen_program_hash_chain, program)
        expected_fact = bootloaded_fact(child_hash, list(outputs))
        submission = _Submission(
            program=json.dumps(program).encode(),
            program_input=json.dumps(program_input).encode(),
            declared_size=self._settings.atlantic_declared_size(n_steps),
        )
        ref = await self._current_query(job_key, query_id, submission)
        if on_query is not None and ref.query_id != query_id:
            on_query(ref)
        log = _log.bind(atlantic_query=ref.query_id, dedup_id=ref.dedup_id)
        log.info("atlantic.query", submitted=ref.submitted, generation=ref.generation)
        query, metadata = await self._wait_done(ref, started)
        reported = self._checked_fact(query, ref.query_id, expected_fact)
        proof_path, proof_bytes = await self._download_proof(ref.query_id, metadata, out_dir)
        log.info("atlantic.done", proof_bytes=proof_bytes, job_size=query.get("jobSize"))
        return AtlanticResult(
            query_id=ref.query_id,
            resumed=not ref.submitted,
            proof_path=proof_path,
            proof_bytes=proof_bytes,
            fact_hash=expected_fact,
            reported_fact_hash=reported,
            job_size=_opt_str(query.get("jobSize")),
            layout=_opt_str(query.get("layout")),
            wall_seconds=self._clock() - started,
            dedup_id=ref.dedup_id,
            generation=ref.generation,
        )

    async def find_by_dedup_id(self, dedup_id: str) -> str | None:
        """The id of the query filed under ``dedup_id``, or None. A GET: costs nothing."""
        query = await self._lookup(dedup_id)
        return None if query is None else str(query["id"])

    # --- steps -----------------------------------------------------------------------

    def _checked_fact(
        self, query: Mapping[str, Any], query_id: str, expected_fact: int
    ) -> int | None:
        reported = _reported_fact(query, query_id)
        if reported is None and self._settings.atlantic_result == "PROOF_VERIFICATION_ON_L2":
            raise AtlanticBadResponseError(
                f"Atlantic query {query_id} is DONE but reports no integrityFactHash although "
                "it was asked to verify on L2; check the query on Atlantic's dashboard"
            )
        if reported is not None and reported != expected_fact:
            raise AtlanticFactMismatchError(
                f"Atlantic query {query_id} reports fact {reported:#x} but the program and "
                f"outputs give {expected_fact:#x}: the proof is for something else and was "
                "refused. Check that Atlantic ran the same compiled program and input"
            )
        return reported

    async def _current_query(
        self, job_key: str, known_id: str | None, submission: _Submission
    ) -> AtlanticQueryRef:
        """The job's query to wait on: the known one, else the first of the job's dedupIds
        that is not FAILED, else a new query under the first free one."""
        generation, replaces = 0, None
        if known_id is not None:
            known = await self._known_query(job_key, known_id)
            if known is not None and known.status != "FAILED":
                return AtlanticQueryRef(
                    job_key, known_id, known.dedup_id, known.generation, False, None
                )
            if known is not None:
                generation, replaces = known.generation + 1, known.failure()
        while True:
            dedup_id = query_dedup_id(job_key, generation)
            found = await self._lookup(dedup_id)
            if found is None:
                break
            current = _Found.of(found, dedup_id, generation)
            if current.status != "FAILED":
                return AtlanticQueryRef(
                    job_key, current.query_id, dedup_id, generation, False, replaces
                )
            replaces, generation = current.failure(), generation + 1
        limit = self._settings.atlantic_max_queries_per_job
        if generation >= limit:
            last = f" (last: {replaces.describe()})" if replaces is not None else ""
            raise AtlanticQueryLimitError(
                f"job {job_key} has had {generation} Atlantic queries FAILED{last}; "
                f"prover.atlantic_max_queries_per_job is {limit}, so no new paid query is "
                "submitted. Read Atlantic's failure reason, fix the cause, then raise the "
                "limit or let Stone prove",
                failure=replaces,
            )
        if replaces is not None:
            _log.warning(
                "atlantic.replacing_failed_query",
                failed_query=replaces.query_id,
                failed_step=replaces.step,
                failed_reason=replaces.reason,
                dedup_id=dedup_id,
            )
        query_id, submitted = await self._find_or_submit(submission, dedup_id)
        return AtlanticQueryRef(job_key, query_id, dedup_id, generation, submitted, replaces)

    async def _known_query(self, job_key: str, query_id: str) -> _Found | None:
        """The caller's persisted query, unless Atlantic does not know it or it is not this
        job's (then the dedupId walk decides, which never pays twice either)."""
        body = await self._retrying(
            "status poll",
            lambda: self._api_once(
                "status poll", "GET", f"/atlantic-query/{query_id}", none_on_404=True
            ),
        )
        query = body.get("atlanticQuery") if body is not None else None
        dedup_id = query.get("dedupId") if isinstance(query, dict) else None
        generation = _generation_of(job_key, dedup_id)
        if not isinstance(query, dict) or generation is None:
            _log.warning(
                "atlantic.known_query_ignored",
                atlantic_query=query_id,
                reason="unknown to Atlantic" if body is None else "not this job's dedupId",
            )
            return None
        return _Found.of(query, str(dedup_id), generation, query_id=query_id)

    async def _find_or_submit(self, submission: _Submission, dedup_id: str) -> tuple[str, bool]:
        """(query id, whether our POST created it). The caller has just looked ``dedup_id``
        up (404).

        A POST that got no answer (timed out or cut off after sending, a gateway error, a
        409 whose query is not visible yet) may still be accepted while Atlantic handles
        it, and its dedupId lookup answers 404 until then. So it is never followed by
        another POST straight away: the dedupId is looked up over
        ``atlantic_submit_settle_s`` from that POST first (also on a later call of this
        client), and only a window of 404s allows the next POST. A POST refused before it
        could be accepted (no connection, 429, 503) is retried with the usual backoff."""
        s = self._settings
        unanswered: _UnansweredPost | None = None
        for _ in range(s.atlantic_retry_attempts):
            found = await self._settle(dedup_id)
            if found is not None:
                return str(found["id"]), True
            try:
                query_id = await self._retrying(
                    "submission", lambda: self._post_once(submission, dedup_id)
                )
            except _UnansweredPost as exc:
                unanswered = exc
                continue
            self._unanswered_posts.pop(dedup_id, None)
            return query_id, True
        found = await self._settle(dedup_id)
        if found is not None:
            return str(found["id"]), True
        reason = unanswered.reason if unanswered is not None else "no answer"
        raise AtlanticUnavailableError(
            f"Atlantic answered none of {s.atlantic_retry_attempts} submissions of dedupId "
            f"{dedup_id} ({reason}), and the dedupId lookup still finds no query; the job's "
            "next attempt looks it up again before any new submission (nothing is paid "
            "twice); check the network and https://status.herodotus.cloud, or let Stone prove"
        )

    async def _post_once(self, submission: _Submission, dedup_id: str) -> str:
        """One POST. Raises _UnansweredPost when it may have been accepted without our
        hearing of it, _TransientError when it certainly was not (retried)."""
        sent_at = self._clock()
        try:
            return await self._submit_once(submission, dedup_id)
        except _TransientError as exc:
            if not exc.maybe_delivered:
                raise
            self._unanswered_posts[dedup_id] = sent_at
            raise _UnansweredPost(exc.reason) from exc
        except AtlanticRejectedError as exc:
            if exc.status != 409:
                raise
            # An earlier POST of ours (whose reply we lost) holds the dedupId.
            self._unanswered_posts[dedup_id] = sent_at
            raise _UnansweredPost("submission: HTTP 409, the dedupId is taken") from exc

    async def _settle(self, dedup_id: str) -> dict[str, Any] | None:
        """After an unanswered POST of ``dedup_id``: look it up until the query shows or
        ``atlantic_submit_settle_s`` from that POST have passed (one last lookup after
        the window). None at once when no POST of it is unanswered."""
        posted_at = self._unanswered_posts.get(dedup_id)
        if posted_at is None:
            return None
        s = self._settings
        interval = s.atlantic_backoff_base_s
        while True:
            found = await self._lookup(dedup_id)
            if found is not None:
                self._unanswered_posts.pop(dedup_id, None)
                _log.info("atlantic.unanswered_post_found", atlantic_query=found["id"],
                          dedup_id=dedup_id)
                return found
            remaining = posted_at + s.atlantic_submit_settle_s - self._clock()
            if remaining <= 0:
                _log.warning(
                    "atlantic.unanswered_post_not_accepted",
                    dedup_id=dedup_id,
                    settle_s=s.atlantic_submit_settle_s,
                )
                return None
            await self._sleep(min(interval, remaining))
            interval = min(interval * 2, s.atlantic_backoff_max_s)

    async def _lookup(self, dedup_id: str) -> dict[str, Any] | None:
        return await self._retrying("dedup lookup", lambda: self._lookup_once(dedup_id))

    async def _lookup_once(self, dedup_id: str) -> dict[str, Any] | None:
        """The query filed under ``dedup_id`` (its ``id`` checked), or None on 404."""
        body = await self._api_once(
            "dedup lookup",
            "GET",
            "/atlantic-query-by-dedup-id",
            params={"dedupId": dedup_id},
            none_on_404=True,
        )
        if body is None:
            return None
        nested = body.get("atlanticQuery")
        query: dict[str, Any] = dict(nested) if isinstance(nested, dict) else dict(body)
        query_id = query.get("id") or body.get("atlanticQueryId")
        if not isinstance(query_id, str) or not query_id:
            raise AtlanticBadResponseError(
                f"Atlantic's dedup lookup for {dedup_id!r} returned no query id"
            )
        query["id"] = query_id
        return query

    async def _submit_once(self, submission: _Submission, dedup_id: str) -> str:
        s = self._settings
        form = {
            "layout": s.atlantic_layout,
            "cairoVersion": "cairo0",
            "cairoVm": "python",  # Cairo 0 with hints and program_input needs the Python VM
            "result": s.atlantic_result,
            "network": s.atlantic_network,
            "mockFactHash": "false",
            "declaredJobSize": submission.declared_size,
            "dedupId": dedup_id,
            "externalId": dedup_id,
        }
        files = {
            "programFile": ("program.json", submission.program, "application/json"),
            "inputFile": ("input.json", submission.program_input, "application/json"),
        }
        body = await self._api_once("submission", "POST", "/atlantic-query", data=form, files=files)
        query_id = body.get("atlanticQueryId") if body is not None else None
        if not isinstance(query_id, str) or not query_id:
            raise AtlanticBadResponseError("Atlantic accepted the submission but sent no query id")
        _log.info(
            "atlantic.submitted",
            atlantic_query=query_id,
            dedup_id=dedup_id,
            declared_job_size=submission.declared_size,
        )
        return query_id

    async def _wait_done(
        self, ref: AtlanticQueryRef, started: float
    ) -> tuple[dict[str, Any], Any]:
        s = self._settings
        deadline = started + s.atlantic_deadline_s
        interval = s.atlantic_poll_interval_s
        query_id = ref.query_id
        while True:
            body = await self._retrying(
                "status poll",
                lambda: self._api_once("status poll", "GET", f"/atlantic-query/{query_id}"),
            )
            query = body.get("atlanticQuery") if body is not None else None
            if not isinstance(query, dict):
                raise AtlanticBadResponseError(
                    f"Atlantic's status for query {query_id} has no atlanticQuery object"
                )
            status = query.get("status")
            if status == "DONE":
                return query, body.get("metadataUrls") if body else None
            if status == "FAILED":
                raise self._query_failed(ref, query)
            if status not in ("RECEIVED", "IN_PROGRESS"):
                raise AtlanticBadResponseError(
                    f"Atlantic query {query_id} has unknown status {status!r}"
                )
            if self._clock() + interval > deadline:
                raise AtlanticDeadlineError(
                    f"Atlantic query {query_id} is still {status} after "
                    f"{s.atlantic_deadline_s:g} s (prover.atlantic_deadline_s); it is kept and "
                    "the job's next attempt resumes it (nothing is submitted again)"
                )
            await self._sleep(interval)
            interval = min(interval * 1.5, s.atlantic_poll_max_interval_s)

    def _query_failed(
        self, ref: AtlanticQueryRef, query: Mapping[str, Any]
    ) -> AtlanticQueryFailedError:
        failure = _Found.of(query, ref.dedup_id, ref.generation, query_id=ref.query_id).failure()
        next_generation = ref.generation + 1
        limit = self._settings.atlantic_max_queries_per_job
        if next_generation < limit:
            next_dedup_id: str | None = query_dedup_id(ref.job_key, next_generation)
            then = f"the job's next attempt submits a new query under dedupId {next_dedup_id}"
        else:
            next_dedup_id = None
            then = (
                f"the job has used the {limit} queries prover.atlantic_max_queries_per_job "
                "allows, so no new one will be submitted: fix the cause or let Stone prove"
            )
        return AtlanticQueryFailedError(
            f"{failure.describe()}; {then}", failure=failure, next_dedup_id=next_dedup_id
        )

    async def _download_proof(
        self, query_id: str, metadata: Any, out_dir: Path
    ) -> tuple[Path | None, int]:
        url = _proof_url(metadata)
        if url is None:
            if self._settings.atlantic_result in _VERIFYING_RESULTS:
                return None, 0  # the fact is registered on-chain; no proof file is needed
            raise AtlanticBadResponseError(
                f"Atlantic query {query_id} is DONE but lists no {_PROOF_SUFFIX} in metadataUrls"
            )

        async def once() -> bytes:
            # Storage URLs get no api-key: the key is only for Atlantic's own API.
            headers = self._auth_headers() if url.startswith(self._base_url + "/") else {}
            response = await self._send("proof download", "GET", url, headers=headers)
            if response.status_code != 200:
                _raise_for_status("proof download", response, _json_body(response))
            if not isinstance(_json_body(response), dict):
                # A 200 with an HTML or garbage body is a proxy or storage hiccup, not a
                # proof: retried like any other infrastructure failure.
                raise _TransientError("proof download: HTTP 200 but the body is not a JSON proof")
            return response.content

        raw = await self._retrying("proof download", once)
        path = out_dir / "atlantic_proof.json"
        await asyncio.to_thread(_write_atomically, path, raw)
        return path, len(raw)

    # --- HTTP plumbing ---------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"api-key": self._key.reveal()}

    async def _send(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing was sent: the request cannot have reached Atlantic.
            raise _TransientError(
                f"{what}: no connection ({exc.__class__.__name__})", maybe_delivered=False
            ) from exc
        except httpx.TimeoutException as exc:
            raise _TransientError(f"{what}: timed out ({exc.__class__.__name__})") from exc
        except httpx.TransportError as exc:
            raise _TransientError(f"{what}: connection failed ({exc.__class__.__name__})") from exc

    async def _api_once(
        self,
        what: str,
        method: str,
        path: str,
        *,
        none_on_404: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        response = await self._send(
            what, method, self._base_url + path, headers=self._auth_headers(), **kwargs
        )
        body = _json_body(response)
        if response.status_code == 404 and none_on_404:
            return None
        if response.status_code >= 300 or body is None:
            _raise_for_status(what, response, body)
        if not isinstance(body, dict):
            raise AtlanticBadResponseError(f"Atlantic's {what} reply is not a JSON object")
        return body

    async def _retrying(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        s = self._settings
        start = self._clock()

        def stop(state: RetryCallState) -> bool:
            return (
                state.attempt_number >= s.atlantic_retry_attempts
                or self._clock() - start >= s.atlantic_retry_budget_s
            )

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = exc.retry_after if isinstance(exc, _TransientError) else None
            if retry_after is None:  # full jitter exponential backoff
                ceiling = s.atlantic_backoff_base_s * 2 ** (state.attempt_number - 1)
                retry_after = random.uniform(0, min(ceiling, s.atlantic_backoff_max_s))
            remaining = s.atlantic_retry_budget_s - (self._clock() - start)
            delay = max(0.0, min(retry_after, remaining))
            _log.warning(
                "atlantic.retry",
                call=what,
                attempt=state.attempt_number,
                reason=exc.reason if isinstance(exc, _TransientError) else None,
                wait_s=round(delay, 3),
            )
            return delay

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_TransientError),
            stop=stop,
            wait=wait,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except _TransientError as exc:
            raise AtlanticUnavailableError(
                f"Atlantic {what} kept failing ({exc.reason}) through "
                f"{s.atlantic_retry_attempts} attempts / {s.atlantic_retry_budget_s:g} s; "
                "check the network and https://status.herodotus.cloud, or let Stone prove"
            ) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _raise_for_status(what: str, response: httpx.Response, body: Any) -> None:
    status = response.status_code
    if status in _TRANSIENT_STATUS:
        raise _TransientError(
            f"{what}: HTTP {status}",
            retry_after=_retry_after(response),
            # 429 and 503 refuse the request; 502 and 504 come from a gateway that may
            # have passed it on before it gave up.
            maybe_delivered=status in (502, 504),
        )
    if body is None:  # HTML or garbage: infrastructure in front of Atlantic
        raise _TransientError(f"{what}: HTTP {status} with a non-JSON body")
    detail = _error_detail(body)
    if status == 402:
        raise AtlanticOutOfCreditError(
            "out of Atlantic credit: top up the credit of the Herodotus Cloud project this API "
            f"key belongs to, then the job can be retried (Atlantic said: {detail})",
            detail=detail,
        )
    if status in (401, 403):
        raise AtlanticRejectedError(
            f"Atlantic refused the API key on {what} (HTTP {status}: {detail}): check the "
            "atlantic_api_key secret",
            status=status,
        )
    if status >= 300:
        raise AtlanticRejectedError(f"Atlantic rejected the {what}: HTTP {status}: {detail}",
                                    status=status)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _error_detail(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("message", "error", "errorReason", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])[:300]
    return json.dumps(body)[:300]


def _reported_fact(query: Mapping[str, Any], query_id: str) -> int | None:
    value = query.get("integrityFactHash")
    if value in (None, ""):
        return None
    try:
        return int(str(value), 16) if not isinstance(value, int) else value
    except ValueError as exc:
        raise AtlanticBadResponseError(
            f"Atlantic query {query_id} reports an unreadable integrityFactHash {value!r}"
        ) from exc


def _proof_url(metadata: Any) -> str | None:
    if isinstance(metadata, dict):
        urls = list(metadata.values())
    elif isinstance(metadata, list):
        urls = metadata
    else:
        return None
    for url in urls:
        if isinstance(url, str) and url.split("?", 1)[0].endswith(_PROOF_SUFFIX):
            return url
    return None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
