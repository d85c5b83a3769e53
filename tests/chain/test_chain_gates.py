"""Startup gates against stand-in nodes: wrong chain, unreachable node, not JSON-RPC,
and the dev prover's devnet gate. Every error names the node as scheme://host[:port]:
the rest of an RPC URL (path, query, user info) often holds the provider's key."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler

import pytest
from pydantic import SecretStr
from starknet_py.constants import EXPECTED_RPC_VERSION

from keeper.chain import (
    ChainClient,
    ChainUnreachableError,
    UnexpectedAnswerError,
    WrongChainError,
    parse_chain_id,
)
from keeper.core.config import ChainConfig, Secrets
from keeper.devnet.dev_prover import DevProver, DevProverRefusedError
from tests.chain.fake_rpc import serve_http, serve_rpc

KEY = Secrets(account_private_key=SecretStr("0x71d7bb07b9a64f6f78ac4c816aff4da9"))
# What providers put in the URL (Infura-style path key, query key, basic auth).
PROVIDER_KEY = "/v3/0123secretpathkey?apikey=secretquerykey"


def keyed(url: str) -> str:
    return url.replace("http://", "http://keeper:secretpassword@") + PROVIDER_KEY


def assert_shows_only_the_endpoint(message: str, url: str) -> None:
    assert url in message  # http://127.0.0.1:PORT
    for secret in ("secretpathkey", "secretquerykey", "secretpassword", "apikey", "/v3"):
        assert secret not in message


def client(url: str, chain_id: str = "SN_SEPOLIA", rpc_timeout_s: float = 5.0) -> ChainClient:
    cfg = ChainConfig(
        rpc_url=url,
        chain_id=chain_id,
        router_address="0x1",
        risk_engine_address="0x2",
        account_address="0x3",
    )
    return ChainClient(cfg, KEY, rpc_timeout_s=rpc_timeout_s)


def node_answers(chain: str) -> dict[str, object]:
    return {
        "starknet_chainId": hex(parse_chain_id(chain)),
        "starknet_specVersion": EXPECTED_RPC_VERSION,
        "starknet_blockNumber": 7,
    }


async def test_matching_chain_passes_the_gate() -> None:
    with serve_rpc(node_answers("SN_SEPOLIA")) as url:
        info = await client(url, "0x534e5f5345504f4c4941").check_chain()
    assert (info.chain_name, info.block_number, info.spec_version) == (
        "SN_SEPOLIA",
        7,
        EXPECTED_RPC_VERSION,
    )


async def test_wrong_chain_is_refused_naming_both() -> None:
    with (
        serve_rpc(node_answers("SN_SEPOLIA")) as url,
        pytest.raises(WrongChainError, match=r"SN_SEPOLIA.*SN_MAIN") as caught,
    ):
        await client(keyed(url), "SN_MAIN").check_chain()
    assert caught.value.code == "wrong_chain"
    assert_shows_only_the_endpoint(str(caught.value), url)


async def test_unreachable_node() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ChainUnreachableError, match="cannot reach") as caught:
        await client(keyed(url)).check_chain()
    assert caught.value.code == "rpc_unreachable"
    assert_shows_only_the_endpoint(str(caught.value), url)


async def test_a_node_that_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections wait in the backlog; nothing ever answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ChainUnreachableError, match="no answer from") as caught:
            await client(keyed(url), rpc_timeout_s=0.2).check_chain()
    assert_shows_only_the_endpoint(str(caught.value), url)


async def test_an_http_error_status() -> None:
    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"unauthorized: bad key"
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    with (
        serve_http(Refuse) as url,
        pytest.raises(ChainUnreachableError, match="answered HTTP 401") as caught,
    ):
        await client(keyed(url)).check_chain()
    assert_shows_only_the_endpoint(str(caught.value), url)


async def test_a_library_error_that_quotes_the_url_is_cut() -> None:
    """aiohttp's TooManyRedirects renders the full request URL, key included."""

    class RedirectLoop(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    with (
        serve_http(RedirectLoop) as url,
        pytest.raises(ChainUnreachableError, match="TooManyRedirects") as caught,
    ):
        await client(keyed(url)).check_chain()
    assert_shows_only_the_endpoint(str(caught.value), url)


async def test_a_server_that_is_not_json_rpc() -> None:
    class Html(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    with (
        serve_http(Html) as url,
        pytest.raises(UnexpectedAnswerError, match="not Starknet JSON-RPC") as caught,
    ):
        await client(keyed(url)).check_chain()
    assert_shows_only_the_endpoint(str(caught.value), url)


async def test_dev_prover_refuses_a_node_without_devnet_methods() -> None:
    with serve_rpc(node_answers("SN_SEPOLIA")) as url:
        prover = DevProver(client(keyed(url)))
        with pytest.raises(DevProverRefusedError, match="not a starknet-devnet") as caught:
            await prover.register([1, 2, 3], program_hash=5, security_bits=96)
    assert caught.value.code == "dev_prover_not_devnet"
    assert_shows_only_the_endpoint(str(caught.value), url)


async def test_dev_prover_refuses_mainnet_even_if_it_claims_to_be_a_devnet() -> None:
    answers = {**node_answers("SN_MAIN"), "devnet_getConfig": {"seed": 0}}
    with (
        serve_rpc(answers) as url,
        pytest.raises(DevProverRefusedError, match="never runs on SN_MAIN") as caught,
    ):
        await DevProver(client(keyed(url), "SN_MAIN")).ensure_devnet()
    assert_shows_only_the_endpoint(str(caught.value), url)


async def test_dev_prover_accepts_a_node_serving_devnet_config() -> None:
    answers = {**node_answers("SN_SEPOLIA"), "devnet_getConfig": {"seed": 0}}
    with serve_rpc(answers) as url:
        await DevProver(client(url)).ensure_devnet()
