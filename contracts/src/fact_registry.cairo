//! The view interface of Herodotus' Integrity FactRegistry, mirrored field for field from
//! HerodotusDev/integrity at 4ce9504fdc933171251cf7473b75ab67db5e03b6
//! (src/contracts/fact_registry_interface.cairo, src/settings.cairo, src/lib_utils.cairo)
//! so that the router's dispatcher decodes the real registry's answers.

use core::hash::HashStateTrait;
use core::poseidon::PoseidonTrait;

/// Integrity's `VerifierConfiguration`: four short strings, e.g.
/// ('small', 'keccak_160_lsb', 'stone6', 'strict').
#[derive(Drop, Copy, Serde, PartialEq, Debug, starknet::Store)]
pub struct VerifierConfiguration {
    pub layout: felt252,
    pub hasher: felt252,
    pub stone_version: felt252,
    pub memory_verification: felt252,
}

/// Integrity's `VerifierPreset` (layout, hasher): the key of a verifier contract.
#[derive(Drop, Copy, Serde, PartialEq, Debug)]
pub struct VerifierPreset {
    pub layout: felt252,
    pub hasher: felt252,
}

/// One verification of a fact, as `get_all_verifications_for_fact_hash` returns it.
#[derive(Drop, Copy, Serde, PartialEq, Debug)]
pub struct VerificationListElement {
    pub verification_hash: felt252,
    pub security_bits: u32,
    pub verifier_config: VerifierConfiguration,
}

/// One verification, as `get_verification(verification_hash)` returns it.
#[derive(Drop, Copy, Serde, PartialEq, Debug, starknet::Store)]
pub struct Verification {
    pub fact_hash: felt252,
    pub security_bits: u32,
    pub verifier_config: VerifierConfiguration,
}

/// Integrity's `FactRegistered` event (all members are keys, no data).
#[derive(Drop, Copy, Serde, starknet::Event)]
pub struct FactRegistered {
    #[key]
    pub fact_hash: felt252,
    #[key]
    pub verifier_address: starknet::ContractAddress,
    #[key]
    pub security_bits: u32,
    #[key]
    pub verifier_config: VerifierConfiguration,
    #[key]
    pub verification_hash: felt252,
}

/// Integrity's FactRegistry views. There is no `is_valid`: a consumer looks up the
/// verification it was given and checks its fact, configuration and security bits.
#[starknet::interface]
pub trait IFactRegistry<TContractState> {
    fn get_all_verifications_for_fact_hash(
        self: @TContractState, fact_hash: felt252,
    ) -> Array<VerificationListElement>;
    fn get_verification(self: @TContractState, verification_hash: felt252) -> Option<Verification>;
    fn get_verifier_address(
        self: @TContractState, preset: VerifierPreset,
    ) -> starknet::ContractAddress;
}

/// Integrity's `get_verifier_config_hash`: poseidon_many([layout, hasher, stone_version,
/// memory_verification]).
pub fn verifier_config_hash(config: VerifierConfiguration) -> felt252 {
    PoseidonTrait::new()
        .update(config.layout)
        .update(config.hasher)
        .update(config.stone_version)
        .update(config.memory_verification)
        .finalize()
}

/// Integrity's `get_verification_hash`: poseidon_many([fact_hash, config_hash, bits]).
pub fn verification_hash(
    fact_hash: felt252, config: VerifierConfiguration, security_bits: u32,
) -> felt252 {
    PoseidonTrait::new()
        .update(fact_hash)
        .update(verifier_config_hash(config))
        .update(security_bits.into())
        .finalize()
}
