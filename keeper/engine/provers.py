"""The proving side, built from settings: the Stone runner and the Atlantic client the
settings configure, under one ``ProvingPolicy`` (the daemon and ``prove`` share it)."""

from __future__ import annotations

from collections.abc import Callable

from prover.atlantic import AtlanticClient
from prover.policy import AtlanticCreditGate, ProofAttempt, ProvingPolicy
from prover.settings import ProverSettings
from prover.stone import StoneRunner


def build_proving_policy(
    settings: ProverSettings,
    *,
    on_attempt: Callable[[ProofAttempt], None],
    atlantic_credit: AtlanticCreditGate | None = None,
) -> tuple[ProvingPolicy, AtlanticClient | None]:
    """The policy, and the Atlantic client the caller must ``aclose()`` when done.

    ``settings``: the ``[prover]`` section made ready with ``ProverConfig.runtime``.
    ``atlantic_credit``: the previous policy's credit gate, so that a rebuild (new
    security bits, config reload) does not forget that Atlantic is out of credit."""
    stone = (
        StoneRunner(settings)
        if settings.stone_prover_path is not None and settings.stone_verifier_path is not None
        else None
    )
    atlantic = AtlanticClient(settings) if settings.atlantic_configured else None
    policy = ProvingPolicy(
        settings,
        stone=stone,
        atlantic=atlantic,
        on_attempt=on_attempt,
        atlantic_credit=atlantic_credit,
    )
    return policy, atlantic
