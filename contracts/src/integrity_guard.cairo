//! IntegrityGuard — records a Stone proof's verification only from the verifier's own
//! report, under the verifier configuration governance pinned.
//!
//! Why not Integrity's FactRegistry: its split flow stores the configuration a caller
//! *names* at `verify_proof_initial` per job id and registers whatever the verifier's final
//! call returns under that stored label, ignoring the settings the verifier reports. Job
//! ids are global and the CairoVerifier has no caller check, so anyone can finish job J in
//! another mode (e.g. cairo1, which does not check where the program and output sit in
//! memory) and have its fact labelled 'strict' (issue 18).
//!
//! The guard drives the pinned CairoVerifier itself and forwards each call's calldata
//! unchanged (Integrity's own serialisation; no copy). It records a verification only from
//! the verifier's `ProofVerified { job_id, fact, security_bits, settings }` return value,
//! and only when those settings are the pinned ones (memory verification, hasher bit
//! length, stone version) — whatever happened to the job id in between. The verifier's
//! layout and hasher are properties of its code: governance pins them together with its
//! address (on Sepolia and mainnet, the verifier Integrity's FactRegistry registered for
//! that preset).
//!
//! The router reads the guard as it reads a fact registry: `get_verification(hash)` →
//! (fact, security bits, configuration), one storage read, with Integrity's verification
//! hash. Anyone may drive a verification through the guard: what it records comes only
//! from the verifier.
//!
//! Governance (owner): `propose_change` → `governance_delay_s` → `apply_change` for
//! 'verifier' (address, layout, hasher, stone_version, memory_verification) and
//! 'governance_delay_s'. A change waits the delay in force when it was proposed *and* the
//! one in force when it is applied; it expires GUARD_GRACE_S after it became applicable;
//! accepting ownership cancels every pending change of the previous owner.

use starknet::ContractAddress;
use crate::fact_registry::VerifierConfiguration;

/// A change may be applied during this window after it became applicable (14 days).
pub const GUARD_GRACE_S: u64 = 1209600;
/// Upper bound of `governance_delay_s` (30 days).
pub const GUARD_MAX_DELAY_S: u64 = 2592000;
/// The only memory verification the guard records: 'relaxed' and 'cairo1' check less of
/// the public memory that binds the program and its output.
pub const STRICT: felt252 = 'strict';
/// Integrity's `MemoryVerification::Strict` as `VerifierSettings.memory_verification`.
pub const SETTINGS_STRICT: felt252 = 0;
/// Felts of Integrity's `VerifierSettings` (memory_verification, hasher_bit_length,
/// stone_version) and of its `ProofVerified` (job_id, fact, security_bits, settings).
pub const SETTINGS_LEN: u32 = 3;
pub const PROOF_VERIFIED_LEN: u32 = 6;

/// The verifier the guard drives and the configuration it records verifications under.
#[derive(Drop, Copy, Serde, PartialEq, Debug)]
pub struct GuardPin {
    pub verifier: ContractAddress,
    pub config: VerifierConfiguration,
}

/// A proposed change: its values, when it was proposed and its eta at proposal time
/// (the delay in force at apply time may push it later).
#[derive(Drop, Serde, PartialEq, Debug)]
pub struct GuardPendingChange {
    pub values: Array<felt252>,
    pub proposed_at: u64,
    pub eta: u64,
}

#[starknet::interface]
pub trait IIntegrityGuard<TContractState> {
    /// Monolith verification. `calldata` is CairoVerifier.verify_proof_full's:
    /// settings (3 felts, must be the pinned ones) then Integrity's StarkProofWithSerde.
    /// Records the verification; returns its hash.
    fn verify_proof_full(ref self: TContractState, calldata: Span<felt252>) -> felt252;
    /// Split flow, first call. `calldata` is CairoVerifier.verify_proof_initial's: job id,
    /// settings (must be the pinned ones), the proof without FRI witness.
    fn verify_proof_initial(ref self: TContractState, calldata: Span<felt252>);
    /// Split flow: one FRI layer. `calldata` is CairoVerifier.verify_proof_step's.
    fn verify_proof_step(ref self: TContractState, calldata: Span<felt252>);
    /// Split flow, last call. `calldata` is CairoVerifier.verify_proof_final's. Records the
    /// verification from the verifier's report when its settings are the pin; returns its
    /// hash. Refused ('settings not pinned') otherwise, whoever started the job.
    fn verify_proof_final(ref self: TContractState, calldata: Span<felt252>) -> felt252;

