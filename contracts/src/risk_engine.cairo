//! RiskEngine — the on-chain inputs of the allocation program (docs/allocation-program.md
//! §1) and their commitment (§2).
//!
//! An `oracle` publishes the metrics of all protocols at once (`set_all_metrics`: every
//! write is a complete snapshot, so no half-applied update can ever be committed to, proven
//! and executed); governance (the owner) sets the 12 model parameters. `get_inputs()`
//! serializes to exactly the §2 element list `[n, 6 fields per protocol…, 12 params]`, and
//! `get_inputs_commitment()` is the `compute_hash_on_elements` Pedersen chain over that
//! list. Ownership moves in two steps (transfer_ownership, then accept_ownership).

use starknet::ContractAddress;

pub const MAX_PROTOCOLS: u32 = 16;
pub const MAX_BPS: u32 = 10000;
pub const MAX_LIQUIDITY_TIER: u32 = 3;
pub const MAX_AUDIT_SCORE: u32 = 100;
pub const MAX_AGE_DAYS: u32 = 100000;
pub const MAX_APY_BPS: u32 = 100000;
pub const MAX_PARAM: u32 = 100000;

/// One protocol's risk inputs; serialized as six felts in this order.
#[derive(Drop, Copy, Serde, PartialEq, Debug, starknet::Store)]
pub struct ProtocolMetrics {
    pub utilization_bps: u32,
    pub volatility_bps: u32,
    pub liquidity_tier: u32,
    pub audit_score: u32,
    pub age_days: u32,
    pub apy_bps: u32,
}

/// The 12 model parameters, in the order of docs/allocation-program.md §1.
#[derive(Drop, Copy, Serde, PartialEq, Debug, starknet::Store)]
pub struct ModelParams {
    pub w_util: u32,
    pub w_vol: u32,
    pub liq_penalty_0: u32,
    pub liq_penalty_1: u32,
    pub liq_penalty_2: u32,
    pub liq_penalty_3: u32,
    pub audit_num: u32,
    pub audit_den: u32,
    pub age_cap_days: u32,
    pub age_penalty: u32,
    pub risk_floor: u32,
    pub risk_ceiling: u32,
}

pub fn default_model_params() -> ModelParams {
    ModelParams {
        w_util: 25,
        w_vol: 40,
        liq_penalty_0: 0,
        liq_penalty_1: 5,
        liq_penalty_2: 15,
        liq_penalty_3: 30,
        audit_num: 3,
        audit_den: 10,
        age_cap_days: 730,
        age_penalty: 10,
        risk_floor: 5,
        risk_ceiling: 95,
    }
}

#[starknet::interface]
pub trait IRiskEngine<TContractState> {
    /// Oracle only. Replaces the whole protocol set (1..16 protocols, storage order): the
    /// only way to write metrics, so every state is a complete snapshot.
    fn set_all_metrics(ref self: TContractState, metrics: Span<ProtocolMetrics>);
    /// Owner (governance) only.
    fn set_model_params(ref self: TContractState, params: ModelParams);
    /// Owner only.
    fn set_oracle(ref self: TContractState, oracle: ContractAddress);
    /// Owner only. Step 1 of 2: `new_owner` becomes the pending owner (0 cancels).
    fn transfer_ownership(ref self: TContractState, new_owner: ContractAddress);
    /// Pending owner only. Step 2 of 2: the caller becomes the owner.
    fn accept_ownership(ref self: TContractState);

    fn get_protocol_count(self: @TContractState) -> u32;
    fn get_metrics(self: @TContractState, index: u32) -> ProtocolMetrics;
    fn get_model_params(self: @TContractState) -> ModelParams;
    /// All inputs in one call; serializes to the §2 element list.
    fn get_inputs(self: @TContractState) -> (Array<ProtocolMetrics>, ModelParams);
    /// Pedersen `compute_hash_on_elements` over the §2 element list.
    fn get_inputs_commitment(self: @TContractState) -> felt252;
    fn get_oracle(self: @TContractState) -> ContractAddress;
    fn get_owner(self: @TContractState) -> ContractAddress;
    /// 0 when no transfer is pending.
    fn get_pending_owner(self: @TContractState) -> ContractAddress;
}

