//! StrategyRouterV2 — holds the current allocation and accepts a new one only with a
//! proof: `execute_allocation(output, verification_hash)` takes the allocation program's
//! public output (docs/allocation-program.md §4) and the hash of ONE verification in the
//! fact registry governance stored. That verification must be of this output's fact under
//! an accepted program hash, made with the verifier configuration governance pinned for
//! that path (direct or bootloaded), with at least `min_security_bits` (§5). The lookup is
//! one `get_verification` call: its cost does not depend on how many other verifications
//! the fact has. Each fact executes at most once, and only when a rebalance is due
//! (interval, drift or an owner's request).
//!
//! Every governance parameter (keepers and verifier pins included) changes through a
//! timelock: `propose_change` -> wait `governance_delay_s` -> `apply_change` (owner, within
//! GOVERNANCE_GRACE_S after the eta), `cancel_change` any time before. Raising the delay
//! cancels every pending change (each was announced under the shorter notice), and so
//! does a new owner's `accept_ownership` (the previous owner's proposals are not the new
//! owner's). The constructor sets the initial configuration without delay and emits it
//! as events.

use starknet::ContractAddress;

pub const BOOTLOADER_PROGRAM_HASH: felt252 =
    0x5ab580b04e3532b6b18f81cfa654a05e29dd8e2352d88df1e765a84072db07;
pub const TOTAL_BPS: u32 = 10000;
pub const DIVERSIFICATION_MIN_BPS: u32 = 1000;
pub const MAX_PROTOCOLS: u32 = 16;
/// Output header: router, epoch, commitment, max_single, min_div, n.
pub const OUTPUT_HEADER_LEN: u32 = 6;
/// Governance can never accept verifications weaker than this.
pub const MIN_SECURITY_BITS_FLOOR: u32 = 80;
pub const MAX_SECURITY_BITS: u32 = 256;
/// Upper bound of `rebalance_interval_s` (365 days).
pub const MAX_REBALANCE_INTERVAL_S: u64 = 31536000;
/// Upper bound of `governance_delay_s` (30 days): governance cannot lock itself out.
pub const MAX_GOVERNANCE_DELAY_S: u64 = 2592000;
/// A change may be applied during this window after its eta (14 days), then it expires.
pub const GOVERNANCE_GRACE_S: u64 = 1209600;
// Range revert reasons, shared by validation and the (then infallible) conversions.
pub(crate) const ERR_INTERVAL: felt252 = 'interval not in 1 s..365 days';
pub(crate) const ERR_DRIFT: felt252 = 'drift threshold > 10000';
pub(crate) const ERR_MAX_SINGLE: felt252 = 'max_single not in 1..10000';
pub(crate) const ERR_MIN_DIV: felt252 = 'min_div not in 0..16';
pub(crate) const ERR_MIN_BITS: felt252 = 'min_security_bits not 80..256';
pub(crate) const ERR_DELAY: felt252 = 'delay above 30 days';
/// Memory verification every pinned configuration must use: 'relaxed' and 'cairo1' check
/// less of the public memory that binds the program and its output.
pub const STRICT_MEMORY_VERIFICATION: felt252 = 'strict';

/// Every governance parameter, in one call; each field's name is the `param` of its
/// GovernanceParamsUpdated event. A verifier pin of all zeros accepts nothing.
#[derive(Drop, Copy, Serde, PartialEq, Debug)]
pub struct GovernanceParams {
    pub rebalance_interval_s: u64,
    pub drift_threshold_bps: u32,
    pub max_single_bps: u32,
    pub min_diversification: u32,
    pub min_security_bits: u32,
    pub fact_registry: ContractAddress,
    /// Accepted program hash of a direct Stone proof (poseidon over the program data);
    /// 0 = direct proofs not accepted.
    pub program_hash: felt252,
    /// Accepted child program hash (Pedersen chain) under the SHARP bootloader;
    /// 0 = bootloaded proofs not accepted.
    pub child_program_hash: felt252,
    pub risk_engine: ContractAddress,
    /// Pinned Integrity VerifierConfiguration of direct proofs (proposal 'direct_verifier').
    pub direct_layout: felt252,
    pub direct_hasher: felt252,
    pub direct_stone_version: felt252,
    pub direct_memory_verification: felt252,
    /// Pinned configuration of bootloaded proofs (proposal 'bootloaded_verifier').
    pub bootloaded_layout: felt252,
    pub bootloaded_hasher: felt252,
    pub bootloaded_stone_version: felt252,
    pub bootloaded_memory_verification: felt252,
    pub governance_delay_s: u64,
}

/// A proposed governance change and the earliest time it may be applied.
#[derive(Drop, Serde, PartialEq, Debug)]
pub struct PendingChange {
    pub values: Array<felt252>,
    pub eta: u64,
}