    fn get_pin(self: @TContractState) -> GuardPin;
    fn get_governance_delay_s(self: @TContractState) -> u64;
    /// Owner only. 'verifier': [address, layout, hasher, stone_version,
    /// memory_verification]; 'governance_delay_s': [seconds]. Returns the eta.
    fn propose_change(ref self: TContractState, param: felt252, values: Span<felt252>) -> u64;
    /// Owner only.
    fn cancel_change(ref self: TContractState, param: felt252);
    /// Owner only, once the delay (at proposal and now) has passed, within GUARD_GRACE_S.
    fn apply_change(ref self: TContractState, param: felt252);
    fn get_pending_change(self: @TContractState, param: felt252) -> Option<GuardPendingChange>;
    /// Owner only. Step 1 of 2 (0 cancels a pending transfer).
    fn transfer_ownership(ref self: TContractState, new_owner: ContractAddress);
    /// Pending owner only. Step 2 of 2; cancels every pending change.
    fn accept_ownership(ref self: TContractState);
    fn get_owner(self: @TContractState) -> ContractAddress;
    fn get_pending_owner(self: @TContractState) -> ContractAddress;
}

/// Integrity's `HasherBitLength` variant index for a hasher name (Lsb160 = 0, Lsb248 = 1);
/// None for a hasher whose bit length the verifier's settings cannot tell apart
/// (Integrity maps 'blake2s_160_lsb' to Lsb248 too).
pub fn hasher_bit_length(hasher: felt252) -> Option<felt252> {
    if hasher == 'keccak_160_lsb' {
        Option::Some(0)
    } else if hasher == 'keccak_248_lsb' || hasher == 'blake2s_248_lsb' {
        Option::Some(1)
    } else {
        Option::None
    }
}

/// Integrity's verifier preset key for a hasher name ('keccak' or 'blake2s').
pub fn hasher_family(hasher: felt252) -> felt252 {
    if hasher == 'keccak_160_lsb' || hasher == 'keccak_248_lsb' {
        'keccak'
    } else {
        'blake2s'
    }
}

/// Integrity's `StoneVersion` variant index (Stone5 = 0, Stone6 = 1).
pub fn stone_version_index(version: felt252) -> Option<felt252> {
    if version == 'stone5' {
        Option::Some(0)
    } else if version == 'stone6' {
        Option::Some(1)
    } else {
        Option::None
    }
}

/// The `VerifierSettings` felts a verifier reports for a (validated) configuration.
pub fn expected_settings(config: VerifierConfiguration) -> (felt252, felt252, felt252) {
    (
        SETTINGS_STRICT,
        hasher_bit_length(config.hasher).expect('hasher not supported'),
        stone_version_index(config.stone_version).expect('stone version not supported'),
    )
}

/// Checks a change's shape and range; panics with the reason.
pub fn validate_guard_change(param: felt252, values: Span<felt252>) {
    if param == 'verifier' {
        assert(values.len() == 5, 'wrong number of values');
        let address: Option<ContractAddress> = (*values.at(0)).try_into();
        assert(address.is_some() && *values.at(0) != 0, 'verifier not an address');
        assert(*values.at(1) != 0, 'layout is zero');
        assert(hasher_bit_length(*values.at(2)).is_some(), 'hasher not supported');
        assert(stone_version_index(*values.at(3)).is_some(), 'stone version not supported');
        assert(*values.at(4) == STRICT, 'memory verification not strict');
    } else if param == 'governance_delay_s' {
        assert(values.len() == 1, 'wrong number of values');
        let delay: Option<u64> = (*values.at(0)).try_into();
        assert(delay.is_some() && delay.unwrap() <= GUARD_MAX_DELAY_S, 'delay above 30 days');
    } else {
        core::panic_with_felt252('unknown governance param');
    }
}

#[starknet::contract]
pub mod IntegrityGuard {
    use starknet::storage::{
        Map, MutableVecTrait, StoragePathEntry, StoragePointerReadAccess,
        StoragePointerWriteAccess, Vec, VecTrait,
    };
    use starknet::syscalls::call_contract_syscall;
    use starknet::{
        ContractAddress, SyscallResultTrait, get_block_timestamp, get_caller_address,
    };
    use crate::fact_registry::{
        FactRegistered, IFactRegistry, Verification, VerificationListElement,
        VerifierConfiguration, VerifierPreset, verification_hash,
    };
    use super::{
        GUARD_GRACE_S, GuardPendingChange, GuardPin, PROOF_VERIFIED_LEN, SETTINGS_LEN,
        expected_settings, hasher_family, validate_guard_change,
    };

