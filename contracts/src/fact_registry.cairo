//! The view interface of Herodotus' Integrity FactRegistry, mirrored field for field
//! (HerodotusDev/integrity src/contracts/fact_registry_interface.cairo, src/settings.cairo)
//! so that the router's dispatcher decodes the real registry's answers.

/// Integrity's `VerifierConfiguration`: four short strings, e.g.
/// ('recursive', 'keccak_160_lsb', 'stone6', 'strict').
#[derive(Drop, Copy, Serde, PartialEq, Debug, starknet::Store)]
pub struct VerifierConfiguration {
    pub layout: felt252,
    pub hasher: felt252,
    pub stone_version: felt252,
    pub memory_verification: felt252,
}

/// One verification of a fact, as `get_all_verifications_for_fact_hash` returns it.
#[derive(Drop, Copy, Serde, PartialEq, Debug)]
pub struct VerificationListElement {
    pub verification_hash: felt252,
    pub security_bits: u32,
    pub verifier_config: VerifierConfiguration,
}

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

/// Integrity's FactRegistry views. There is no `is_valid`: a consumer checks that some
/// verification has at least the security bits it requires.
#[starknet::interface]
pub trait IFactRegistry<TContractState> {
    fn get_all_verifications_for_fact_hash(
        self: @TContractState, fact_hash: felt252,
    ) -> Array<VerificationListElement>;
    fn get_verification(self: @TContractState, verification_hash: felt252) -> Option<Verification>;
}