#[starknet::interface]
pub trait IStrategyRouterV2<TContractState> {
    /// Keeper only. See the module doc and contracts/README.md for the checks.
    fn execute_allocation(
        ref self: TContractState, output: Span<felt252>, verification_hash: felt252,
    );
    /// Keeper or owner. Asks the keepers to prove and execute the current epoch; only the
    /// owner's request also lifts the interval/drift schedule for this epoch.
    fn request_rebalance(ref self: TContractState);

    /// Owner only. Proposes `param` := `values` (see README for names, values and
    /// ranges); `subject` is the keeper address for param 'keeper', else 0. Returns the
    /// eta (now + governance_delay_s). One pending change per (param, subject).
    fn propose_change(
        ref self: TContractState, param: felt252, subject: felt252, values: Span<felt252>,
    ) -> u64;
    /// Owner only. Drops the pending change of (param, subject).
    fn cancel_change(ref self: TContractState, param: felt252, subject: felt252);
    /// Owner only, from the eta until eta + GOVERNANCE_GRACE_S. Applying a raised
    /// `governance_delay_s` cancels every other pending change.
    fn apply_change(ref self: TContractState, param: felt252, subject: felt252);
    /// Owner only. Step 1 of 2: `new_owner` becomes the pending owner (0 cancels).
    fn transfer_ownership(ref self: TContractState, new_owner: ContractAddress);
    /// Pending owner only. Step 2 of 2; cancels every pending change.
    fn accept_ownership(ref self: TContractState);

    fn get_epoch(self: @TContractState) -> u64;
    fn get_allocation(self: @TContractState) -> Array<u32>;
    fn get_governance_params(self: @TContractState) -> GovernanceParams;
    fn get_pending_change(
        self: @TContractState, param: felt252, subject: felt252,
    ) -> Option<PendingChange>;
    fn last_execution_timestamp(self: @TContractState) -> u64;
    /// Whether the owner requested a rebalance of the current epoch.
    fn is_rebalance_requested(self: @TContractState) -> bool;
    fn is_keeper(self: @TContractState, account: ContractAddress) -> bool;
    fn is_fact_consumed(self: @TContractState, fact_hash: felt252) -> bool;
    fn get_owner(self: @TContractState) -> ContractAddress;
    /// 0 when no transfer is pending.
    fn get_pending_owner(self: @TContractState) -> ContractAddress;
}

/// Integrity's fact of a direct proof: poseidon(program_hash, poseidon_many(output)).
pub fn direct_fact_hash(program_hash: felt252, output: Span<felt252>) -> felt252 {
    let output_hash = core::poseidon::poseidon_hash_span(output);
    core::poseidon::poseidon_hash_span([program_hash, output_hash].span())
}

/// Integrity's fact of a bootloaded proof:
/// poseidon(BOOTLOADER, poseidon_many([1, len(output) + 2, child_hash, *output])).
pub fn bootloaded_fact_hash(child_program_hash: felt252, output: Span<felt252>) -> felt252 {
    let mut bootloader_output: Array<felt252> = array![
        1, output.len().into() + 2, child_program_hash,
    ];
    for x in output {
        bootloader_output.append(*x);
    }
    let output_hash = core::poseidon::poseidon_hash_span(bootloader_output.span());
    core::poseidon::poseidon_hash_span([BOOTLOADER_PROGRAM_HASH, output_hash].span())
}

/// The largest per-protocol move `max_i |new_i - current_i|`; TOTAL_BPS (maximal) when
/// there is no current allocation or the protocol count changed.
pub fn max_move_bps(current: Span<u32>, new: Span<u32>) -> u32 {
    if current.len() == 0 || current.len() != new.len() {
        return TOTAL_BPS;
    }
    let mut max_move: u32 = 0;
    for i in 0..new.len() {
        let (a, b) = (*current.at(i), *new.at(i));
        let step = if a > b {
            a - b
        } else {
            b - a
        };
        if step > max_move {
            max_move = step;
        }
    }
    max_move
}

pub(crate) fn felt_to_u32(value: felt252, err: felt252) -> u32 {
    match value.try_into() {
        Option::Some(v) => v,
        Option::None => core::panic_with_felt252(err),
    }
}

pub(crate) fn felt_to_u64(value: felt252, err: felt252) -> u64 {
    match value.try_into() {
        Option::Some(v) => v,
        Option::None => core::panic_with_felt252(err),
    }
}

/// The number of values `param` takes; panics on an unknown name.
pub fn param_arity(param: felt252) -> u32 {
    if param == 'direct_verifier' || param == 'bootloaded_verifier' {
        4
    } else if param == 'rebalance_interval_s'
        || param == 'drift_threshold_bps'
        || param == 'max_single_bps'
        || param == 'min_diversification'
        || param == 'min_security_bits'
        || param == 'fact_registry'
        || param == 'program_hash'
        || param == 'child_program_hash'
        || param == 'risk_engine'
        || param == 'governance_delay_s'
        || param == 'keeper' {
        1
    } else {
        core::panic_with_felt252('unknown governance param')
    }
}