    /// A pending change in storage (up to five values).
    #[derive(Drop, Copy, Serde, starknet::Store)]
    struct StoredChange {
        is_pending: bool,
        proposed_at: u64,
        eta: u64,
        len: u32,
        v0: felt252,
        v1: felt252,
        v2: felt252,
        v3: felt252,
        v4: felt252,
    }

    #[storage]
    struct Storage {
        owner: ContractAddress,
        pending_owner: ContractAddress,
        verifier: ContractAddress,
        config: VerifierConfiguration,
        governance_delay_s: u64,
        pending_changes: Map<felt252, StoredChange>,
        fact_verifications: Map<felt252, Vec<felt252>>,
        verification_hashes: Map<felt252, Option<Verification>>,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    pub enum Event {
        FactRegistered: FactRegistered,
        VerifierPinned: VerifierPinned,
        GovernanceDelayUpdated: GovernanceDelayUpdated,
        GovernanceChangeProposed: GovernanceChangeProposed,
        GovernanceChangeCancelled: GovernanceChangeCancelled,
        GovernanceChangeApplied: GovernanceChangeApplied,
        OwnershipTransferStarted: OwnershipTransferStarted,
        OwnershipTransferred: OwnershipTransferred,
    }

    #[derive(Drop, starknet::Event)]
    pub struct VerifierPinned {
        #[key]
        pub verifier: ContractAddress,
        pub config: VerifierConfiguration,
    }

    #[derive(Drop, starknet::Event)]
    pub struct GovernanceDelayUpdated {
        pub old_value: u64,
        pub new_value: u64,
    }

    #[derive(Drop, starknet::Event)]
    pub struct GovernanceChangeProposed {
        #[key]
        pub param: felt252,
        pub values: Span<felt252>,
        pub eta: u64,
    }

    #[derive(Drop, starknet::Event)]
    pub struct GovernanceChangeCancelled {
        #[key]
        pub param: felt252,
        pub values: Span<felt252>,
        pub eta: u64,
    }

    #[derive(Drop, starknet::Event)]
    pub struct GovernanceChangeApplied {
        #[key]
        pub param: felt252,
        pub values: Span<felt252>,
        pub eta: u64,
    }

    #[derive(Drop, starknet::Event)]
    pub struct OwnershipTransferStarted {
        pub previous_owner: ContractAddress,
        pub new_owner: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    pub struct OwnershipTransferred {
        pub previous_owner: ContractAddress,
        pub new_owner: ContractAddress,
    }

