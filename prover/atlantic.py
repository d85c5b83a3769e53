"""Client for Herodotus' Atlantic proving service (FACTS §5).

One proof = find-or-submit by ``dedupId`` (the job's idempotency key), poll until DONE or
FAILED within a deadline, download proof.json, and check the fact hash Atlantic reports
against our own computation. A mismatch is never accepted.

Retries (tenacity, per HTTP call, jittered exponential backoff, bounded in attempts AND
seconds) cover infrastructure failures only: connection errors, timeouts, 429 (honouring
Retry-After), 502/503/504, and HTML or other non-JSON bodies (a proxy or load balancer
talking, not Atlantic). A JSON 4xx is final; 402 is its own error (out of credit). A JSON
500 is treated as final too: it is Atlantic's application answering (it parsed our request
and failed on it), and retrying a POST that the service rejected can only duplicate work;
an HTML 500 comes from the infrastructure in front of it and is retried.

The POST is never repeated blindly: every retry of a submission first looks the query up
by dedupId, because a POST whose reply was lost may have been accepted.

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
    code = "atlantic_out_of_credit"


class AtlanticQueryFailedError(AtlanticError):
    code = "atlantic_query_failed"


class AtlanticDeadlineError(AtlanticError):
    """The query did not finish in time. It may still finish: the next call with the same
    dedupId picks it up instead of submitting again."""

    code = "atlantic_deadline"


class AtlanticFactMismatchError(AtlanticError):
    code = "atlantic_fact_mismatch"


class AtlanticBadResponseError(AtlanticError):
    code = "atlantic_bad_response"


@dataclass(frozen=True)
class AtlanticResult:
    query_id: str
    resumed: bool  # an existing query was found by dedupId (nothing submitted)
    proof_path: Path | None  # None when the query verifies on-chain and serves no proof
    proof_bytes: int
    fact_hash: int  # ours (bootloaded fact), equal to Atlantic's integrityFactHash if given
    reported_fact_hash: int | None
    job_size: str | None
    layout: str | None
    wall_seconds: float


class _TransientError(Exception):
    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


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
        dedup_id: str,
        out_dir: Path,
    ) -> AtlanticResult:
        """Get a proof of ``program`` on ``program_input`` whose output must be ``outputs``
        (the local run's), reusing the query already filed under ``dedup_id`` if any."""
        started = self._clock()
        # Our fact first: a program we cannot hash must not cost an Atlantic job.
        child_hash = await asyncio.to_thread(pedersen_program_hash_chain, program)
        expected_fact = bootloaded_fact(child_hash, list(outputs))
        query_id, resumed = await self._find_or_submit(program, program_input, dedup_id)
        log = _log.bind(atlantic_query=query_id, dedup_id=dedup_id)
        log.info("atlantic.query", resumed=resumed)
        query, metadata = await self._wait_done(query_id, started)
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
        proof_path, proof_bytes = await self._download_proof(query_id, metadata, out_dir)
        log.info("atlantic.done", proof_bytes=proof_bytes, job_size=query.get("jobSize"))
        return AtlanticResult(
            query_id=query_id,
            resumed=resumed,
            proof_path=proof_path,
            proof_bytes=proof_bytes,
            fact_hash=expected_fact,
            reported_fact_hash=reported,
            job_size=_opt_str(query.get("jobSize")),
            layout=_opt_str(query.get("layout")),
            wall_seconds=self._clock() - started,
        )

    async def find_by_dedup_id(self, dedup_id: str) -> str | None:
        """The id of the query filed under ``dedup_id``, or None."""
        return await self._retrying("dedup lookup", lambda: self._lookup_once(dedup_id))

    # --- steps -----------------------------------------------------------------------

    async def _find_or_submit(
        self, program: Mapping[str, Any], program_input: Mapping[str, Any], dedup_id: str
    ) -> tuple[str, bool]:
        program_bytes = json.dumps(program).encode()
        input_bytes = json.dumps(program_input).encode()
        submitted = False

        async def once() -> tuple[str, bool]:
            nonlocal submitted
            found = await self._lookup_once(dedup_id)
            if found is not None:
                return found, not submitted
            submitted = True
            try:
                return await self._submit_once(program_bytes, input_bytes, dedup_id), False
            except AtlanticRejectedError as exc:
                if exc.status != 409:
                    raise
            # 409: an earlier POST of ours (whose reply we lost) holds the dedupId.
            found = await self._lookup_once(dedup_id)
            if found is None:
                raise _TransientError("submission: dedupId taken but its query is not visible yet")
            return found, False

        return await self._retrying("submission", once)

    async def _lookup_once(self, dedup_id: str) -> str | None:
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
        query: dict[str, Any] = nested if isinstance(nested, dict) else body
        query_id = query.get("id") or body.get("atlanticQueryId")
        if not isinstance(query_id, str) or not query_id:
            raise AtlanticBadResponseError(
                f"Atlantic's dedup lookup for {dedup_id!r} returned no query id"
            )
        return query_id

    async def _submit_once(self, program: bytes, program_input: bytes, dedup_id: str) -> str:
        s = self._settings
        form = {
            "layout": s.atlantic_layout,
            "cairoVersion": "cairo0",
            "cairoVm": "python",  # Cairo 0 with hints and program_input needs the Python VM
            "result": s.atlantic_result,
            "network": s.atlantic_network,
            "mockFactHash": "false",
            "dedupId": dedup_id,
            "externalId": dedup_id,
        }
        if s.atlantic_declared_job_size:
            form["declaredJobSize"] = s.atlantic_declared_job_size
        files = {
            "programFile": ("program.json", program, "application/json"),
            "inputFile": ("input.json", program_input, "application/json"),
        }
        body = await self._api_once("submission", "POST", "/atlantic-query", data=form, files=files)
        query_id = body.get("atlanticQueryId") if body is not None else None
        if not isinstance(query_id, str) or not query_id:
            raise AtlanticBadResponseError("Atlantic accepted the submission but sent no query id")
        _log.info("atlantic.submitted", atlantic_query=query_id, dedup_id=dedup_id)
        return query_id

    async def _wait_done(
        self, query_id: str, started: float
    ) -> tuple[dict[str, Any], Any]:
        s = self._settings
        deadline = started + s.atlantic_deadline_s
        interval = s.atlantic_poll_interval_s
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
                raise AtlanticQueryFailedError(
                    f"Atlantic query {query_id} FAILED at step {query.get('step')!s}: "
                    f"{query.get('errorReason')!s}. A new proof needs a new idempotency key "
                    "or another prover"
                )
            if status not in ("RECEIVED", "IN_PROGRESS"):
                raise AtlanticBadResponseError(
                    f"Atlantic query {query_id} has unknown status {status!r}"
                )
            if self._clock() + interval > deadline:
                raise AtlanticDeadlineError(
                    f"Atlantic query {query_id} is still {status} after "
                    f"{s.atlantic_deadline_s:g} s (prover.atlantic_deadline_s); it is kept and "
                    "the next attempt with the same job resumes it"
                )
            await self._sleep(interval)
            interval = min(interval * 1.5, s.atlantic_poll_max_interval_s)

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
            return response.content

        raw = await self._retrying("proof download", once)
        try:
            proof = json.loads(raw)
        except ValueError:
            proof = None
        if not isinstance(proof, dict):
            raise AtlanticBadResponseError(f"Atlantic's proof.json for {query_id} is not JSON")
        path = out_dir / "atlantic_proof.json"
        await asyncio.to_thread(_write_atomically, path, raw)
        return path, len(raw)

    # --- HTTP plumbing ---------------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        return {"api-key": self._key.reveal()}

    async def _send(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
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
        raise _TransientError(f"{what}: HTTP {status}", retry_after=_retry_after(response))
    if body is None:  # HTML or garbage: infrastructure in front of Atlantic
        raise _TransientError(f"{what}: HTTP {status} with a non-JSON body")
    detail = _error_detail(body)
    if status == 402:
        raise AtlanticOutOfCreditError(
            "out of Atlantic credit: top up the Herodotus account, then the job can be "
            f"retried (Atlantic said: {detail})"
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