/// `compute_hash_on_elements`: h = 0; h = pedersen(h, e) for each e; pedersen(h, len).
pub fn hash_on_elements(elements: Span<felt252>) -> felt252 {
    let mut h: felt252 = 0;
    for e in elements {
        h = core::pedersen::pedersen(h, *e);
    }
    core::pedersen::pedersen(h, elements.len().into())
}

/// The §2 serialization `[n, metrics…, params…]`.
pub fn serialize_inputs(metrics: Span<ProtocolMetrics>, params: ModelParams) -> Array<felt252> {
    let mut elements: Array<felt252> = array![];
    metrics.serialize(ref elements);
    params.serialize(ref elements);
    elements
}

pub fn validate_metrics(m: ProtocolMetrics) {
    assert(m.utilization_bps <= MAX_BPS, 'utilization_bps > 10000');
    assert(m.volatility_bps <= MAX_BPS, 'volatility_bps > 10000');
    assert(m.liquidity_tier <= MAX_LIQUIDITY_TIER, 'liquidity_tier > 3');
    assert(m.audit_score <= MAX_AUDIT_SCORE, 'audit_score > 100');
    assert(m.age_days <= MAX_AGE_DAYS, 'age_days > 100000');
    assert(m.apy_bps <= MAX_APY_BPS, 'apy_bps > 100000');
}

pub fn validate_params(p: ModelParams) {
    let mut values: Array<felt252> = array![];
    p.serialize(ref values);
    for v in values.span() {
        let value: u32 = (*v).try_into().unwrap();
        assert(value <= MAX_PARAM, 'model param > 100000');
    }
    assert(p.audit_den >= 1, 'audit_den must be >= 1');
    assert(p.age_cap_days >= 1, 'age_cap_days must be >= 1');
    assert(p.risk_ceiling >= p.risk_floor, 'risk_ceiling < risk_floor');
}

#[starknet::contract]
pub mod RiskEngine {
    use starknet::storage::{
        Map, StoragePathEntry, StoragePointerReadAccess, StoragePointerWriteAccess,
    };
    use starknet::{ContractAddress, get_caller_address};
    use super::{
        MAX_PROTOCOLS, ModelParams, ProtocolMetrics, default_model_params, hash_on_elements,
        serialize_inputs, validate_metrics, validate_params,
    };

    #[storage]
    struct Storage {
        owner: ContractAddress,
        pending_owner: ContractAddress,
        oracle: ContractAddress,
        protocol_count: u32,
        metrics: Map<u32, ProtocolMetrics>,
        params: ModelParams,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    pub enum Event {
        MetricsUpdated: MetricsUpdated,
        ModelParamsUpdated: ModelParamsUpdated,
        OracleUpdated: OracleUpdated,
        OwnershipTransferStarted: OwnershipTransferStarted,
        OwnershipTransferred: OwnershipTransferred,
    }

    /// One per protocol of a `set_all_metrics`; `protocol_count` and `commitment` are the
    /// values after the whole snapshot was written.
    #[derive(Drop, starknet::Event)]
    pub struct MetricsUpdated {
        #[key]
        pub index: u32,
        pub metrics: ProtocolMetrics,
        pub protocol_count: u32,
        pub commitment: felt252,
    }

    #[derive(Drop, starknet::Event)]
    pub struct ModelParamsUpdated {
        pub old_params: ModelParams,
        pub new_params: ModelParams,
        pub commitment: felt252,
    }

    #[derive(Drop, starknet::Event)]
    pub struct OracleUpdated {
        pub old_oracle: ContractAddress,
        pub new_oracle: ContractAddress,
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