/// Checks a change's shape and range; panics with the reason. Pure: the same rules hold
/// for proposals and for the constructor's initial values.
pub fn validate_change(param: felt252, subject: felt252, values: Span<felt252>) {
    assert(values.len() == param_arity(param), 'wrong number of values');
    if param == 'keeper' {
        assert(subject != 0, 'keeper is zero');
        assert_address(subject, 'keeper not an address');
        let enabled = *values.at(0);
        assert(enabled == 0 || enabled == 1, 'keeper flag not 0 or 1');
        return;
    }
    assert(subject == 0, 'subject must be 0');
    let value = *values.at(0);
    if param == 'rebalance_interval_s' {
        let seconds = felt_to_u64(value, ERR_INTERVAL);
        assert(seconds >= 1 && seconds <= MAX_REBALANCE_INTERVAL_S, ERR_INTERVAL);
    } else if param == 'drift_threshold_bps' {
        assert(felt_to_u32(value, ERR_DRIFT) <= TOTAL_BPS, ERR_DRIFT);
    } else if param == 'max_single_bps' {
        let bps = felt_to_u32(value, ERR_MAX_SINGLE);
        assert(bps >= 1 && bps <= TOTAL_BPS, ERR_MAX_SINGLE);
    } else if param == 'min_diversification' {
        assert(felt_to_u32(value, ERR_MIN_DIV) <= MAX_PROTOCOLS, ERR_MIN_DIV);
    } else if param == 'min_security_bits' {
        let bits = felt_to_u32(value, ERR_MIN_BITS);
        assert(bits >= MIN_SECURITY_BITS_FLOOR && bits <= MAX_SECURITY_BITS, ERR_MIN_BITS);
    } else if param == 'fact_registry' {
        assert(value != 0, 'fact_registry is zero');
        assert_address(value, 'fact_registry not an address');
    } else if param == 'risk_engine' {
        assert(value != 0, 'risk_engine is zero');
        assert_address(value, 'risk_engine not an address');
    } else if param == 'governance_delay_s' {
        assert(felt_to_u64(value, ERR_DELAY) <= MAX_GOVERNANCE_DELAY_S, ERR_DELAY);
    } else if param == 'direct_verifier' || param == 'bootloaded_verifier' {
        validate_pin(values);
    }
    // program_hash, child_program_hash: any felt (0 = path closed).
}

fn assert_address(value: felt252, err: felt252) {
    let address: Option<ContractAddress> = value.try_into();
    assert(address.is_some(), err);
}

/// A pin is all zeros (nothing accepted) or four non-zero short strings with 'strict'.
fn validate_pin(values: Span<felt252>) {
    let (layout, hasher, version, memory) = (
        *values.at(0), *values.at(1), *values.at(2), *values.at(3),
    );
    if layout == 0 && hasher == 0 && version == 0 && memory == 0 {
        return;
    }
    assert(layout != 0 && hasher != 0 && version != 0, 'verifier pin has a zero field');
    assert(memory == STRICT_MEMORY_VERIFICATION, 'memory verification not strict');
}

#[starknet::contract]
pub mod StrategyRouterV2 {
    use starknet::storage::{
        Map, StoragePathEntry, StoragePointerReadAccess, StoragePointerWriteAccess,
    };
    use starknet::{
        ContractAddress, get_block_timestamp, get_caller_address, get_contract_address,
    };
    use crate::fact_registry::{
        IFactRegistryDispatcher, IFactRegistryDispatcherTrait, VerifierConfiguration,
    };
    use crate::risk_engine::{IRiskEngineDispatcher, IRiskEngineDispatcherTrait};
    use super::{
        DIVERSIFICATION_MIN_BPS, ERR_DELAY, ERR_DRIFT, ERR_INTERVAL, ERR_MAX_SINGLE, ERR_MIN_BITS,
        ERR_MIN_DIV, GOVERNANCE_GRACE_S, GovernanceParams, MAX_PROTOCOLS, OUTPUT_HEADER_LEN,
        PendingChange, TOTAL_BPS, bootloaded_fact_hash, direct_fact_hash, felt_to_u32,
        felt_to_u64, max_move_bps, validate_change,
    };

    /// A pending change in storage: up to four values (the arity of its param).
    #[derive(Drop, Copy, Serde, starknet::Store)]
    struct StoredChange {
        is_pending: bool,
        eta: u64,
        len: u32,
        v0: felt252,
        v1: felt252,
        v2: felt252,
        v3: felt252,
    }

