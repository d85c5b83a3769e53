//! StrategyRouterV2 — holds the current allocation and accepts a new one only with a
//! proof: `execute_allocation(output)` takes the allocation program's public output
//! (docs/allocation-program.md §4) and requires a fact for exactly that output, under an
//! accepted program hash, registered with enough security bits in the fact registry whose
//! address governance stored (§5). Each fact executes at most once.

use starknet::ContractAddress;

pub const BOOTLOADER_PROGRAM_HASH: felt252 =
    0x5ab580b04e3532b6b18f81cfa654a05e29dd8e2352d88df1e765a84072db07;
pub const TOTAL_BPS: u32 = 10000;
pub const DIVERSIFICATION_MIN_BPS: u32 = 1000;
pub const MAX_PROTOCOLS: u32 = 16;
/// Output header: router, epoch, commitment, max_single, min_div, n.
pub const OUTPUT_HEADER_LEN: u32 = 6;

/// Every governance parameter, in one call.
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
}

#[starknet::interface]
pub trait IStrategyRouterV2<TContractState> {
    /// Keeper only. See the module doc and contracts/README.md for the checks.
    fn execute_allocation(ref self: TContractState, output: Span<felt252>);
    /// Keeper or owner. Asks the keepers to prove and execute the current epoch.
    fn request_rebalance(ref self: TContractState);

    // Governance (owner only); each emits GovernanceParamsUpdated{param, old, new}.
    fn set_rebalance_interval(ref self: TContractState, seconds: u64);
    fn set_drift_threshold_bps(ref self: TContractState, bps: u32);
    fn set_max_single_bps(ref self: TContractState, bps: u32);
    fn set_min_diversification(ref self: TContractState, count: u32);
    fn set_min_security_bits(ref self: TContractState, bits: u32);
    fn set_fact_registry(ref self: TContractState, registry: ContractAddress);
    fn set_program_hash(ref self: TContractState, program_hash: felt252);
    fn set_child_program_hash(ref self: TContractState, child_program_hash: felt252);
    fn set_risk_engine(ref self: TContractState, risk_engine: ContractAddress);
    fn set_keeper(ref self: TContractState, keeper: ContractAddress, enabled: bool);
    fn transfer_ownership(ref self: TContractState, new_owner: ContractAddress);

    fn get_epoch(self: @TContractState) -> u64;
    fn get_allocation(self: @TContractState) -> Array<u32>;
    fn get_governance_params(self: @TContractState) -> GovernanceParams;
    fn last_execution_timestamp(self: @TContractState) -> u64;
    fn is_keeper(self: @TContractState, account: ContractAddress) -> bool;
    fn is_fact_consumed(self: @TContractState, fact_hash: felt252) -> bool;
    fn get_owner(self: @TContractState) -> ContractAddress;
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

#[starknet::contract]
pub mod StrategyRouterV2 {
    use starknet::storage::{
        Map, StoragePathEntry, StoragePointerReadAccess, StoragePointerWriteAccess,
    };
    use starknet::{
        ContractAddress, get_block_timestamp, get_caller_address, get_contract_address,
    };
    use crate::fact_registry::{IFactRegistryDispatcher, IFactRegistryDispatcherTrait};
    use crate::risk_engine::{IRiskEngineDispatcher, IRiskEngineDispatcherTrait};
    use super::{
        DIVERSIFICATION_MIN_BPS, GovernanceParams, MAX_PROTOCOLS, OUTPUT_HEADER_LEN, TOTAL_BPS,
        bootloaded_fact_hash, direct_fact_hash,
    };

