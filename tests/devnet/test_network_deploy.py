"""`obsqra-keeper deploy --network URL`: the real-network deploy, driven through the CLI
against a fresh devnet (``fresh_chain``: its own chain id, Integrity's FactRegistry with a
(small, keccak) verifier) with the shipped config/deploy.sepolia.toml, a keystore and a
password credential file. Outcomes are read back from the chain: the router trusts our
IntegrityGuard, which drives the verifier Integrity's registry has for the direct pin."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starknet_py.net.full_node_client import FullNodeClient

from keeper.chain.deploy import call_view, class_declared, class_hash_at, sierra_class_hash
from keeper.cli import main as cli
from keeper.core.errors import EX_USAGE
from keeper.devnet.deploy import ContractArtifact
from tests.contracts.conftest import (
    CHILD_PROGRAM_HASH,
    DIRECT_PIN,
    PROGRAM_HASH,
    ROOT,
    ZERO_CONFIG,
    AbiCodec,
)
from tests.devnet.conftest import KEEPER, OTHER, PASSWORD, FreshChain

pytestmark = pytest.mark.devnet
PRESET = [int.from_bytes(b"small", "big"), int.from_bytes(b"keccak", "big")]

SEPOLIA_PARAMS = ROOT / "config" / "deploy.sepolia.toml"
NETWORK_CONTRACTS = ("RiskEngine", "StrategyRouterV2", "IntegrityGuard")
# What an uninterrupted deploy on a fresh chain sends: three declares, three deploys (the
# guard's and the router's constructors take their whole configuration; the model
# parameters are the contract's defaults; no initial metrics in the file).
FULL_DEPLOY_TXS = 6


# ---------------------------------------------------------------------------- helpers


def write_params(chain: FreshChain, directory: Path, **router: str) -> Path:
    """config/deploy.sepolia.toml with its placeholders filled in (oracle = the deployer,
    keeper = account 1), [router] lines replaced by ``router`` (TOML values)."""
    text = SEPOLIA_PARAMS.read_text()
    text = text.replace("0xYOUR_ORACLE_ACCOUNT", hex(chain.signer.account.address))
    text = text.replace("0xYOUR_KEEPER_ACCOUNT", hex(chain.account(KEEPER).address))
    lines = text.splitlines()
    for key, value in router.items():
        (index,) = [i for i, line in enumerate(lines) if line.startswith(f"{key} =")]
        lines[index] = f"{key} = {value}"
    path = directory / "deploy.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def deploy(
    chain: FreshChain,
    out: Path,
    *extra: str,
    network: tuple[str, ...] = (),
    params: Path | None = None,
    registry: int | None = None,
) -> int:
    """The CLI's deploy on ``chain``'s devnet by URL (or as ``network`` says)."""
    return cli.main(
        [
            "deploy",
            *(network or ("--network", chain.devnet.url)),
            *extra,
            "--account",
            hex(chain.signer.account.address),
            "--keystore",
            str(chain.signer.keystore),
            "--params",
            str(params or write_params(chain, out.parent)),
            "--out",
            str(out),
            "--contracts-dir",
            str(ROOT / "contracts" / "target"),
            "--fact-registry",
            hex(chain.registry if registry is None else registry),
            "--program-hash",
            hex(PROGRAM_HASH),
            "--child-program-hash",
            hex(CHILD_PROGRAM_HASH),
        ]
    )


@pytest.fixture
def password_credential(fresh_chain: FreshChain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("KEEPER_KEYSTORE_PASSWORD_FILE", str(fresh_chain.signer.password_file))


def deployer_nonce(chain: FreshChain) -> int:
    client = FullNodeClient(node_url=chain.devnet.url)
    address = chain.signer.account.address
    return int(asyncio.run(client.get_contract_nonce(address, block_number="latest")))


def printed_addresses(stdout: str) -> dict[str, int]:
    """``NAME 0x…`` lines of the deploy's output."""
    found = {}
    for line in stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in NETWORK_CONTRACTS and words[1].startswith("0x"):
            found[words[0]] = int(words[1], 16)
    return found