    /// Emits its initial configuration: OwnershipTransferred{0, owner},
    /// OracleUpdated{0, oracle}, ModelParamsUpdated{zeros, defaults, commitment}.
    #[constructor]
    fn constructor(ref self: ContractState, owner: ContractAddress, oracle: ContractAddress) {
        assert(owner.into() != 0, 'owner is zero');
        let zero: ContractAddress = 0.try_into().unwrap();
        self.owner.write(owner);
        self.oracle.write(oracle);
        let old_params = self.params.read();
        let new_params = default_model_params();
        self.params.write(new_params);
        self.emit(OwnershipTransferred { previous_owner: zero, new_owner: owner });
        self.emit(OracleUpdated { old_oracle: zero, new_oracle: oracle });
        let commitment = self.commitment();
        self.emit(ModelParamsUpdated { old_params, new_params, commitment });
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        fn assert_owner(self: @ContractState) {
            assert(get_caller_address() == self.owner.read(), 'caller is not owner');
        }

        fn assert_oracle(self: @ContractState) {
            assert(get_caller_address() == self.oracle.read(), 'caller is not oracle');
        }

        fn all_metrics(self: @ContractState) -> Array<ProtocolMetrics> {
            let mut out = array![];
            for i in 0..self.protocol_count.read() {
                out.append(self.metrics.entry(i).read());
            }
            out
        }

        fn commitment(self: @ContractState) -> felt252 {
            let metrics = self.all_metrics();
            hash_on_elements(serialize_inputs(metrics.span(), self.params.read()).span())
        }
    }

    #[abi(embed_v0)]
    impl RiskEngineImpl of super::IRiskEngine<ContractState> {
        fn set_all_metrics(ref self: ContractState, metrics: Span<ProtocolMetrics>) {
            self.assert_oracle();
            let n = metrics.len();
            assert(n >= 1, 'no protocols');
            assert(n <= MAX_PROTOCOLS, 'more than 16 protocols');
            for m in metrics {
                validate_metrics(*m);
            }
            for i in 0..n {
                self.metrics.entry(i).write(*metrics.at(i));
            }
            self.protocol_count.write(n);
            let commitment = self.commitment();
            for i in 0..n {
                self
                    .emit(
                        MetricsUpdated {
                            index: i, metrics: *metrics.at(i), protocol_count: n, commitment,
                        },
                    );
            }
        }

        fn set_model_params(ref self: ContractState, params: ModelParams) {
            self.assert_owner();
            validate_params(params);
            let old_params = self.params.read();
            self.params.write(params);
            let commitment = self.commitment();
            self.emit(ModelParamsUpdated { old_params, new_params: params, commitment });
        }

        fn set_oracle(ref self: ContractState, oracle: ContractAddress) {
            self.assert_owner();
            let old_oracle = self.oracle.read();
            self.oracle.write(oracle);
            self.emit(OracleUpdated { old_oracle, new_oracle: oracle });
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
        }

        fn get_protocol_count(self: @ContractState) -> u32 {
            self.protocol_count.read()
        }

        fn get_metrics(self: @ContractState, index: u32) -> ProtocolMetrics {
            assert(index < self.protocol_count.read(), 'index beyond protocol count');
            self.metrics.entry(index).read()
        }

        fn get_model_params(self: @ContractState) -> ModelParams {
            self.params.read()
        }

        fn get_inputs(self: @ContractState) -> (Array<ProtocolMetrics>, ModelParams) {
            (self.all_metrics(), self.params.read())
        }

        fn get_inputs_commitment(self: @ContractState) -> felt252 {
            self.commitment()
        }

        fn get_oracle(self: @ContractState) -> ContractAddress {
            self.oracle.read()
        }

        fn get_owner(self: @ContractState) -> ContractAddress {
            self.owner.read()
        }

        fn get_pending_owner(self: @ContractState) -> ContractAddress {
            self.pending_owner.read()
        }
    }
}