    #[storage]
    struct Storage {
        owner: ContractAddress,
        pending_owner: ContractAddress,
        keepers: Map<ContractAddress, bool>,
        epoch: u64,
        allocation_len: u32,
        allocation: Map<u32, u32>,
        last_execution_timestamp: u64,
        consumed_facts: Map<felt252, bool>,
        owner_requested: Map<u64, bool>,
        rebalance_interval_s: u64,
        drift_threshold_bps: u32,
        max_single_bps: u32,
        min_diversification: u32,
        min_security_bits: u32,
        fact_registry: ContractAddress,
        program_hash: felt252,
        child_program_hash: felt252,
        risk_engine: ContractAddress,
        direct_verifier: VerifierConfiguration,
        bootloaded_verifier: VerifierConfiguration,
        governance_delay_s: u64,
        pending_changes: Map<(felt252, felt252), StoredChange>,
        // Every pending (param, subject), so all of them can be cancelled at once:
        // slots 0..pending_count, and each key's slot + 1 (0 = not listed).
        pending_count: u32,
        pending_param_at: Map<u32, felt252>,
        pending_subject_at: Map<u32, felt252>,
        pending_slot: Map<(felt252, felt252), u32>,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    pub enum Event {
        AllocationExecuted: AllocationExecuted,
        RebalanceRequested: RebalanceRequested,
        GovernanceChangeProposed: GovernanceChangeProposed,
        GovernanceChangeCancelled: GovernanceChangeCancelled,
        GovernanceChangeApplied: GovernanceChangeApplied,
        GovernanceParamsUpdated: GovernanceParamsUpdated,
        KeeperUpdated: KeeperUpdated,
        OwnershipTransferStarted: OwnershipTransferStarted,
        OwnershipTransferred: OwnershipTransferred,
    }

    /// `epoch` is the epoch this allocation executed (the router's epoch is now epoch+1).
    #[derive(Drop, starknet::Event)]
    pub struct AllocationExecuted {
        #[key]
        pub epoch: u64,
        pub fact_hash: felt252,
        pub allocation: Span<u32>,
        /// 'direct' or 'bootloaded'
        pub prover_kind: felt252,
    }

    /// `by_owner`: the owner asked, which lifts the schedule for this epoch; a keeper's
    /// request is only a signal.
    #[derive(Drop, starknet::Event)]
    pub struct RebalanceRequested {
        #[key]
        pub epoch: u64,
        pub requester: ContractAddress,
        pub by_owner: bool,
    }

    #[derive(Drop, starknet::Event)]
    pub struct GovernanceChangeProposed {
        #[key]
        pub param: felt252,
        #[key]
        pub subject: felt252,
        pub values: Span<felt252>,
        pub eta: u64,
    }

    #[derive(Drop, starknet::Event)]
    pub struct GovernanceChangeCancelled {
        #[key]
        pub param: felt252,
        #[key]
        pub subject: felt252,
        pub values: Span<felt252>,
        pub eta: u64,
    }

    /// Closes a proposal; the values it changed follow as GovernanceParamsUpdated (or
    /// KeeperUpdated) events of the same transaction.
    #[derive(Drop, starknet::Event)]
    pub struct GovernanceChangeApplied {
        #[key]
        pub param: felt252,
        #[key]
        pub subject: felt252,
        pub values: Span<felt252>,
        pub eta: u64,
    }

    /// `param` is the GovernanceParams field's short-string name (e.g. 'max_single_bps');
    /// old and new values are felts (integers, addresses and short strings alike).
    #[derive(Drop, starknet::Event)]
    pub struct GovernanceParamsUpdated {
        #[key]
        pub param: felt252,
        pub old_value: felt252,
        pub new_value: felt252,
    }

    #[derive(Drop, starknet::Event)]
    pub struct KeeperUpdated {
        #[key]
        pub keeper: ContractAddress,
        pub enabled: bool,
    }

    /// `new_owner` may accept; 0 = a pending transfer was cancelled.
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

