"""Subcommand modules, in the order ``--help`` lists them."""

from __future__ import annotations

from types import ModuleType

from keeper.commands import config_cmd, facts_cmd, prove_cmd, governance_cmd, costs_cmd, trace_cmd, status_cmd, devnet_cmd

MODULES: list[ModuleType] = [config_cmd, facts_cmd, prove_cmd, governance_cmd, costs_cmd, trace_cmd, status_cmd, devnet_cmd]
