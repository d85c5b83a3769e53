"""`obsqra-keeper deploy`, the parts that need no node: which network and URL, which
registry the router may trust, the mainnet delay floor, the network deploy TOML, the
record's JSON, the address/felt arguments. The deployment itself is tested on a devnet
(tests/devnet/test_network_deploy.py)."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain import deploy as core
from keeper.chain.codec import FIELD_PRIME
from keeper.chain.integrity import FACT_REGISTRIES
from keeper.cli.commands.deploy_cmd import resolve_network
from keeper.cli.main import main
from keeper.cli.options import address_arg, felt_arg
from keeper.core.errors import EX_CONFIG, EX_USAGE, ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]
SEPOLIA_PARAMS = ROOT / "config" / "deploy.sepolia.toml"
SEPOLIA_REGISTRY = FACT_REGISTRIES["SN_SEPOLIA"]
ORACLE, KEEPER = "0x" + "a1" * 31, "0x" + "b2" * 31


def sepolia_raw() -> dict[str, object]:
    """The shipped Sepolia TOML with its placeholders filled in."""
    text = SEPOLIA_PARAMS.read_text()
    text = text.replace("0xYOUR_ORACLE_ACCOUNT", ORACLE).replace("0xYOUR_KEEPER_ACCOUNT", KEEPER)
    return tomllib.loads(text)


# ---------------------------------------------------------------------------- --network


def test_a_url_is_its_own_network() -> None:
    assert resolve_network("http://node:9545/rpc", None, {}) == ("url", "http://node:9545/rpc")


def test_a_named_network_takes_its_url_from_the_flag_or_the_environment() -> None:
    env = {"STARKNET_RPC": "https://env.example/rpc"}
    assert resolve_network("sepolia", "https://flag.example", env) == (
        "sepolia",
        "https://flag.example",
    )
    assert resolve_network("mainnet", None, env) == ("mainnet", "https://env.example/rpc")


@pytest.mark.parametrize(
    ("network", "rpc_url", "env", "message"),
    [
        ("sepolia", None, {}, "needs its node's JSON-RPC URL"),
        ("goerli", "https://x", {}, "is not sepolia, mainnet or an http(s):// URL"),
        ("http://a", "http://b", {}, "leave out --rpc-url"),
        ("sepolia", "ws://node", {}, "must be an http:// or https:// URL"),
    ],
)
def test_a_network_that_names_no_node_is_refused(
    network: str, rpc_url: str | None, env: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        resolve_network(network, rpc_url, env)


def test_named_networks_check_their_chain_id() -> None:
    core.check_network_chain("sepolia", "SN_SEPOLIA")
    core.check_network_chain("mainnet", "SN_MAIN")
    core.check_network_chain("url", "SN_ANYTHING")
    with pytest.raises(UsageError, match="expects chain SN_MAIN, but the node reports SN_SEPOLIA"):
        core.check_network_chain("mainnet", "SN_SEPOLIA")


# ---------------------------------------------------------------------------- registry


def test_a_known_chain_gets_integrity_s_registry_by_default() -> None:
    chosen = core.choose_fact_registry(
        "SN_SEPOLIA", explicit=None, from_params="integrity", url_network=False, allow_other=False
    )
    assert chosen == SEPOLIA_REGISTRY


def test_a_url_network_must_name_its_registry() -> None:
    with pytest.raises(UsageError, match="needs --fact-registry"):
        core.choose_fact_registry(
            "SN_SEPOLIA",
            explicit=None,
            from_params="integrity",
            url_network=True,
            allow_other=False,
        )
    chosen = core.choose_fact_registry(
        "SN_OTHER", explicit=0x123, from_params="integrity", url_network=True, allow_other=False
    )
    assert chosen == 0x123


def test_another_registry_on_a_known_chain_needs_to_be_allowed() -> None:
    with pytest.raises(UsageError, match="is not Integrity's FactRegistry on SN_MAIN"):
        core.choose_fact_registry(
            "SN_MAIN",
            explicit=0x123,
            from_params="integrity",
            url_network=False,
            allow_other=False,
        )
    chosen = core.choose_fact_registry(
        "SN_MAIN", explicit=None, from_params="0x123", url_network=False, allow_other=True
    )
    assert chosen == 0x123


@given(st.integers(min_value=0, max_value=core.MAINNET_MIN_GOVERNANCE_DELAY_S * 2))
def test_mainnet_refuses_a_delay_under_two_days_unless_told(delay: int) -> None:
    core.check_governance_delay("SN_SEPOLIA", delay, allow_short=False)
    core.check_governance_delay("SN_MAIN", delay, allow_short=True)
    if delay >= core.MAINNET_MIN_GOVERNANCE_DELAY_S:
        core.check_governance_delay("SN_MAIN", delay, allow_short=False)
    else:
        with pytest.raises(ConfigError, match="below the mainnet floor"):
            core.check_governance_delay("SN_MAIN", delay, allow_short=False)


# ---------------------------------------------------------------------------- params


def test_the_shipped_sepolia_params_parse_once_filled_in() -> None:
    params = core.parse_deploy_params(sepolia_raw(), profile=core.NETWORK_PROFILE)
    assert params.oracle == ORACLE and params.keepers == (KEEPER,)
    assert params.fact_registry == "integrity"
    assert params.pins == {"direct_verifier": core.DEFAULT_DIRECT_PIN, "bootloaded_verifier": ()}
    assert params.router["governance_delay_s"] == core.PRODUCTION_GOVERNANCE_DELAY_S
    assert params.router["min_security_bits"] == 96
    assert params.salt == 0 and params.metrics == ()


def test_the_shipped_sepolia_params_refuse_their_placeholders() -> None:
    with pytest.raises(ConfigError) as info:
        core.load_deploy_params(SEPOLIA_PARAMS, core.NETWORK_PROFILE)
    problems = "\n".join(info.value.problems)
    assert "roles.oracle must be a 0x account address" in problems
    assert "roles.keepers[0] must be a 0x account address" in problems


def test_a_network_defaults_to_integrity_a_two_day_delay_and_a_fixed_salt() -> None:
    raw = sepolia_raw()
    router = dict(raw["router"])  # type: ignore[call-overload]
    for key in ("fact_registry", "governance_delay_s", "direct_verifier", "bootloaded_verifier"):
        del router[key]
    params = core.parse_deploy_params(
        {"roles": raw["roles"], "router": router}, profile=core.NETWORK_PROFILE
    )
    assert params.fact_registry == "integrity"
    assert params.router["governance_delay_s"] == core.PRODUCTION_GOVERNANCE_DELAY_S
    assert params.pins["direct_verifier"] == core.DEFAULT_DIRECT_PIN
    assert params.salt == 0


@pytest.mark.parametrize(
    ("table", "key", "value", "problem"),
    [
        ("router", "fact_registry", "dev", "the DevFactRegistry verifies nothing"),
        ("router", "min_security_bits", 79, "router.min_security_bits must be an integer in 80"),
        ("router", "direct_verifier", ["small", "keccak_160_lsb", "stone6", "cairo1"], "strict"),
        ("roles", "keepers", [3], "roles.keepers[0] must be a 0x account address"),
        ("roles", "registrar", KEEPER, "the DevFactRegistry's: devnet only"),
        ("fees", "fee_multiplier", 5, "fees.fee_multiplier must be a number in 1.0..3.0"),
    ],
)
def test_network_params_refuse_what_has_no_place_on_a_real_network(
    table: str, key: str, value: object, problem: str
) -> None:
    raw = sepolia_raw()
    section = dict(raw[table])  # type: ignore[call-overload]
    section[key] = value
    raw[table] = section
    with pytest.raises(ConfigError) as info:
        core.parse_deploy_params(raw, profile=core.NETWORK_PROFILE)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_the_cli_reports_placeholder_params_before_touching_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sepolia.json"
    code = main(
        [
            "deploy",
            "--network",
            "http://127.0.0.1:9",
            "--account",
            "0x1",
            "--keystore",
            str(tmp_path / "absent.json"),
            "--params",
            str(SEPOLIA_PARAMS),
            "--out",
            str(out),
        ]
    )
    assert code == EX_CONFIG
    assert "roles.oracle" in capsys.readouterr().err
    assert not out.exists()


def test_a_url_network_needs_params_and_out(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["deploy", "--network", "http://127.0.0.1:9", "--account", "0x1", "--keystore", "k"]
    )
    assert code == EX_USAGE
    assert "needs --params and --out" in capsys.readouterr().err


# ---------------------------------------------------------------------------- record


@given(
    chain_id=st.integers(1, FIELD_PRIME - 1),
    deployer=st.integers(1, FIELD_PRIME - 1),
    addresses=st.lists(st.integers(1, FIELD_PRIME - 1), min_size=2, max_size=2),
    salt=st.none() | st.integers(0, 2**64 - 1),
    pending=st.booleans(),
)
def test_the_record_round_trips_through_json(
    chain_id: int, deployer: int, addresses: list[int], salt: int | None, pending: bool
) -> None:
    record = core.Deployment(
        chain_id=chain_id,
        rpc_url="https://node.example",
        deployer=deployer,
        network="sepolia",
        block_number=7,
        contracts={
            name: {"address": address, "class_hash": address ^ 1}
            for name, address in zip(core.NETWORK_CONTRACTS, addresses, strict=True)
        },
        program_hash=addresses[0],
        child_program_hash=addresses[1],
        roles={"owner": hex(deployer), "keepers": [hex(deployer)]},
        fact_registry=addresses[1],
        salt=salt,
        pending_tx={"tx_hash": "0x1", "nonce": 3, "sender": hex(deployer)} if pending else None,
    )
    assert core.Deployment.from_json(record.to_json()) == record


def test_a_file_that_is_no_record_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sepolia.json"
    path.write_text("{}")
    with pytest.raises(UsageError, match="is not a deployment record"):
        core.read_deployment(path)


# ---------------------------------------------------------------------------- arguments


@given(st.integers(1, FIELD_PRIME - 1))
def test_addresses_and_felts_parse_from_hex(value: int) -> None:
    assert address_arg(hex(value)) == value
    assert felt_arg(hex(value)) == value == felt_arg(str(value))


@pytest.mark.parametrize("text", ["0x0", "123", "0xnothex", hex(FIELD_PRIME), ""])
def test_what_is_no_address_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        address_arg(text)
