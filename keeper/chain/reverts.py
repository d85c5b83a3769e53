"""Reading a node's errors: the readable revert reason inside its text, the JSON-RPC code,
and whether the node complained about the nonce. Pure."""

from __future__ import annotations

import re

from starknet_py.net.client_errors import ClientError

from keeper.chain.codec import decode_short_string

NO_REASON = "(no reason given)"

# JSON-RPC error codes (Starknet spec) the client treats specially.
CONTRACT_NOT_FOUND = 20
TXN_HASH_NOT_FOUND = 29
CONTRACT_ERROR = 40
TRANSACTION_EXECUTION_ERROR = 41
INVALID_TRANSACTION_NONCE = 52

# Markers every Cairo 1 failure chain carries; they say nothing about the cause.
MARKERS = frozenset(
    {
        "ENTRYPOINT_FAILED",
        "argent/multicall-failed",
        "Execution failed",
    }
)
# `0x6f75...` optionally followed by its own rendering `('output ...')`.
_FELT_RE = re.compile(r"0x([0-9a-fA-F]{1,64})(?:\s*\('((?:[^'\\]|\\.)*)'\))?")
# Cairo's ByteArray panics are rendered as a quoted string.
_BYTE_ARRAY_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FAILURE_REASON_RE = re.compile(r"Failure reason:\s*(.+)", re.DOTALL)
_MAX_FALLBACK = 300
_FRAME_KEYS = frozenset({"contract_address", "class_hash", "selector"})
_NONCE_RE = re.compile(
    r"invalid\s*transaction\s*nonce|InvalidTransactionNonce|nonce is invalid"
    r"|nonce.{0,40}(?:got|expected)",
    re.IGNORECASE,
)


def decode_revert_reason(text: str) -> str:
    """The readable reason in a node's revert/execution-error text; never empty.

    Cairo panics reach us as felts (``0x6f75747075742065706f6368...``), sometimes already
    rendered (``0x... ('output epoch != current epoch')``), wrapped in one "Error in
    contract" layer per call frame and followed by ENTRYPOINT_FAILED markers. The first
    short string that is not such a marker is the cause; several are joined with "; ".
    Without any, the text's last meaningful line is returned, shortened.
    """
    reasons: list[str] = []

    def keep(reason: str) -> None:
        reason = reason.strip()
        if reason and reason not in MARKERS and reason not in reasons:
            reasons.append(reason)

    for match in _FELT_RE.finditer(text):
        digits, rendered = match.group(1), match.group(2)
        if rendered is not None:
            keep(rendered)
            continue
        decoded = decode_short_string(int(digits, 16))
        # A bare felt counts only when it clearly is text, not an address or a number.
        if decoded is not None and len(decoded) >= 3 and any(c.isalpha() for c in decoded):
            keep(decoded)
    if not reasons:
        for match in _BYTE_ARRAY_RE.finditer(text):
            keep(match.group(1))
    if reasons:
        return "; ".join(reasons)
    return _fallback_reason(text)


def _fallback_reason(text: str) -> str:
    failure = _FAILURE_REASON_RE.search(text)
    body = failure.group(1) if failure else text
    # Closing full stops are dropped; a line of nothing but full stops says nothing.
    lines = [text for line in body.splitlines() if (text := line.strip().rstrip(".").rstrip())]
    meaningful = [ln for ln in lines if not ln.startswith(("Error in contract", "Error at pc"))]
    reason = (meaningful or lines or [NO_REASON])[-1]
    if len(reason) > _MAX_FALLBACK:
        reason = reason[: _MAX_FALLBACK - 1] + "…"
    return reason


def error_text(exc: ClientError) -> str:
    """The error's message and the texts inside its structured ``data`` (RPC 0.8+ nests
    one ``{contract_address, class_hash, selector, error}`` per call frame)."""
    message = str(exc.message)
    if not isinstance(exc.data, dict | list):
        return message
    message = message.split(" Data: ", 1)[0]  # starknet-py appends the data's repr
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in _FRAME_KEYS:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            texts.append(node)

    walk(exc.data)
    return "\n".join([message, *texts])


def rpc_code(exc: ClientError) -> int | None:
    """The JSON-RPC error code, or None when there is none (or it is not a number)."""
    try:
        return int(exc.code) if exc.code is not None else None
    except (TypeError, ValueError):
        return None


def is_http_failure(exc: ClientError) -> bool:
    """Whether starknet-py reports a non-2xx HTTP answer (the status, a string, in ``code``)."""
    return isinstance(exc.code, str) and exc.code.isdigit() and int(exc.code) >= 300


def is_nonce_error(exc: ClientError) -> bool:
    return rpc_code(exc) == INVALID_TRANSACTION_NONCE or bool(_NONCE_RE.search(error_text(exc)))
