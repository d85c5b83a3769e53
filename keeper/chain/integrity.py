"""Where Integrity (Herodotus' Stone verifier) is on each network, and how it names things.

The FactRegistry is the contract a keeper talks to: it routes each proof to the verifier
registered for the proof's (layout, hasher family) *preset* and registers the fact.
Addresses per chain (FACTS.md §4; Integrity's deployments): a router on these chains must
point its ``fact_registry`` at this address for the keeper to verify Stone proofs there.
"""

from __future__ import annotations

from keeper.chain.codec import encode_short_string

# Chain id (short string) -> Integrity FactRegistry.
FACT_REGISTRIES: dict[str, int] = {
    "SN_SEPOLIA": 0x4CE7851F00B6C3289674841FD7A1B96B6FD41ED1EDC248FACCD672C26371B8C,
    "SN_MAIN": 0xCC63A1E8E7824642B89FA6BAF996B8ED21FA4707BE90EF7605570CA8E4F00B,
}
# Integrity's hasher names and the family its verifier presets are keyed by.
HASHER_FAMILIES: dict[str, str] = {
    "keccak_160_lsb": "keccak",
    "keccak_248_lsb": "keccak",
    "blake2s_160_lsb": "blake2s",
    "blake2s_248_lsb": "blake2s",
}


def known_fact_registry(chain_name: str) -> int | None:
    """Integrity's FactRegistry on a public network; None elsewhere (a devnet)."""
    return FACT_REGISTRIES.get(chain_name)


def verifier_preset(layout: str, hasher: str) -> list[int]:
    """``VerifierPreset{layout, hasher}`` calldata for ``get_verifier_address``."""
    family = HASHER_FAMILIES.get(hasher)
    if family is None:
        raise ValueError(
            f"hasher {hasher!r} is not one of Integrity's ({', '.join(HASHER_FAMILIES)})"
        )
    return [encode_short_string(layout), encode_short_string(family)]