    /// The initial pin and delay, without delay. Emits OwnershipTransferred{0, owner},
    /// VerifierPinned and GovernanceDelayUpdated{0, delay}.
    #[constructor]
    fn constructor(
        ref self: ContractState,
        owner: ContractAddress,
        verifier: ContractAddress,
        config: VerifierConfiguration,
        governance_delay_s: u64,
    ) {
        assert(owner.into() != 0, 'owner is zero');
        self.owner.write(owner);
        self.emit(OwnershipTransferred { previous_owner: 0.try_into().unwrap(), new_owner: owner });
        self
            .write_change(
                'verifier',
                [
                    verifier.into(), config.layout, config.hasher, config.stone_version,
                    config.memory_verification,
                ]
                    .span(),
            );
        self.write_change('governance_delay_s', [governance_delay_s.into()].span());
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        fn assert_owner(self: @ContractState) {
            assert(get_caller_address() == self.owner.read(), 'caller is not owner');
        }

        /// Validates and writes a change, emitting what changed.
        fn write_change(ref self: ContractState, param: felt252, values: Span<felt252>) {
            validate_guard_change(param, values);
            if param == 'verifier' {
                let verifier: ContractAddress = (*values.at(0)).try_into().unwrap();
                let config = VerifierConfiguration {
                    layout: *values.at(1),
                    hasher: *values.at(2),
                    stone_version: *values.at(3),
                    memory_verification: *values.at(4),
                };
                self.verifier.write(verifier);
                self.config.write(config);
                self.emit(VerifierPinned { verifier, config });
            } else {
                let old_value = self.governance_delay_s.read();
                let new_value: u64 = (*values.at(0)).try_into().unwrap();
                self.governance_delay_s.write(new_value);
                self.emit(GovernanceDelayUpdated { old_value, new_value });
            }
        }

        fn take_pending(ref self: ContractState, param: felt252) -> (Array<felt252>, StoredChange) {
            let entry = self.pending_changes.entry(param);
            let stored = entry.read();
            assert(stored.is_pending, 'no pending change');
            entry
                .write(
                    StoredChange {
                        is_pending: false,
                        proposed_at: 0,
                        eta: 0,
                        len: 0,
                        v0: 0,
                        v1: 0,
                        v2: 0,
                        v3: 0,
                        v4: 0,
                    },
                );
            (pending_values(stored), stored)
        }

        fn cancel_if_pending(ref self: ContractState, param: felt252) {
            if self.pending_changes.entry(param).read().is_pending {
                let (values, stored) = self.take_pending(param);
                self
                    .emit(
                        GovernanceChangeCancelled { param, values: values.span(), eta: stored.eta },
                    );
            }
        }

        /// Calls the pinned verifier with `calldata` as is; its raw return data.
        fn call_verifier(
            self: @ContractState, selector: felt252, calldata: Span<felt252>,
        ) -> Span<felt252> {
            call_contract_syscall(self.verifier.read(), selector, calldata).unwrap_syscall()
        }

        /// The settings at `calldata[offset..offset + 3]` must be the pinned ones.
        fn assert_settings_pinned(self: @ContractState, calldata: Span<felt252>, offset: u32) {
            assert(calldata.len() >= offset + SETTINGS_LEN, 'calldata too short');
            let (memory, bits, version) = expected_settings(self.config.read());
            assert(*calldata.at(offset) == memory, 'settings not pinned');
            assert(*calldata.at(offset + 1) == bits, 'settings not pinned');
            assert(*calldata.at(offset + 2) == version, 'settings not pinned');
        }

        /// Records the verification the verifier reported (ProofVerified, serialised) when
        /// its job id is `job_id` and its settings are the pin. Returns its hash.
        fn record(ref self: ContractState, report: Span<felt252>, job_id: felt252) -> felt252 {
            assert(report.len() == PROOF_VERIFIED_LEN, 'unexpected verifier report');
            assert(*report.at(0) == job_id, 'report for another job');
            self.assert_settings_pinned(report, 3);
            let fact_hash = *report.at(1);
            let security_bits: u32 = (*report.at(2)).try_into().expect('security bits not u32');
            let verifier_config = self.config.read();
            let verification_hash = verification_hash(fact_hash, verifier_config, security_bits);
            let entry = self.verification_hashes.entry(verification_hash);
            if entry.read().is_none() {
                self.fact_verifications.entry(fact_hash).push(verification_hash);
                entry.write(Option::Some(Verification { fact_hash, security_bits, verifier_config }));
            }
            self
                .emit(
                    FactRegistered {
                        fact_hash,
                        verifier_address: self.verifier.read(),
                        security_bits,
                        verifier_config,
                        verification_hash,
                    },
                );
            verification_hash
        }
    }

    fn pending_values(stored: StoredChange) -> Array<felt252> {
        let all = [stored.v0, stored.v1, stored.v2, stored.v3, stored.v4];
        let mut out = array![];
        for v in all.span().slice(0, stored.len) {
            out.append(*v);
        }
        out
    }

    fn max_u64(a: u64, b: u64) -> u64 {
        if a > b {
            a
        } else {
            b
        }
    }

    #[abi(embed_v0)]
    impl IntegrityGuardImpl of super::IIntegrityGuard<ContractState> {
        fn verify_proof_full(ref self: ContractState, calldata: Span<felt252>) -> felt252 {
            self.assert_settings_pinned(calldata, 0);
            let report = self.call_verifier(selector!("verify_proof_full"), calldata);
            self.record(report, 0)
        }

        fn verify_proof_initial(ref self: ContractState, calldata: Span<felt252>) {
            // Early refusal of a wrong mode; the final report is what decides.
            self.assert_settings_pinned(calldata, 1);
            self.call_verifier(selector!("verify_proof_initial"), calldata);
        }

