"""Router governance values for tests: a complete GovernanceParams with pins set."""

from __future__ import annotations

from dataclasses import replace

from keeper.chain.governance import GovernanceParams, VerifierConfig

DIRECT_PIN = VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")
BOOTLOADED_PIN = VerifierConfig("recursive", "keccak_160_lsb", "stone6", "strict")
UNSET = (0, 0, 0, 0)


def pin_values(path: str, felts: tuple[int, ...] | list[int]) -> dict[str, int]:
    """The four GovernanceParams fields of ``path``'s pin."""
    names = ("layout", "hasher", "stone_version", "memory_verification")
    return {f"{path}_{name}": value for name, value in zip(names, felts, strict=True)}


def make_governance(**overrides: int) -> GovernanceParams:
    """The devnet deployment's values (config/deploy.devnet.toml) with stand-in
    addresses and program hashes; any field can be overridden."""
    base = GovernanceParams(
        rebalance_interval_s=3600,
        drift_threshold_bps=500,
        max_single_bps=5000,
        min_diversification=2,
        min_security_bits=96,
        fact_registry=0xFAC7,
        program_hash=0x1234,
        child_program_hash=0xABCD,
        risk_engine=0x5EE,
        **pin_values("direct", DIRECT_PIN.felts()),
        **pin_values("bootloaded", BOOTLOADED_PIN.felts()),
        governance_delay_s=0,
    )
    return replace(base, **overrides)
