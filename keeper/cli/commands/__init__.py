"""Subcommand modules, in the order ``--help`` lists them."""

from __future__ import annotations

from types import ModuleType

from keeper.cli.commands import (
    config_cmd,
    costs_cmd,
    demo_cmd,
    deploy_cmd,
    devnet_cmd,
    facts_cmd,
    governance_cmd,
    integrity_cmd,
    jobs_cmd,
    prove_cmd,
    run_cmd,
    status_cmd,
    trace_cmd,
)

MODULES: list[ModuleType] = [
    run_cmd,
    status_cmd,
    jobs_cmd,
    costs_cmd,
    governance_cmd,
    config_cmd,
    trace_cmd,
    prove_cmd,
    integrity_cmd,
    facts_cmd,
    deploy_cmd,
    devnet_cmd,
    demo_cmd,
]
