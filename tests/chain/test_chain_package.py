"""keeper.chain's public surface: every exported name resolves, and the light modules
(codec, abi: what the event decoder and the CLI need) load without the RPC client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import keeper.chain

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", keeper.chain.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(keeper.chain, name)
    assert getattr(value, "__module__", "keeper.chain").startswith("keeper.chain")
    assert name in dir(keeper.chain)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'ChainClinet'"):
        _ = keeper.chain.ChainClinet  # type: ignore[attr-defined]


def test_the_event_decoder_does_not_load_the_rpc_client() -> None:
    probe = (
        "import sys; import keeper.stream.events; from keeper.chain import FIELD_PRIME; "
        "print(*(m in sys.modules for m in ('keeper.chain.client', 'starknet_py.net.account')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False", "False"]
