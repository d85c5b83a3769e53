"""Start-up gates of the real path (issue 18): a Stone keeper starts only against a router
whose fact registry is an IntegrityGuard pinned like the router, and never proves with
Atlantic, whose facts live in Integrity's forgeable registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contracts.conftest import Deployed
from tests.e2e.conftest import DeployReal
from tests.e2e.harness import KeeperSetup, stone_stand_in_env, wait_until
from tests.support.integrity import classes_skip_reason

pytestmark = pytest.mark.devnet
START_TIMEOUT_S = 180


@pytest.fixture
async def guarded(deploy_real: DeployReal) -> Deployed:
    reason = classes_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return await deploy_real(fact_registry="integrity")


def refused_start(setup: KeeperSetup) -> str:
    """The keeper's exit status must be a failure; its log text."""
    keeper = setup.start()
    try:
        code = keeper.process.wait(timeout=START_TIMEOUT_S)
    finally:
        keeper.kill()
    assert code not in (0, None)
    return keeper.log_path.read_text()


async def test_a_router_trusting_integritys_own_registry_keeps_a_stone_keeper_from_starting(
    guarded: Deployed, keeper_dir: Path
) -> None:
    registry = guarded.deployment.address("IntegrityFactRegistry")
    await guarded.change("fact_registry", [registry])  # governance_delay_s 0 on devnet
    setup = KeeperSetup(guarded, keeper_dir, policy="stone_only", extra_env=stone_stand_in_env())
    log = refused_start(setup)
    assert f"the router's fact_registry {registry:#x} is not an IntegrityGuard" in log
    assert setup.job_states() == []


async def test_a_guard_pinned_otherwise_than_the_router_keeps_a_stone_keeper_from_starting(
    guarded: Deployed, keeper_dir: Path
) -> None:
    other = [int.from_bytes(t.encode(), "big") for t in ("small", "keccak_160_lsb", "stone5",
                                                          "strict")]
    await guarded.change("direct_verifier", other)
    setup = KeeperSetup(guarded, keeper_dir, policy="stone_only", extra_env=stone_stand_in_env())
    log = refused_start(setup)
    assert "records verifications under (small, keccak_160_lsb, stone6, strict)" in log
    assert "the router's direct pin is (small, keccak_160_lsb, stone5, strict)" in log


async def test_atlantic_only_is_refused_at_start(guarded: Deployed, keeper_dir: Path) -> None:
    setup = KeeperSetup(guarded, keeper_dir, policy="atlantic_only")
    log = refused_start(setup)
    assert "proves with Atlantic only" in log and "issue 18" in log


async def test_a_policy_with_an_atlantic_fallback_proves_with_stone_only(
    guarded: Deployed, keeper_dir: Path
) -> None:
    """The router accepts bootloaded facts (its devnet pin), yet the keeper never turns to
    Atlantic: the guard would never hold Atlantic's facts."""
    setup = KeeperSetup(
        guarded, keeper_dir, policy="stone_then_atlantic", extra_env=stone_stand_in_env()
    )
    keeper = setup.start()
    try:
        async def closed() -> bool:
            return bool(keeper.events("gate.atlantic_closed"))

        await wait_until("the Atlantic path closed at start-up", closed, keeper=keeper)

        async def a_job() -> bool:
            return bool(setup.job_states())

        await wait_until("a job", a_job, keeper=keeper)
    finally:
        assert keeper.stop() == 0
    provers = {row["prover"] for row in setup.query("SELECT prover FROM jobs")}
    assert "atlantic" not in provers