    /// The whole initial configuration, without delay. Emits OwnershipTransferred{0, owner},
    /// one GovernanceParamsUpdated{param, 0, value} per GovernanceParams field (in field
    /// order) and one KeeperUpdated per keeper.
    #[constructor]
    fn constructor(
        ref self: ContractState,
        owner: ContractAddress,
        keepers: Span<ContractAddress>,
        params: GovernanceParams,
    ) {
        assert(owner.into() != 0, 'owner is zero');
        self.owner.write(owner);
        self.emit(OwnershipTransferred { previous_owner: 0.try_into().unwrap(), new_owner: owner });
        let p = params;
        self.set_initial('rebalance_interval_s', [p.rebalance_interval_s.into()].span());
        self.set_initial('drift_threshold_bps', [p.drift_threshold_bps.into()].span());
        self.set_initial('max_single_bps', [p.max_single_bps.into()].span());
        self.set_initial('min_diversification', [p.min_diversification.into()].span());
        self.set_initial('min_security_bits', [p.min_security_bits.into()].span());
        self.set_initial('fact_registry', [p.fact_registry.into()].span());
        self.set_initial('program_hash', [p.program_hash].span());
        self.set_initial('child_program_hash', [p.child_program_hash].span());
        self.set_initial('risk_engine', [p.risk_engine.into()].span());
        self
            .set_initial(
                'direct_verifier',
                [p.direct_layout, p.direct_hasher, p.direct_stone_version,
                p.direct_memory_verification]
                    .span(),
            );
        self
            .set_initial(
                'bootloaded_verifier',
                [p.bootloaded_layout, p.bootloaded_hasher, p.bootloaded_stone_version,
                p.bootloaded_memory_verification]
                    .span(),
            );
        self.set_initial('governance_delay_s', [p.governance_delay_s.into()].span());
        for keeper in keepers {
            let subject: felt252 = (*keeper).into();
            validate_change('keeper', subject, [1].span());
            self.write_change('keeper', subject, [1].span());
        }
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        fn assert_owner(self: @ContractState) {
            assert(get_caller_address() == self.owner.read(), 'caller is not owner');
        }

        /// Constructor: validate and write at once.
        fn set_initial(ref self: ContractState, param: felt252, values: Span<felt252>) {
            validate_change(param, 0, values);
            self.write_change(param, 0, values);
        }

        fn updated(
            ref self: ContractState, param: felt252, old_value: felt252, new_value: felt252,
        ) {
            self.emit(GovernanceParamsUpdated { param, old_value, new_value });
        }

        /// Writes a validated change and emits what changed (old -> new).
        fn write_change(
            ref self: ContractState, param: felt252, subject: felt252, values: Span<felt252>,
        ) {
            let value = *values.at(0);
            if param == 'keeper' {
                let keeper: ContractAddress = subject.try_into().unwrap();
                let enabled = value == 1;
                self.keepers.entry(keeper).write(enabled);
                self.emit(KeeperUpdated { keeper, enabled });
            } else if param == 'direct_verifier' || param == 'bootloaded_verifier' {
                let new = VerifierConfiguration {
                    layout: value,
                    hasher: *values.at(1),
                    stone_version: *values.at(2),
                    memory_verification: *values.at(3),
                };
                let is_direct = param == 'direct_verifier';
                let old = if is_direct {
                    self.direct_verifier.read()
                } else {
                    self.bootloaded_verifier.read()
                };
                if is_direct {
                    self.direct_verifier.write(new);
                    self.updated('direct_layout', old.layout, new.layout);
                    self.updated('direct_hasher', old.hasher, new.hasher);
                    self.updated('direct_stone_version', old.stone_version, new.stone_version);
                    self
                        .updated(
                            'direct_memory_verification',
                            old.memory_verification,
                            new.memory_verification,
                        );
                } else {
                    self.bootloaded_verifier.write(new);
                    self.updated('bootloaded_layout', old.layout, new.layout);
                    self.updated('bootloaded_hasher', old.hasher, new.hasher);
                    self
                        .updated(
                            'bootloaded_stone_version', old.stone_version, new.stone_version,
                        );
                    self
                        .updated(
                            'bootloaded_memory_verification',
                            old.memory_verification,
                            new.memory_verification,
                        );
                }
            } else {
                let old = self.read_scalar(param);
                self.write_scalar(param, value);
                self.updated(param, old, value);
            }
        }

        fn read_scalar(self: @ContractState, param: felt252) -> felt252 {
            if param == 'rebalance_interval_s' {
                self.rebalance_interval_s.read().into()
            } else if param == 'drift_threshold_bps' {
                self.drift_threshold_bps.read().into()
            } else if param == 'max_single_bps' {
                self.max_single_bps.read().into()
            } else if param == 'min_diversification' {
                self.min_diversification.read().into()
            } else if param == 'min_security_bits' {
                self.min_security_bits.read().into()
            } else if param == 'fact_registry' {
                self.fact_registry.read().into()
            } else if param == 'program_hash' {
                self.program_hash.read()
            } else if param == 'child_program_hash' {
                self.child_program_hash.read()
            } else if param == 'risk_engine' {
                self.risk_engine.read().into()
            } else {
                self.governance_delay_s.read().into()
            }
        }

        /// `value` was validated (validate_change): the conversions cannot fail.
        fn write_scalar(ref self: ContractState, param: felt252, value: felt252) {
            if param == 'rebalance_interval_s' {
                self.rebalance_interval_s.write(felt_to_u64(value, ERR_INTERVAL));
            } else if param == 'drift_threshold_bps' {
                self.drift_threshold_bps.write(felt_to_u32(value, ERR_DRIFT));
            } else if param == 'max_single_bps' {
                self.max_single_bps.write(felt_to_u32(value, ERR_MAX_SINGLE));
            } else if param == 'min_diversification' {
                self.min_diversification.write(felt_to_u32(value, ERR_MIN_DIV));
            } else if param == 'min_security_bits' {
                self.min_security_bits.write(felt_to_u32(value, ERR_MIN_BITS));
            } else if param == 'fact_registry' {
                self.fact_registry.write(value.try_into().unwrap());
            } else if param == 'program_hash' {
                self.program_hash.write(value);
            } else if param == 'child_program_hash' {
                self.child_program_hash.write(value);
            } else if param == 'risk_engine' {
                self.risk_engine.write(value.try_into().unwrap());
            } else {
                self.governance_delay_s.write(felt_to_u64(value, ERR_DELAY));
            }
        }

        /// Removes the pending change of (param, subject): its values and eta.
        fn take_pending(
            ref self: ContractState, param: felt252, subject: felt252,
        ) -> (Array<felt252>, u64) {
            let entry = self.pending_changes.entry((param, subject));
            let stored = entry.read();
            assert(stored.is_pending, 'no pending change');
            entry
                .write(
                    StoredChange { is_pending: false, eta: 0, len: 0, v0: 0, v1: 0, v2: 0, v3: 0 },
                );
            self.unlist_pending(param, subject);
            (self.pending_values(stored), stored.eta)
        }

        fn list_pending(ref self: ContractState, param: felt252, subject: felt252) {
            let count = self.pending_count.read();
            self.pending_param_at.entry(count).write(param);
            self.pending_subject_at.entry(count).write(subject);
            self.pending_slot.entry((param, subject)).write(count + 1);
            self.pending_count.write(count + 1);
        }

        /// Swap-remove from the list of pending keys.
        fn unlist_pending(ref self: ContractState, param: felt252, subject: felt252) {
            let slot = self.pending_slot.entry((param, subject)).read();
            if slot == 0 {
                return;
            }
            let index = slot - 1;
            let last = self.pending_count.read() - 1;
            if index != last {
                let last_param = self.pending_param_at.entry(last).read();
                let last_subject = self.pending_subject_at.entry(last).read();
                self.pending_param_at.entry(index).write(last_param);
                self.pending_subject_at.entry(index).write(last_subject);
                self.pending_slot.entry((last_param, last_subject)).write(slot);
            }
            self.pending_param_at.entry(last).write(0);
            self.pending_subject_at.entry(last).write(0);
            self.pending_slot.entry((param, subject)).write(0);
            self.pending_count.write(last);
        }

        /// Cancels every pending change, each with its GovernanceChangeCancelled.
        fn cancel_all_pending(ref self: ContractState) {
            while self.pending_count.read() > 0 {
                let last = self.pending_count.read() - 1;
                let param = self.pending_param_at.entry(last).read();
                let subject = self.pending_subject_at.entry(last).read();
                let (values, eta) = self.take_pending(param, subject);
                self
                    .emit(
                        GovernanceChangeCancelled { param, subject, values: values.span(), eta },
                    );
            }
        }

        fn pending_values(self: @ContractState, stored: StoredChange) -> Array<felt252> {
            let all = [stored.v0, stored.v1, stored.v2, stored.v3];
            let mut out = array![];
            for v in all.span().slice(0, stored.len) {
                out.append(*v);
            }
            out
        }

        /// The facts of `output` under the accepted program hashes (0 = path closed).
        fn accepted_facts(self: @ContractState, output: Span<felt252>) -> (felt252, felt252) {
            let program_hash = self.program_hash.read();
            let child_program_hash = self.child_program_hash.read();
            let direct = if program_hash != 0 {
                direct_fact_hash(program_hash, output)
            } else {
                0
            };
            let bootloaded = if child_program_hash != 0 {
                bootloaded_fact_hash(child_program_hash, output)
            } else {
                0
            };
            (direct, bootloaded)
        }

        /// Interval passed (or never executed), drift >= threshold, or owner's request.
        fn assert_rebalance_due(self: @ContractState, epoch: u64, new_allocation: Span<u32>) {
            let len = self.allocation_len.read();
            if len == 0 {
                return; // never executed
            }
            let last = self.last_execution_timestamp.read();
            if get_block_timestamp() >= last + self.rebalance_interval_s.read() {
                return;
            }
            if self.owner_requested.entry(epoch).read() {
                return;
            }
            let mut current: Array<u32> = array![];
            for i in 0..len {
                current.append(self.allocation.entry(i).read());
            }
            let drift = max_move_bps(current.span(), new_allocation);
            assert(drift >= self.drift_threshold_bps.read(), 'rebalance not due');
        }

        /// One registry lookup: the verification must exist, be of one of the output's
        /// accepted facts, use that path's pinned configuration and have enough bits.
        /// Returns (prover_kind, fact_hash).
        fn check_verification(
            self: @ContractState, facts: (felt252, felt252), verification_hash: felt252,
        ) -> (felt252, felt252) {
            let (direct, bootloaded) = facts;
            assert(direct != 0 || bootloaded != 0, 'no program hash accepted');
            let registry = IFactRegistryDispatcher { contract_address: self.fact_registry.read() };
            let verification = match registry.get_verification(verification_hash) {
                Option::Some(v) => v,
                Option::None => core::panic_with_felt252('verification not found'),
            };
            let fact = verification.fact_hash;
            let (kind, pin) = if direct != 0 && fact == direct {
                ('direct', self.direct_verifier.read())
            } else if bootloaded != 0 && fact == bootloaded {
                ('bootloaded', self.bootloaded_verifier.read())
            } else {
                core::panic_with_felt252('verification for other fact')
            };
            // An all-zero pin accepts nothing (DevFactRegistry could register zeros).
            assert(pin.layout != 0, 'verifier config not pinned');
            assert(verification.verifier_config == pin, 'verifier config not pinned');
            assert(
                verification.security_bits >= self.min_security_bits.read(),
                'fact security bits too low',
            );
            (kind, fact)
        }
    }

