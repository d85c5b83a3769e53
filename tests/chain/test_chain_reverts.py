"""keeper.chain.reverts: decode_revert_reason on texts captured from a real node,
hand-written ones and generated ones (test_chain_devnet.py checks the live path end to
end); the text and nonce detection of starknet-py's ClientError."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starknet_py.net.client_errors import ClientError

from keeper.chain import decode_revert_reason, encode_short_string
from keeper.chain.reverts import (
    MARKERS,
    NO_REASON,
    error_text,
    is_http_failure,
    is_nonce_error,
    rpc_code,
)

ROUTER = "0x49d36570d4e46f48e99674bd3fcc84644ddd6b96f7c741b1562b82f9e004dc7"
CLASS = "0x5b4b537eaa2399e3aa99c4e2e0208ebd6c71bc1467938cd52c798c601e43564"
SELECTOR = "0x15d40a3d6ca2ac30f4031e42be28da9b056fef9bb7357ac5e85627ee876e5ad"


def felt(text: str) -> str:
    return hex(encode_short_string(text))


# starknet-devnet 0.8.2, execute_allocation with output[1] != current epoch: the receipt's
# revert_reason of the included (REVERTED) transaction. Router 0x7866..., keeper account
# 0x116f... (its __execute__ frame is the innermost "Error in contract").
REAL_RECEIPT_REVERT = (
    "Transaction execution has failed:\n0: Error in the called contract (contract address: "
    "0x078662e7352d062084b0010068b99288486c2d8b914f6e2a55ce945f8792c8b1, class hash: "
    "0x05b4b537eaa2399e3aa99c4e2e0208ebd6c71bc1467938cd52c798c601e43564, selector: "
    "0x015d40a3d6ca2ac30f4031e42be28da9b056fef9bb7357ac5e85627ee876e5ad):\nExecution failed. "
    "Failure reason:\nError in contract (contract address: "
    "0x078662e7352d062084b0010068b99288486c2d8b914f6e2a55ce945f8792c8b1, class hash: "
    "0x05b4b537eaa2399e3aa99c4e2e0208ebd6c71bc1467938cd52c798c601e43564, selector: "
    "0x015d40a3d6ca2ac30f4031e42be28da9b056fef9bb7357ac5e85627ee876e5ad):\nError in contract "
    "(contract address: 0x0116fb7ef21d87e4282c223847dd0458adf7882f126ee995574e744ab0eddca5, "
    "class hash: 0x0659da99d5d309c2393a26fe3dad7b89cbda0f725b40c9e2347b0a7249b7b2de, selector: "
    "0x00d8379cf3a29195ff01cb9d48559cdf2e50fbd58eac249263fffc1ca75a52aa):\n"
    "0x6f75747075742065706f636820213d2063757272656e742065706f6368 "
    "('output epoch != current epoch').\n"
)
# The same call refused by starknet_estimateFee: starknet-py's ClientError message, which
# embeds the structured data as a Python repr (quotes escaped).
REAL_ESTIMATE_MESSAGE = (
    "Client failed with code 41. Message: Transaction execution error. Data: "
    "{'transaction_index': 0, 'execution_error': {'contract_address': "
    "'0x78662e7352d062084b0010068b99288486c2d8b914f6e2a55ce945f8792c8b1', 'class_hash': "
    "'0x5b4b537eaa2399e3aa99c4e2e0208ebd6c71bc1467938cd52c798c601e43564', 'selector': "
    "'0x15d40a3d6ca2ac30f4031e42be28da9b056fef9bb7357ac5e85627ee876e5ad', 'error': "
    "{'contract_address': '0x116fb7ef21d87e4282c223847dd0458adf7882f126ee995574e744ab0eddca5', "
    "'class_hash': '0x659da99d5d309c2393a26fe3dad7b89cbda0f725b40c9e2347b0a7249b7b2de', "
    "'selector': '0xd8379cf3a29195ff01cb9d48559cdf2e50fbd58eac249263fffc1ca75a52aa', 'error': "
    "'Transaction execution has failed:\\n0: Error in the called contract (...):\\n"
    "Execution failed. Failure reason:\\n"
    "0x6f75747075742065706f636820213d2063757272656e742065706f6368 "
    "(\\'output epoch != current epoch\\').\\n "
    '["0x6f75747075742065706f636820213d2063757272656e742065706f6368"]\'}}}'
)
# starknet_estimateFee with a stale nonce (code 41, no felt inside).
REAL_STALE_NONCE = "Account transaction nonce is invalid."


def test_real_receipt_revert_reason() -> None:
    assert decode_revert_reason(REAL_RECEIPT_REVERT) == "output epoch != current epoch"


def test_real_estimate_error_message() -> None:
    assert decode_revert_reason(REAL_ESTIMATE_MESSAGE) == "output epoch != current epoch"


def test_real_text_without_felt() -> None:
    assert decode_revert_reason(REAL_STALE_NONCE) == "Account transaction nonce is invalid"


def test_rendered_panic_inside_nested_call_frames() -> None:
    text = (
        "Transaction execution has failed:\n"
        f"0: Error in the called contract (contract address: {ROUTER}, class hash: {CLASS}, "
        f"selector: {SELECTOR}):\nExecution failed. Failure reason:\n"
        f"Error in contract (contract address: {ROUTER}, class hash: {CLASS}, selector: "
        f"{SELECTOR}):\nError in contract (contract address: {ROUTER}, class hash: {CLASS}, "
        f"selector: {SELECTOR}):\n{felt('output epoch != current epoch')} "
        "('output epoch != current epoch').\n"
    )
    assert decode_revert_reason(text) == "output epoch != current epoch"


def test_bare_felt_is_decoded() -> None:
    text = f"Execution failed. Failure reason: {felt('output epoch != current epoch')}."
    assert decode_revert_reason(text) == "output epoch != current epoch"


def test_entrypoint_failed_markers_are_dropped() -> None:
    marker = felt("ENTRYPOINT_FAILED")
    text = (
        f"Execution failed. Failure reason: ({felt('caller is not keeper')} "
        f"('caller is not keeper'), {marker} ('ENTRYPOINT_FAILED'), {marker} "
        "('ENTRYPOINT_FAILED'))."
    )
    assert decode_revert_reason(text) == "caller is not keeper"


def test_structured_execution_error_as_json() -> None:
    data = {
        "transaction_index": 0,
        "execution_error": {
            "contract_address": ROUTER,
            "class_hash": CLASS,
            "selector": SELECTOR,
            "error": {
                "contract_address": ROUTER,
                "class_hash": CLASS,
                "selector": SELECTOR,
                "error": f"{felt('stale inputs commitment')} ('stale inputs commitment')",
            },
        },
    }
    text = "Client failed with code 41. Message: Transaction execution error. " + json.dumps(data)
    assert decode_revert_reason(text) == "stale inputs commitment"


def test_two_distinct_reasons_are_both_reported() -> None:
    text = f"{felt('fact not registered')}, {felt('argent/multicall-failed')}, {felt('x failed')}"
    assert decode_revert_reason(text) == "fact not registered; x failed"


def test_byte_array_panic_is_read_from_its_quoted_rendering() -> None:
    magic = "0x46a6158a16a947e5916b2a2ca68501a45e93d7110e81aa2d6438b1c57c879a3"
    text = f'Failure reason: ({magic}, 0x0, 0x0, 0x0 ("")), then "a longer byte array message".'
    assert decode_revert_reason(text) == "a longer byte array message"


def test_text_without_felts_falls_back_to_the_last_meaningful_line() -> None:
    text = (
        "Transaction execution has failed:\n"
        f"Error in contract (contract address: {ROUTER}):\n"
        "Insufficient max L2Gas: max amount: 100, actual used: 2500."
    )
    assert (
        decode_revert_reason(text) == "Insufficient max L2Gas: max amount: 100, actual used: 2500"
    )


def test_numbers_and_addresses_are_not_mistaken_for_text() -> None:
    text = f"Requested contract address {ROUTER} is not deployed. Nonce 0x5, index 0x0."
    assert decode_revert_reason(text) == (
        f"Requested contract address {ROUTER} is not deployed. Nonce 0x5, index 0x0"
    )


@pytest.mark.parametrize("text", ["", " \n ", ".", "...", "Failure reason: . \n.."])
def test_text_without_a_reason_says_so(text: str) -> None:
    # Issue 12: "." gave "" (the closing full stop was stripped and nothing was left).
    assert decode_revert_reason(text) == NO_REASON


def test_a_line_of_full_stops_does_not_hide_the_reason_above_it() -> None:
    assert decode_revert_reason("Out of gas.\n.") == "Out of gas"


def test_very_long_unknown_text_is_shortened() -> None:
    assert len(decode_revert_reason("x" * 5000)) <= 300


_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="'\"\\"),
    min_size=3,
    max_size=31,
).filter(lambda s: any(c.isalpha() for c in s) and s.strip() == s and s not in MARKERS)


@given(reason=_TEXT, rendered=st.booleans(), frames=st.integers(0, 4))
def test_any_short_string_panic_is_recovered(reason: str, rendered: bool, frames: int) -> None:
    wrapper = "".join(
        f"Error in contract (contract address: {ROUTER}, class hash: {CLASS}, selector: "
        f"{SELECTOR}):\n"
        for _ in range(frames)
    )
    shown = f" ('{reason}')" if rendered else ""
    text = f"Execution failed. Failure reason:\n{wrapper}{felt(reason)}{shown}.\n"
    assert decode_revert_reason(text) == reason


@given(st.text(max_size=400))
@example(".")
def test_decoding_never_fails_and_never_returns_nothing(text: str) -> None:
    assert decode_revert_reason(text).strip()


def test_error_text_walks_the_structured_frames_but_not_their_addresses() -> None:
    data = {
        "transaction_index": 0,
        "execution_error": {
            "contract_address": ROUTER,
            "class_hash": CLASS,
            "selector": SELECTOR,
            "error": {"contract_address": ROUTER, "error": "inner failure"},
        },
    }
    exc = ClientError(message="Transaction execution error", code=41, data=data)
    text = error_text(exc)
    assert text.splitlines() == [
        "Client failed with code 41. Message: Transaction execution error.",
        "inner failure",
    ]
    assert ROUTER not in text
    assert rpc_code(exc) == 41


@pytest.mark.parametrize(
    ("code", "message", "nonce"),
    [
        (52, "Invalid transaction nonce", True),
        (41, REAL_STALE_NONCE, True),
        (55, "Account validation failed: nonce mismatch, expected 5 got 4", True),
        (41, "Transaction execution error", False),
        (None, "nonsense", False),
    ],
)
def test_nonce_errors_are_recognised(code: int | None, message: str, nonce: bool) -> None:
    assert is_nonce_error(ClientError(message=message, code=code)) is nonce


def test_http_failures_carry_the_status_as_a_string() -> None:
    assert is_http_failure(ClientError(message="Bad Gateway", code="502"))
    assert not is_http_failure(ClientError(message="Transaction execution error", code=41))
    assert rpc_code(ClientError(message="Bad Gateway", code="502")) == 502
    assert rpc_code(ClientError(message="weird", code="x")) is None