    #[storage]
    struct Storage {
        owner: ContractAddress,
        keepers: Map<ContractAddress, bool>,
        epoch: u64,
        allocation_len: u32,
        allocation: Map<u32, u32>,
        last_execution_timestamp: u64,
        consumed_facts: Map<felt252, bool>,
        rebalance_interval_s: u64,
        drift_threshold_bps: u32,
        max_single_bps: u32,
        min_diversification: u32,
        min_security_bits: u32,
        fact_registry: ContractAddress,
        program_hash: felt252,
        child_program_hash: felt252,
        risk_engine: ContractAddress,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    pub enum Event {
        AllocationExecuted: AllocationExecuted,
        RebalanceRequested: RebalanceRequested,
        GovernanceParamsUpdated: GovernanceParamsUpdated,
        KeeperUpdated: KeeperUpdated,
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

    #[derive(Drop, starknet::Event)]
    pub struct RebalanceRequested {
        #[key]
        pub epoch: u64,
        pub requester: ContractAddress,
    }

    /// `param` is the parameter's short-string name (e.g. 'max_single_bps'); old and new
    /// values are felts (integers and addresses alike).
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

    #[derive(Drop, starknet::Event)]
    pub struct OwnershipTransferred {
        pub previous_owner: ContractAddress,
        pub new_owner: ContractAddress,
    }

    /// Defaults: interval 3600 s, drift 500 bps, max_single 6000 bps, min_div 2,
    /// 96 security bits, no program hash accepted until governance sets one.
    #[constructor]
    fn constructor(
        ref self: ContractState,
        owner: ContractAddress,
        risk_engine: ContractAddress,
        fact_registry: ContractAddress,
    ) {
        assert(owner.into() != 0, 'owner is zero');
        assert(risk_engine.into() != 0, 'risk_engine is zero');
        assert(fact_registry.into() != 0, 'fact_registry is zero');
        self.owner.write(owner);
        self.risk_engine.write(risk_engine);
        self.fact_registry.write(fact_registry);
        self.rebalance_interval_s.write(3600);
        self.drift_threshold_bps.write(500);
        self.max_single_bps.write(6000);
        self.min_diversification.write(2);
        self.min_security_bits.write(96);
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        fn assert_owner(self: @ContractState) {
            assert(get_caller_address() == self.owner.read(), 'caller is not owner');
        }

        fn governance_changed(
            ref self: ContractState, param: felt252, old_value: felt252, new_value: felt252,
        ) {
            self.emit(GovernanceParamsUpdated { param, old_value, new_value });
        }

        /// 'direct' / 'bootloaded' and the fact, or a revert naming what is missing.
        fn find_accepted_fact(self: @ContractState, output: Span<felt252>) -> (felt252, felt252) {
            let program_hash = self.program_hash.read();
            let child_program_hash = self.child_program_hash.read();
            assert(program_hash != 0 || child_program_hash != 0, 'no program hash accepted');
            let registry = IFactRegistryDispatcher { contract_address: self.fact_registry.read() };
            let min_bits = self.min_security_bits.read();
            let mut seen_weak = false;
            if program_hash != 0 {
                let fact = direct_fact_hash(program_hash, output);
                let (strong, weak) = verification_strength(registry, fact, min_bits);
                if strong {
                    return ('direct', fact);
                }
                seen_weak = weak;
            }
            if child_program_hash != 0 {
                let fact = bootloaded_fact_hash(child_program_hash, output);
                let (strong, weak) = verification_strength(registry, fact, min_bits);
                if strong {
                    return ('bootloaded', fact);
                }
                seen_weak = seen_weak || weak;
            }
            assert(!seen_weak, 'fact security bits too low');
            core::panic_with_felt252('fact not registered')
        }

        /// Revert when a fact of this output under an accepted hash was already executed.
        fn assert_not_consumed(self: @ContractState, output: Span<felt252>) {
            let program_hash = self.program_hash.read();
            if program_hash != 0 {
                let fact = direct_fact_hash(program_hash, output);
                assert(!self.consumed_facts.entry(fact).read(), 'fact already consumed');
            }
            let child_program_hash = self.child_program_hash.read();
            if child_program_hash != 0 {
                let fact = bootloaded_fact_hash(child_program_hash, output);
                assert(!self.consumed_facts.entry(fact).read(), 'fact already consumed');
            }
        }
    }

    /// (some verification has >= min_bits, some verification exists with fewer).
    fn verification_strength(
        registry: IFactRegistryDispatcher, fact: felt252, min_bits: u32,
    ) -> (bool, bool) {
        let verifications = registry.get_all_verifications_for_fact_hash(fact);
        let mut weak = false;
        for v in verifications.span() {
            if *v.security_bits >= min_bits {
                return (true, false);
            }
            weak = true;
        }
        (false, weak)
    }

    fn felt_to_u32(value: felt252, err: felt252) -> u32 {
        match value.try_into() {
            Option::Some(v) => v,
            Option::None => core::panic_with_felt252(err),
        }
    }

    #[abi(embed_v0)]
    impl StrategyRouterV2Impl of super::IStrategyRouterV2<ContractState> {
        fn execute_allocation(ref self: ContractState, output: Span<felt252>) {
            assert(self.keepers.entry(get_caller_address()).read(), 'caller is not keeper');
            assert(output.len() >= OUTPUT_HEADER_LEN, 'output too short');
            let n = felt_to_u32(*output.at(5), 'protocol count out of range');
            assert(n >= 1 && n <= MAX_PROTOCOLS, 'protocol count out of range');
            assert(output.len() == OUTPUT_HEADER_LEN + 2 * n, 'output length != 6 + 2n');
            // Replays first: the most specific diagnosis for a resubmitted output.
            self.assert_not_consumed(output);

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

            let (prover_kind, fact_hash) = self.find_accepted_fact(output);

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
            assert(
                self.keepers.entry(caller).read() || caller == self.owner.read(),
                'caller not keeper or owner',
            );
            self.emit(RebalanceRequested { epoch: self.epoch.read(), requester: caller });
        }

        fn set_rebalance_interval(ref self: ContractState, seconds: u64) {
            self.assert_owner();
            assert(seconds >= 1, 'interval must be >= 1 s');
            let old = self.rebalance_interval_s.read();
            self.rebalance_interval_s.write(seconds);
            self.governance_changed('rebalance_interval_s', old.into(), seconds.into());
        }

        fn set_drift_threshold_bps(ref self: ContractState, bps: u32) {
            self.assert_owner();
            assert(bps <= TOTAL_BPS, 'drift threshold > 10000');
            let old = self.drift_threshold_bps.read();
            self.drift_threshold_bps.write(bps);
            self.governance_changed('drift_threshold_bps', old.into(), bps.into());
        }

        fn set_max_single_bps(ref self: ContractState, bps: u32) {
            self.assert_owner();
            assert(bps >= 1 && bps <= TOTAL_BPS, 'max_single not in 1..10000');
            let old = self.max_single_bps.read();
            self.max_single_bps.write(bps);
            self.governance_changed('max_single_bps', old.into(), bps.into());
        }

        fn set_min_diversification(ref self: ContractState, count: u32) {
            self.assert_owner();
            assert(count <= MAX_PROTOCOLS, 'min_div not in 0..16');
            let old = self.min_diversification.read();
            self.min_diversification.write(count);
            self.governance_changed('min_diversification', old.into(), count.into());
        }

        fn set_min_security_bits(ref self: ContractState, bits: u32) {
            self.assert_owner();
            assert(bits >= 1, 'min_security_bits must be >= 1');
            let old = self.min_security_bits.read();
            self.min_security_bits.write(bits);
            self.governance_changed('min_security_bits', old.into(), bits.into());
        }

        fn set_fact_registry(ref self: ContractState, registry: ContractAddress) {
            self.assert_owner();
            assert(registry.into() != 0, 'fact_registry is zero');
            let old = self.fact_registry.read();
            self.fact_registry.write(registry);
            self.governance_changed('fact_registry', old.into(), registry.into());
        }

        fn set_program_hash(ref self: ContractState, program_hash: felt252) {
            self.assert_owner();
            let old = self.program_hash.read();
            self.program_hash.write(program_hash);
            self.governance_changed('program_hash', old, program_hash);
        }

        fn set_child_program_hash(ref self: ContractState, child_program_hash: felt252) {
            self.assert_owner();
            let old = self.child_program_hash.read();
            self.child_program_hash.write(child_program_hash);
            self.governance_changed('child_program_hash', old, child_program_hash);
        }

        fn set_risk_engine(ref self: ContractState, risk_engine: ContractAddress) {
            self.assert_owner();
            assert(risk_engine.into() != 0, 'risk_engine is zero');
            let old = self.risk_engine.read();
            self.risk_engine.write(risk_engine);
            self.governance_changed('risk_engine', old.into(), risk_engine.into());
        }

        fn set_keeper(ref self: ContractState, keeper: ContractAddress, enabled: bool) {
            self.assert_owner();
            self.keepers.entry(keeper).write(enabled);
            self.emit(KeeperUpdated { keeper, enabled });
        }

        fn transfer_ownership(ref self: ContractState, new_owner: ContractAddress) {
            self.assert_owner();
            assert(new_owner.into() != 0, 'owner is zero');
            let previous_owner = self.owner.read();
            self.owner.write(new_owner);
            self.emit(OwnershipTransferred { previous_owner, new_owner });
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
            }
        }

        fn last_execution_timestamp(self: @ContractState) -> u64 {
            self.last_execution_timestamp.read()
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
    }
}