    #[abi(embed_v0)]
    impl StrategyRouterV2Impl of super::IStrategyRouterV2<ContractState> {
        fn execute_allocation(
            ref self: ContractState, output: Span<felt252>, verification_hash: felt252,
        ) {
            assert(self.keepers.entry(get_caller_address()).read(), 'caller is not keeper');
            assert(output.len() >= OUTPUT_HEADER_LEN, 'output too short');
            let n = felt_to_u32(*output.at(5), 'protocol count out of range');
            assert(n >= 1 && n <= MAX_PROTOCOLS, 'protocol count out of range');
            assert(output.len() == OUTPUT_HEADER_LEN + 2 * n, 'output length != 6 + 2n');
            // Replays first: the most specific diagnosis for a resubmitted output.
            let facts = self.accepted_facts(output);
            let (direct, bootloaded) = facts;
            if direct != 0 {
                assert(!self.consumed_facts.entry(direct).read(), 'fact already consumed');
            }
            if bootloaded != 0 {
                assert(!self.consumed_facts.entry(bootloaded).read(), 'fact already consumed');
            }

            let epoch = self.epoch.read();
            assert(*output.at(0) == get_contract_address().into(), 'output for another router');
            assert(*output.at(1) == epoch.into(), 'output epoch != current epoch');
            let risk_engine = IRiskEngineDispatcher { contract_address: self.risk_engine.read() };
            assert(
                *output.at(2) == risk_engine.get_inputs_commitment(), 'stale inputs commitment',
            );
            let max_single = self.max_single_bps.read();
            let min_div = self.min_diversification.read();
            assert(*output.at(3) == max_single.into(), 'max_single != governance');
            assert(*output.at(4) == min_div.into(), 'min_div != governance');
            assert(n == risk_engine.get_protocol_count(), 'n != RiskEngine count');

            let allocation = output.slice(OUTPUT_HEADER_LEN, n);
            let mut alloc_u32: Array<u32> = array![];
            let mut sum: u32 = 0;
            let mut diversified: u32 = 0;
            for a in allocation {
                let bps = felt_to_u32(*a, 'allocation out of range');
                assert(bps <= TOTAL_BPS, 'allocation out of range');
                assert(bps <= max_single, 'allocation above max_single');
                if bps >= DIVERSIFICATION_MIN_BPS {
                    diversified += 1;
                }
                sum += bps;
                alloc_u32.append(bps);
            }
            assert(sum == TOTAL_BPS, 'allocation sum != 10000');
            assert(diversified >= min_div, 'diversification below min');
            self.assert_rebalance_due(epoch, alloc_u32.span());

            let (prover_kind, fact_hash) = self.check_verification(facts, verification_hash);

            for i in 0..n {
                self.allocation.entry(i).write(*alloc_u32.at(i));
            }
            self.allocation_len.write(n);
            self.consumed_facts.entry(fact_hash).write(true);
            self.epoch.write(epoch + 1);
            self.last_execution_timestamp.write(get_block_timestamp());
            self
                .emit(
                    AllocationExecuted {
                        epoch, fact_hash, allocation: alloc_u32.span(), prover_kind,
                    },
                );
        }

