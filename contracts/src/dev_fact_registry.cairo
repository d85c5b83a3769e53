//! DevFactRegistry — a TRUSTED STAND-IN for Integrity's FactRegistry, for devnet only.
//!
//! It verifies nothing: its registrar asserts that a fact was verified with some security
//! bits under some verifier configuration — ANY configuration (relaxed, cairo1, another
//! layout, zeros) and ANY number of bits, so tests can prove the router refuses what it
//! must refuse. It answers the same views as Integrity's FactRegistry (same types, same
//! verification hash, `get_verification` included) and emits the same `FactRegistered`
//! event, so the router and the keeper cannot tell the difference. Never point a
//! production router at it.

use starknet::ContractAddress;
use crate::fact_registry::VerifierConfiguration;

#[starknet::interface]
pub trait IDevFactRegistry<TContractState> {
    /// Registrar only. Records that `fact_hash` was "verified" with `security_bits` under
    /// `verifier_config` (any values). Returns the verification hash. Like Integrity, a
    /// repeated registration is stored once and emits FactRegistered again.
    fn register_fact(
        ref self: TContractState,
        fact_hash: felt252,
        security_bits: u32,
        verifier_config: VerifierConfiguration,
    ) -> felt252;
    fn get_registrar(self: @TContractState) -> ContractAddress;
    /// Registrar only.
    fn set_registrar(ref self: TContractState, registrar: ContractAddress);
}

#[starknet::contract]
pub mod DevFactRegistry {
    use starknet::storage::{
        Map, MutableVecTrait, StoragePathEntry, StoragePointerReadAccess,
        StoragePointerWriteAccess, Vec, VecTrait,
    };
    use starknet::{ContractAddress, get_caller_address};
    use crate::fact_registry::{
        FactRegistered, IFactRegistry, Verification, VerificationListElement,
        VerifierConfiguration, VerifierPreset, verification_hash,
    };

    #[storage]
    struct Storage {
        registrar: ContractAddress,
        fact_verifications: Map<felt252, Vec<felt252>>,
        verification_hashes: Map<felt252, Option<Verification>>,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    pub enum Event {
        FactRegistered: FactRegistered,
        RegistrarUpdated: RegistrarUpdated,
    }

    #[derive(Drop, starknet::Event)]
    pub struct RegistrarUpdated {
        pub old_registrar: ContractAddress,
        pub new_registrar: ContractAddress,
    }

    /// Emits RegistrarUpdated{0, registrar}.
    #[constructor]
    fn constructor(ref self: ContractState, registrar: ContractAddress) {
        assert(registrar.into() != 0, 'registrar is zero');
        self.registrar.write(registrar);
        self
            .emit(
                RegistrarUpdated {
                    old_registrar: 0.try_into().unwrap(), new_registrar: registrar,
                },
            );
    }

    #[abi(embed_v0)]
    impl DevFactRegistryImpl of super::IDevFactRegistry<ContractState> {
        fn register_fact(
            ref self: ContractState,
            fact_hash: felt252,
            security_bits: u32,
            verifier_config: VerifierConfiguration,
        ) -> felt252 {
            assert(get_caller_address() == self.registrar.read(), 'caller is not registrar');
            let verification_hash = verification_hash(fact_hash, verifier_config, security_bits);
            let entry = self.verification_hashes.entry(verification_hash);
            if entry.read().is_none() {
                self.fact_verifications.entry(fact_hash).push(verification_hash);
                entry.write(Option::Some(Verification { fact_hash, security_bits, verifier_config }));
            }
            // Integrity's mocked registry reports verifier address 0: no verifier ran.
            self
                .emit(
                    FactRegistered {
                        fact_hash,
                        verifier_address: 0.try_into().unwrap(),
                        security_bits,
                        verifier_config,
                        verification_hash,
                    },
                );
            verification_hash
        }

        fn get_registrar(self: @ContractState) -> ContractAddress {
            self.registrar.read()
        }

        fn set_registrar(ref self: ContractState, registrar: ContractAddress) {
            let old_registrar = self.registrar.read();
            assert(get_caller_address() == old_registrar, 'caller is not registrar');
            assert(registrar.into() != 0, 'registrar is zero');
            self.registrar.write(registrar);
            self.emit(RegistrarUpdated { old_registrar, new_registrar: registrar });
        }
    }

    #[abi(embed_v0)]
    impl FactRegistryImpl of IFactRegistry<ContractState> {
        fn get_all_verifications_for_fact_hash(
            self: @ContractState, fact_hash: felt252,
        ) -> Array<VerificationListElement> {
            let hashes = self.fact_verifications.entry(fact_hash);
            let mut out = array![];
            for i in 0..hashes.len() {
                let verification_hash = hashes.at(i).read();
                let verification = self.verification_hashes.entry(verification_hash).read().unwrap();
                out
                    .append(
                        VerificationListElement {
                            verification_hash,
                            security_bits: verification.security_bits,
                            verifier_config: verification.verifier_config,
                        },
                    );
            }
            out
        }

        fn get_verification(
            self: @ContractState, verification_hash: felt252,
        ) -> Option<Verification> {
            self.verification_hashes.entry(verification_hash).read()
        }

        /// No verifier contract stands behind this registry: Integrity's answer for an
        /// unknown preset.
        fn get_verifier_address(self: @ContractState, preset: VerifierPreset) -> ContractAddress {
            core::panic_with_felt252('VERIFIER_NOT_FOUND')
        }
    }
}