        fn verify_proof_step(ref self: ContractState, calldata: Span<felt252>) {
            self.call_verifier(selector!("verify_proof_step"), calldata);
        }

        fn verify_proof_final(ref self: ContractState, calldata: Span<felt252>) -> felt252 {
            assert(calldata.len() >= 1, 'calldata too short');
            let report = self.call_verifier(selector!("verify_proof_final"), calldata);
            self.record(report, *calldata.at(0))
        }

        fn get_pin(self: @ContractState) -> GuardPin {
            GuardPin { verifier: self.verifier.read(), config: self.config.read() }
        }

        fn get_governance_delay_s(self: @ContractState) -> u64 {
            self.governance_delay_s.read()
        }

        fn propose_change(ref self: ContractState, param: felt252, values: Span<felt252>) -> u64 {
            self.assert_owner();
            validate_guard_change(param, values);
            let entry = self.pending_changes.entry(param);
            assert(!entry.read().is_pending, 'change already pending');
            let now = get_block_timestamp();
            let eta = now + self.governance_delay_s.read();
            let mut padded: Array<felt252> = array![];
            for v in values {
                padded.append(*v);
            }
            while padded.len() < 5 {
                padded.append(0);
            }
            entry
                .write(
                    StoredChange {
                        is_pending: true,
                        proposed_at: now,
                        eta,
                        len: values.len(),
                        v0: *padded.at(0),
                        v1: *padded.at(1),
                        v2: *padded.at(2),
                        v3: *padded.at(3),
                        v4: *padded.at(4),
                    },
                );
            self.emit(GovernanceChangeProposed { param, values, eta });
            eta
        }

        fn cancel_change(ref self: ContractState, param: felt252) {
            self.assert_owner();
            let (values, stored) = self.take_pending(param);
            self.emit(GovernanceChangeCancelled { param, values: values.span(), eta: stored.eta });
        }

        fn apply_change(ref self: ContractState, param: felt252) {
            self.assert_owner();
            let (values, stored) = self.take_pending(param);
            // The delay in force now also applies: raising it delays what is pending.
            let due = max_u64(stored.eta, stored.proposed_at + self.governance_delay_s.read());
            let now = get_block_timestamp();
            assert(now >= due, 'change not yet due');
            assert(now <= due + GUARD_GRACE_S, 'change expired');
            self.emit(GovernanceChangeApplied { param, values: values.span(), eta: due });
            self.write_change(param, values.span());
        }

        fn get_pending_change(
            self: @ContractState, param: felt252,
        ) -> Option<GuardPendingChange> {
            let stored = self.pending_changes.entry(param).read();
            if !stored.is_pending {
                return Option::None;
            }
            Option::Some(
                GuardPendingChange {
                    values: pending_values(stored), proposed_at: stored.proposed_at, eta: stored.eta,
                },
            )
        }

        fn transfer_ownership(ref self: ContractState, new_owner: ContractAddress) {
            self.assert_owner();
            self.pending_owner.write(new_owner);
            self.emit(OwnershipTransferStarted { previous_owner: self.owner.read(), new_owner });
        }

        fn accept_ownership(ref self: ContractState) {
            let caller = get_caller_address();
            let pending = self.pending_owner.read();
            assert(pending.into() != 0 && caller == pending, 'caller is not pending owner');
            // The new owner starts with no proposal it did not make.
            self.cancel_if_pending('verifier');
            self.cancel_if_pending('governance_delay_s');
            let previous_owner = self.owner.read();
            self.owner.write(caller);
            self.pending_owner.write(0.try_into().unwrap());
            self.emit(OwnershipTransferred { previous_owner, new_owner: caller });
        }

        fn get_owner(self: @ContractState) -> ContractAddress {
            self.owner.read()
        }

        fn get_pending_owner(self: @ContractState) -> ContractAddress {
            self.pending_owner.read()
        }
    }

    /// The router's view: the same shapes and hash as Integrity's FactRegistry.
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

        /// The pinned verifier for its own preset (layout, hasher family); Integrity's
        /// answer for any other.
        fn get_verifier_address(self: @ContractState, preset: VerifierPreset) -> ContractAddress {
            let config = self.config.read();
            if preset.layout == config.layout && preset.hasher == hasher_family(config.hasher) {
                return self.verifier.read();
            }
            core::panic_with_felt252('VERIFIER_NOT_FOUND')
        }
    }
}