        fn request_rebalance(ref self: ContractState) {
            let caller = get_caller_address();
            let by_owner = caller == self.owner.read();
            assert(by_owner || self.keepers.entry(caller).read(), 'caller not keeper or owner');
            let epoch = self.epoch.read();
            if by_owner {
                self.owner_requested.entry(epoch).write(true);
            }
            self.emit(RebalanceRequested { epoch, requester: caller, by_owner });
        }

        fn propose_change(
            ref self: ContractState, param: felt252, subject: felt252, values: Span<felt252>,
        ) -> u64 {
            self.assert_owner();
            validate_change(param, subject, values);
            let entry = self.pending_changes.entry((param, subject));
            assert(!entry.read().is_pending, 'change already pending');
            self.list_pending(param, subject);
            let eta = get_block_timestamp() + self.governance_delay_s.read();
            let mut padded: Array<felt252> = array![];
            for v in values {
                padded.append(*v);
            }
            while padded.len() < 4 {
                padded.append(0);
            }
            entry
                .write(
                    StoredChange {
                        is_pending: true,
                        eta,
                        len: values.len(),
                        v0: *padded.at(0),
                        v1: *padded.at(1),
                        v2: *padded.at(2),
                        v3: *padded.at(3),
                    },
                );
            self.emit(GovernanceChangeProposed { param, subject, values, eta });
            eta
        }

