"""A real starknet-devnet for tests, on a free port, in its own process group.

    with start_devnet(tmp_path) as devnet:
        devnet.url, devnet.accounts, devnet.create_block(), devnet.abort_blocks(n), ...

The launcher is the product's (keeper/devnet_node.py). The binary is the pinned one
(``make setup`` installs it into ~/.cargo/bin); when it is missing the fixture FAILS with
that instruction rather than skipping.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from keeper.devnet import node as devnet_node
from keeper.devnet.node import DEVNET_VERSION, Devnet, DevnetAccount

__all__ = ["DEVNET_VERSION", "Devnet", "DevnetAccount", "devnet_binary", "start_devnet"]


def devnet_binary() -> str:
    try:
        return devnet_node.devnet_binary()
    except devnet_node.DevnetMissingError as exc:
        pytest.fail(str(exc), pytrace=False)


@contextmanager
def start_devnet(
    tmp_path: Path, seed: int = 0, extra_args: Sequence[str] = (), accounts: int = 3
) -> Iterator[Devnet]:
    devnet_binary()  # a missing binary fails the fixture with "run `make setup`"
    with devnet_node.start_devnet(
        tmp_path, seed=seed, extra_args=extra_args, accounts=accounts
    ) as devnet:
        yield devnet