async def router_state(
    chain: FreshChain, codec: AbiCodec, router: int
) -> tuple[dict[str, Any], bool, int]:
    """(get_governance_params, is_keeper(account 1), get_owner) of the router."""
    client = FullNodeClient(node_url=chain.devnet.url)

    async def view(function: str, *args: Any) -> Any:
        raw = await call_view(client, router, function, codec.calldata(function, *args))
        (value,) = codec.decode(function, raw)
        return value

    governance = dict(await view("get_governance_params"))
    is_keeper = bool(await view("is_keeper", chain.account(KEEPER).address))
    return governance, is_keeper, int(await view("get_owner"))


@pytest.fixture(scope="module")
def router_codec(contract_artifacts: dict[str, ContractArtifact]) -> AbiCodec:
    return AbiCodec(contract_artifacts["StrategyRouterV2"].abi)


# ---------------------------------------------------------------------------- (a) deploy


@pytest.mark.usefixtures("password_credential")
def test_deploy_wires_the_router_to_a_guard_over_the_registrys_verifier_and_records_it(
    fresh_chain: FreshChain,
    router_codec: AbiCodec,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "deployment.json"
    assert deploy(fresh_chain, out) == 0
    printed = capsys.readouterr()

    record = json.loads(out.read_text())
    router = int(record["contracts"]["StrategyRouterV2"]["address"], 16)
    risk_engine = int(record["contracts"]["RiskEngine"]["address"], 16)
    guard = int(record["contracts"]["IntegrityGuard"]["address"], 16)
    assert printed_addresses(printed.out) == {
        "RiskEngine": risk_engine,
        "StrategyRouterV2": router,
        "IntegrityGuard": guard,
    }
    governance, is_keeper, owner = asyncio.run(router_state(fresh_chain, router_codec, router))
    assert governance["fact_registry"] == guard
    client = FullNodeClient(node_url=fresh_chain.devnet.url)
    # The guard drives the verifier Integrity's registry has for (small, keccak), under
    # the router's direct pin, with the router's delay.
    (verifier,) = asyncio.run(
        call_view(client, fresh_chain.registry, "get_verifier_address", PRESET)
    )
    pin = asyncio.run(call_view(client, guard, "get_pin"))
    assert pin == [verifier, *DIRECT_PIN.values()]
    assert asyncio.run(call_view(client, guard, "get_governance_delay_s")) == [172800]
    assert asyncio.run(call_view(client, guard, "get_owner")) == [owner]
    assert governance["risk_engine"] == risk_engine
    assert governance["program_hash"] == PROGRAM_HASH
    assert governance["child_program_hash"] == CHILD_PROGRAM_HASH
    pins = {
        "direct": {k: governance[f"direct_{k}"] for k in DIRECT_PIN},
        "bootloaded": {k: governance[f"bootloaded_{k}"] for k in DIRECT_PIN},
    }
    assert pins == {"direct": DIRECT_PIN, "bootloaded": ZERO_CONFIG}
    assert governance["min_security_bits"] == 96
    assert governance["governance_delay_s"] == 172800
    assert is_keeper
    assert owner == fresh_chain.signer.account.address
    (oracle,) = asyncio.run(call_view(client, risk_engine, "get_oracle"))
    assert oracle == fresh_chain.signer.account.address

    assert record["chain"] == "SN_OBSQRA_TEST"
    assert record["network"] == "url"
    assert int(record["fact_registry"], 16) == guard
    assert int(record["program_hash"], 16) == PROGRAM_HASH
    assert int(record["child_program_hash"], 16) == CHILD_PROGRAM_HASH
    assert record["pending_tx"] is None
    assert deployer_nonce(fresh_chain) == FULL_DEPLOY_TXS
    assert printed.out.count("tx 0x") == FULL_DEPLOY_TXS
    for text in (printed.out, printed.err, out.read_text()):
        assert PASSWORD not in text


def test_deploy_without_the_password_credential_is_refused(
    fresh_chain: FreshChain,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("KEEPER_KEYSTORE_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    out = tmp_path / "deployment.json"
    assert deploy(fresh_chain, out) != 0
    assert "keystore_password" in capsys.readouterr().err
    assert not out.exists()
    assert deployer_nonce(fresh_chain) == 0


# ---------------------------------------------------------------------------- (b) dry run


@pytest.mark.usefixtures("password_credential")
def test_dry_run_lists_every_transaction_and_sends_none(
    fresh_chain: FreshChain,
    contract_artifacts: dict[str, ContractArtifact],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "deployment.json"
    assert deploy(fresh_chain, out, "--dry-run") == 0
    printed = capsys.readouterr()

    assert deployer_nonce(fresh_chain) == 0
    assert not out.exists()
    client = FullNodeClient(node_url=fresh_chain.devnet.url)
    for name in NETWORK_CONTRACTS:
        class_hash = sierra_class_hash(contract_artifacts[name])
        assert not asyncio.run(class_declared(client, class_hash))
    listed = [line.split() for line in printed.out.splitlines() if line[:3].strip().isdigit()]
    assert [(words[1], words[2]) for words in listed] == [
        ("declare", "class"),
        ("deploy", "IntegrityGuard"),
        ("declare", "class"),
        ("declare", "class"),
        ("deploy", "RiskEngine"),
        ("deploy", "StrategyRouterV2"),
    ]
    # The declares are estimated; the deploys of undeclared classes say why they are not.
    assert printed.out.count("fee estimate") == 3
    assert printed.out.count("fee not estimable before declaring") == 3
    planned = printed_addresses(printed.out)
    assert set(planned) == set(NETWORK_CONTRACTS)
    for address in planned.values():
        assert asyncio.run(class_hash_at(client, address)) is None
    assert PASSWORD not in printed.out + printed.err
    # The account pays for the estimated ones; the deploys are left to the operator.
    (funds,) = [line for line in printed.err.splitlines() if "transaction(s) need" in line]
    assert f"account {fresh_chain.signer.account.address:#x} holds" in funds
    assert "the 3 estimated transaction(s) need" in funds and "it can pay for them" in funds
    assert "3 more could not be estimated" in funds


@pytest.mark.usefixtures("password_credential")
def test_dry_run_says_when_the_account_cannot_pay(
    fresh_chain: FreshChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from keeper.devnet.deploy import make_account
    from tests.support.funds import drain

    client = FullNodeClient(node_url=fresh_chain.devnet.url)
    chain_id = int(asyncio.run(client.get_chain_id()), 16)
    account = make_account(fresh_chain.devnet.url, fresh_chain.signer.account, chain_id)
    asyncio.run(drain(fresh_chain.devnet, account, to=fresh_chain.account(OTHER).address,
                      keep_fri=1000))
    nonce = deployer_nonce(fresh_chain)
    out = tmp_path / "deployment.json"
    assert deploy(fresh_chain, out, "--dry-run") == 1
    printed = capsys.readouterr()
    assert "it CANNOT pay for them" in printed.err and "short; fund it first" in printed.err
    assert deployer_nonce(fresh_chain) == nonce and not out.exists()


# ---------------------------------------------------------------------------- (c) resume


class CuttingProxy:
    """A pass-through JSON-RPC proxy that cuts the deployer off the node at its ``cut_at``-th
    transaction: that request is forwarded (``deliver``) or not, its answer never comes
    back, and every later request is dropped too (the provider is gone)."""

    WRITES = ("starknet_addDeclareTransaction", "starknet_addInvokeTransaction")

    def __init__(self, upstream: str, cut_at: int, *, deliver: bool) -> None:
        self.upstream, self.cut_at, self.deliver = upstream, cut_at, deliver
        self.writes = 0
        self.cut = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                reply = proxy.forward(body)
                if reply is None:
                    self.close_connection = True  # no answer: the client sees a dropped link
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def forward(self, body: bytes) -> bytes | None:
        if self.cut:
            return None
        if json.loads(body).get("method") in self.WRITES:
            self.writes += 1
            if self.writes == self.cut_at:
                self.cut = True
                if self.deliver:
                    answer = json.loads(self._post(body))
                    assert "result" in answer, answer  # the node took the transaction
                return None
        return self._post(body)

    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        return httpx.post(self.upstream, content=body, headers=headers, timeout=60).content


@contextmanager
def cutting_proxy(upstream: str, cut_at: int, *, deliver: bool) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(upstream, cut_at, deliver=deliver)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
        thread.join(timeout=10)


@pytest.mark.usefixtures("password_credential")
@pytest.mark.parametrize(
    ("cut_at", "deliver", "settled"),
    [
        # RiskEngine's declaration reaches the node, its answer is lost: in flight.
        (3, True, "accepted"),
        # The node is gone before the guard is deployed: never sent.
        (2, False, "never sent"),
    ],
    ids=["deploy-sent-answer-lost", "declare-never-sent"],
)
def test_an_interrupted_deploy_is_finished_by_a_rerun_at_the_same_addresses(
    fresh_chain: FreshChain,
    router_codec: AbiCodec,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cut_at: int,
    deliver: bool,
    settled: str,
) -> None:
    out = tmp_path / "deployment.json"
    assert deploy(fresh_chain, out, "--dry-run") == 0
    planned = printed_addresses(capsys.readouterr().out)

    with cutting_proxy(fresh_chain.devnet.url, cut_at, deliver=deliver) as proxy:
        code = deploy(fresh_chain, out, network=("--network", proxy.url))
    first = capsys.readouterr()
    assert proxy.cut and code != 0
    assert "cannot reach the node" in first.err
    interrupted = json.loads(out.read_text())
    assert interrupted["pending_tx"] is not None  # journaled before it was broadcast
    assert deployer_nonce(fresh_chain) == cut_at - (0 if deliver else 1)

    assert deploy(fresh_chain, out) == 0
    second = capsys.readouterr()
    assert f"{settled}  earlier run's" in second.err
    record = json.loads(out.read_text())
    addresses = {name: int(record["contracts"][name]["address"], 16) for name in planned}
    assert addresses == planned
    assert record["pending_tx"] is None
    # Nothing twice: both runs together sent exactly what one uninterrupted run sends.
    assert deployer_nonce(fresh_chain) == FULL_DEPLOY_TXS
    governance, is_keeper, _ = asyncio.run(
        router_state(fresh_chain, router_codec, addresses["StrategyRouterV2"])
    )
    assert governance["fact_registry"] == addresses["IntegrityGuard"]
    assert governance["risk_engine"] == addresses["RiskEngine"]
    assert is_keeper

    assert deploy(fresh_chain, out, "--dry-run") == 0
    assert "no transaction needed" in capsys.readouterr().out


# ---------------------------------------------------------------------------- (d), (e) refusals


@pytest.mark.usefixtures("password_credential")
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("not-a-contract", "no contract at the fact registry"),
        ("an-account", "has no Integrity verifier for (small, keccak_160_lsb)"),
        ("bootloaded-pin", "router.bootloaded_verifier must be [] on a real network"),
    ],
)
def test_a_registry_that_cannot_verify_the_pins_is_refused_before_any_transaction(
    fresh_chain: FreshChain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    expected: str,
) -> None:
    out = tmp_path / "deployment.json"
    registry, params = fresh_chain.registry, None
    if case == "not-a-contract":
        registry = 0x1234567
    elif case == "an-account":
        registry = fresh_chain.account(OTHER).address
    else:  # Atlantic's facts live in Integrity's registry under a forgeable label
        params = write_params(
            fresh_chain,
            tmp_path,
            bootloaded_verifier='["recursive", "keccak_160_lsb", "stone6", "strict"]',
        )
    assert deploy(fresh_chain, out, params=params, registry=registry) == EX_USAGE
    assert expected in capsys.readouterr().err
    assert deployer_nonce(fresh_chain) == 0
    assert not out.exists()


@pytest.mark.usefixtures("password_credential")
@pytest.mark.parametrize("network", ["sepolia", "mainnet"])
def test_a_named_network_on_a_node_of_another_chain_is_refused(
    fresh_chain: FreshChain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    network: str,
) -> None:
    out = tmp_path / "deployment.json"
    code = deploy(
        fresh_chain, out, network=("--network", network, "--rpc-url", fresh_chain.devnet.url)
    )
    assert code == EX_USAGE
    expected = {"sepolia": "SN_SEPOLIA", "mainnet": "SN_MAIN"}[network]
    assert f"--network {network} expects chain {expected}, but the node reports " in (
        capsys.readouterr().err
    )
    assert deployer_nonce(fresh_chain) == 0
    assert not out.exists()