        fn cancel_change(ref self: ContractState, param: felt252, subject: felt252) {
            self.assert_owner();
            let (values, eta) = self.take_pending(param, subject);
            self.emit(GovernanceChangeCancelled { param, subject, values: values.span(), eta });
        }

        fn apply_change(ref self: ContractState, param: felt252, subject: felt252) {
            self.assert_owner();
            let (values, eta) = self.take_pending(param, subject);
            let now = get_block_timestamp();
            assert(now >= eta, 'change not yet due');
            assert(now <= eta + GOVERNANCE_GRACE_S, 'change expired');
            // A longer notice holds for what is pending too: every pending change was
            // announced under the shorter one, so it is cancelled (propose it again).
            let raises_delay = param == 'governance_delay_s'
                && felt_to_u64(*values.at(0), ERR_DELAY) > self.governance_delay_s.read();
            self.emit(GovernanceChangeApplied { param, subject, values: values.span(), eta });
            self.write_change(param, subject, values.span());
            if raises_delay {
                self.cancel_all_pending();
            }
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
            let previous_owner = self.owner.read();
            self.owner.write(caller);
            self.pending_owner.write(0.try_into().unwrap());
            self.emit(OwnershipTransferred { previous_owner, new_owner: caller });
            // The previous owner's proposals are not the new owner's to apply.
            self.cancel_all_pending();
        }

        fn get_epoch(self: @ContractState) -> u64 {
            self.epoch.read()
        }

        fn get_allocation(self: @ContractState) -> Array<u32> {
            let mut out = array![];
            for i in 0..self.allocation_len.read() {
                out.append(self.allocation.entry(i).read());
            }
            out
        }

        fn get_governance_params(self: @ContractState) -> GovernanceParams {
            let direct = self.direct_verifier.read();
            let boot = self.bootloaded_verifier.read();
            GovernanceParams {
                rebalance_interval_s: self.rebalance_interval_s.read(),
                drift_threshold_bps: self.drift_threshold_bps.read(),
                max_single_bps: self.max_single_bps.read(),
                min_diversification: self.min_diversification.read(),
                min_security_bits: self.min_security_bits.read(),
                fact_registry: self.fact_registry.read(),
                program_hash: self.program_hash.read(),
                child_program_hash: self.child_program_hash.read(),
                risk_engine: self.risk_engine.read(),
                direct_layout: direct.layout,
                direct_hasher: direct.hasher,
                direct_stone_version: direct.stone_version,
                direct_memory_verification: direct.memory_verification,
                bootloaded_layout: boot.layout,
                bootloaded_hasher: boot.hasher,
                bootloaded_stone_version: boot.stone_version,
                bootloaded_memory_verification: boot.memory_verification,
                governance_delay_s: self.governance_delay_s.read(),
            }
        }

        fn get_pending_change(
            self: @ContractState, param: felt252, subject: felt252,
        ) -> Option<PendingChange> {
            let stored = self.pending_changes.entry((param, subject)).read();
            if !stored.is_pending {
                return Option::None;
            }
            Option::Some(PendingChange { values: self.pending_values(stored), eta: stored.eta })
        }

        fn last_execution_timestamp(self: @ContractState) -> u64 {
            self.last_execution_timestamp.read()
        }

        fn is_rebalance_requested(self: @ContractState) -> bool {
            self.owner_requested.entry(self.epoch.read()).read()
        }

        fn is_keeper(self: @ContractState, account: ContractAddress) -> bool {
            self.keepers.entry(account).read()
        }

        fn is_fact_consumed(self: @ContractState, fact_hash: felt252) -> bool {
            self.consumed_facts.entry(fact_hash).read()
        }

        fn get_owner(self: @ContractState) -> ContractAddress {
            self.owner.read()
        }

        fn get_pending_owner(self: @ContractState) -> ContractAddress {
            self.pending_owner.read()
        }
    }
}
