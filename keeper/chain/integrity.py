"""Where Integrity (Herodotus' Stone verifier) is on each network, how it names things,
and what the router's IntegrityGuard must look like.

Integrity's FactRegistry routes each proof to the CairoVerifier registered for the
proof's (layout, hasher family) *preset* and registers the fact, but under the
configuration the caller *named* when the job started (issue 18): its labels can be
forged. So the router's ``fact_registry`` is our IntegrityGuard
(contracts/src/integrity_guard.cairo), which drives the verifier itself and records a
verification only from the verifier's own report under its pin. On these chains the
guard must drive the verifier Integrity's FactRegistry (FACTS.md §4) registered for the
router's direct pin; the keeper reads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from keeper.chain.codec import decode_short_string, encode_short_string
from keeper.core.errors import ChainError

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


@dataclass(frozen=True)
class GuardPin:
    """The CairoVerifier the guard drives and the configuration it records under."""

    verifier: int
    config: tuple[str, str, str, str]  # layout, hasher, stone_version, memory_verification

    def values(self) -> tuple[int, ...]:
        """The 'verifier' proposal's values (and the constructor's pin)."""
        return (self.verifier, *(encode_short_string(t) for t in self.config))

    @classmethod
    def from_felts(cls, felts: list[int]) -> GuardPin:
        """``get_pin()``'s answer: verifier, then the four short strings."""
        if len(felts) != 5:
            raise ChainError(f"get_pin answered {len(felts)} felts, not 5: not an IntegrityGuard")
        layout, hasher, version, memory = (decode_short_string(f) or hex(f) for f in felts[1:])
        return cls(felts[0], (layout, hasher, version, memory))

    def shown(self) -> str:
        return f"verifier {self.verifier:#x} ({', '.join(self.config)})"


def guard_problem(
    guard: int,
    pin: GuardPin,
    *,
    direct_pin: tuple[str, str, str, str] | None,
    expected_verifier: int | None,
) -> str | None:
    """Why the router's guard ``guard`` (answering ``pin``) cannot serve the router's
    direct pin, or None. ``expected_verifier``: Integrity's verifier for the pin's preset
    on this chain (None on a devnet: any verifier the owner deployed)."""
    if direct_pin is not None and pin.config != direct_pin:
        return (
            f"the router's IntegrityGuard {guard:#x} records verifications under "
            f"({', '.join(pin.config)}), but the router's direct pin is "
            f"({', '.join(direct_pin)}): no verification it records would be accepted; ask "
            "governance to pin the same configuration on both"
        )
    if expected_verifier is not None and pin.verifier != expected_verifier:
        return (
            f"the router's IntegrityGuard {guard:#x} drives verifier {pin.verifier:#x}, not "
            f"{expected_verifier:#x}, the verifier Integrity's FactRegistry has for "
            f"({pin.config[0]}, {pin.config[1]}) on this chain: ask governance to propose "
            "the guard's 'verifier' change"
        )
    return None
