"""`obsqra-keeper devnet deploy`: a real deployment (the router's whole configuration in
its constructor), its record, a second run that finds everything in place, and changed
values converged through the router's timelock."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from keeper.chain.governance import GovernanceParams, VerifierConfig
from keeper.cli import main as cli
from keeper.core.errors import ConfigError
from keeper.devnet import deploy as devnet_deploy
from tests.contracts.conftest import (
    CHILD_PROGRAM_HASH,
    DEPLOY_PARAMS,
    PROGRAM_HASH,
    ROOT,
)
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet


def run_deploy(devnet: Devnet, out: Path, *extra: str) -> int:
    return cli.main(
        [
            "devnet",
            "deploy",
            "--rpc-url",
            devnet.url,
            "--params",
            str(DEPLOY_PARAMS),
            "--out",
            str(out),
            "--contracts-dir",
            str(ROOT / "contracts" / "target"),
            "--program-hash",
            hex(PROGRAM_HASH),
            "--child-program-hash",
            hex(CHILD_PROGRAM_HASH),
            *extra,
        ]
    )


def test_cli_deploy_twice_reuses_everything(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "devnet.json"
    assert run_deploy(devnet, out) == 0
    first = json.loads(out.read_text())
    first_stderr = capsys.readouterr().err
    assert "deployed  contract StrategyRouterV2" in first_stderr

    assert run_deploy(devnet, out) == 0
    second = json.loads(out.read_text())
    second_out = capsys.readouterr()

    assert second["contracts"] == first["contracts"]
    assert "deployed" not in second_out.err
    # The constructor took the whole configuration: no change is needed, first run or not.
    router_lines = [
        line for line in (first_stderr + second_out.err).splitlines() if "StrategyRouterV2." in line
    ]
    assert router_lines and all(line.split()[0] == "unchanged" for line in router_lines)
    assert " set  " not in second_out.err
    for name in devnet_deploy.CONTRACT_NAMES:
        assert f"{name} 0x" in second_out.out
    assert first["chain_id"] == hex(int(devnet.rpc("starknet_chainId"), 16))
    assert first["deployer"] == hex(devnet.accounts[0].address)
    assert first["program_hash"] == hex(PROGRAM_HASH)
    assert first["roles"]["keepers"] == [hex(devnet.accounts[1].address)]
    assert first["block_number"] > 0


async def _governance(devnet: Devnet, router: int) -> GovernanceParams:
    client = devnet_deploy_client(devnet)
    raw = await devnet_deploy.call_view(client, router, "get_governance_params")
    return GovernanceParams.from_values(raw)


async def test_changed_values_are_converged_through_the_timelock(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    tmp_path: Path,
) -> None:
    out = tmp_path / "devnet.json"
    params = devnet_deploy.load_deploy_params(DEPLOY_PARAMS)
    deployment, _ = await devnet_deploy.deploy_devnet(
        devnet.url, params, contract_artifacts, out, program_hash=1, child_program_hash=2
    )
    router = deployment.address("StrategyRouterV2")
    gov = await _governance(devnet, router)
    assert (gov.program_hash, gov.child_program_hash, gov.governance_delay_s) == (1, 2, 0)
    assert gov.direct_pin == VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")

    assert params.model_params is not None
    model = (params.model_params[0], 90, *params.model_params[2:])
    changed = replace(
        params,
        router={**params.router, "drift_threshold_bps": 123},
        pins={**params.pins, "bootloaded_verifier": ()},
        model_params=model,
        oracle=2,  # devnet account 2
    )
    again, report = await devnet_deploy.deploy_devnet(
        devnet.url, changed, contract_artifacts, out, program_hash=1, child_program_hash=3
    )
    actions = dict(report)
    assert again.contracts == deployment.contracts
    # RiskEngine's own timelock, also at delay 0.
    risk_engine = deployment.address("RiskEngine")
    oracle = devnet_deploy.predeployed_accounts(devnet.url)[2].address
    assert actions["RiskEngine.model_params"] == "set"
    assert actions[f"RiskEngine.oracle = {oracle:#x}"] == "set"
    assert actions["RiskEngine.governance_delay_s"] == "unchanged"
    client = devnet_deploy_client(devnet)
    assert tuple(await devnet_deploy.call_view(client, risk_engine, "get_model_params")) == model
    assert await devnet_deploy.call_view(client, risk_engine, "get_oracle") == [oracle]
    # governance_delay_s is 0: proposed and applied in one multicall.
    assert actions["StrategyRouterV2.drift_threshold_bps = 123"] == "set"
    assert actions["StrategyRouterV2.child_program_hash = 3"] == "set"
    assert actions["StrategyRouterV2.bootloaded_verifier = unset"] == "set"
    assert actions["StrategyRouterV2.program_hash = 1"] == "unchanged"
    gov = await _governance(devnet, router)
    assert (gov.drift_threshold_bps, gov.child_program_hash) == (123, 3)
    assert gov.bootloaded_pin is None


async def test_with_a_delay_a_change_is_proposed_then_applied_by_a_later_run(
    devnet: Devnet,
    contract_artifacts: dict[str, devnet_deploy.ContractArtifact],
    tmp_path: Path,
) -> None:
    out = tmp_path / "devnet.json"
    params = devnet_deploy.load_deploy_params(DEPLOY_PARAMS)
    params = replace(params, router={**params.router, "governance_delay_s": 3600})
    deployment, _ = await devnet_deploy.deploy_devnet(
        devnet.url, params, contract_artifacts, out, program_hash=1, child_program_hash=2
    )
    router = deployment.address("StrategyRouterV2")
    assert params.model_params is not None
    model = (params.model_params[0], 90, *params.model_params[2:])
    changed = replace(
        params, router={**params.router, "max_single_bps": 6000}, model_params=model
    )

    async def converge() -> tuple[str, str]:
        _, report = await devnet_deploy.deploy_devnet(
            devnet.url, changed, contract_artifacts, out, program_hash=1, child_program_hash=2
        )
        actions = dict(report)
        return actions["StrategyRouterV2.max_single_bps = 6000"], actions["RiskEngine.model_params"]

    assert all(a.startswith("proposed (eta in 3600 s") for a in await converge())
    assert all(a.startswith("pending (eta ") for a in await converge())  # nothing sent yet
    assert (await _governance(devnet, router)).max_single_bps == 5000
    devnet.increase_time(3600)
    devnet.create_block()
    assert await converge() == ("set", "set")
    assert (await _governance(devnet, router)).max_single_bps == 6000
    risk_engine = deployment.address("RiskEngine")
    client = devnet_deploy_client(devnet)
    assert tuple(await devnet_deploy.call_view(client, risk_engine, "get_model_params")) == model
    assert await converge() == ("unchanged", "unchanged")


def devnet_deploy_client(devnet: Devnet) -> object:
    from starknet_py.net.full_node_client import FullNodeClient

    return FullNodeClient(node_url=devnet.url)


def test_deploy_params_report_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "[router]\nmax_single_bps = 0\nbogus = 1\nmin_security_bits = 79\n"
        'direct_verifier = ["small", "keccak_160_lsb", "stone6", "relaxed"]\n'
        'bootloaded_verifier = ["recursive", "keccak_160_lsb"]\n\n'
        "[[protocols]]\nutilization_bps = 20000\nvolatility_bps = 1\nliquidity_tier = 0\n"
        "audit_score = 50\nage_days = 1\napy_bps = 1\n"
    )
    with pytest.raises(ConfigError) as info:
        devnet_deploy.load_deploy_params(bad)
    problems = "\n".join(info.value.problems)
    assert "router.max_single_bps must be an integer in 1..10000" in problems
    assert "router.min_security_bits must be an integer in 80..256" in problems
    assert "router.bogus" in problems
    assert "router.governance_delay_s is missing" in problems
    assert "router.direct_verifier: memory verification must be 'strict'" in problems
    assert "router.bootloaded_verifier must be [layout, hasher, stone_version, 'strict']" in (
        problems
    )
    assert "protocols[0].utilization_bps" in problems


def test_cli_missing_params_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "devnet",
            "deploy",
            "--rpc-url",
            "http://127.0.0.1:9",
            "--params",
            str(tmp_path / "none.toml"),
            "--program-hash",
            "0x1",
            "--child-program-hash",
            "0x2",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "none.toml does not exist" in err
    assert "Traceback" not in err


def test_cli_bad_program_hash_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["devnet", "deploy", "--rpc-url", "http://x", "--program-hash", "xyz"])
    assert info.value.code == 2
    assert "not an integer" in capsys.readouterr().err
