//! RiskEngine — the on-chain inputs of the allocation program (docs/allocation-program.md
//! §1) and their commitment (§2).
//!
//! An `oracle` publishes the metrics of all protocols at once (`set_all_metrics`: every
//! write is a complete snapshot, so no half-applied update can ever be committed to, proven
//! and executed); governance (the owner) sets the 12 model parameters and the oracle, and
//! only through the router's timelock pattern: `propose_change` -> wait
//! `governance_delay_s` -> `apply_change` (within GOVERNANCE_GRACE_S of the eta), with the
//! same events. Raising the delay and accepting ownership cancel every pending change.
//! `get_inputs()` serializes to exactly the §2 element list `[n, 6 fields per protocol…,
//! 12 params]`, and `get_inputs_commitment()` is the `compute_hash_on_elements` Pedersen
//! chain over that list. Ownership moves in two steps (transfer_ownership, then
//! accept_ownership).

use starknet::ContractAddress;
use crate::strategy_router_v2::{ERR_DELAY, MAX_GOVERNANCE_DELAY_S, PendingChange, felt_to_u64};

pub const MAX_PROTOCOLS: u32 = 16;
pub const MAX_BPS: u32 = 10000;
pub const MAX_LIQUIDITY_TIER: u32 = 3;
pub const MAX_AUDIT_SCORE: u32 = 100;
pub const MAX_AGE_DAYS: u32 = 100000;
pub const MAX_APY_BPS: u32 = 100000;
pub const MAX_PARAM: u32 = 100000;
pub const MODEL_PARAMS_LEN: u32 = 12;

/// Every proposal param of RiskEngine (subject always 0).
pub fn risk_engine_params() -> Span<felt252> {
    array!['model_params', 'oracle', 'governance_delay_s'].span()
}

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
    /// Owner only. Proposes `param` := `values`: 'model_params' (the 12 of doc §1, in
    /// order), 'oracle' (an address) or 'governance_delay_s' (0..30 days); `subject` is 0.
    /// Returns the eta (now + governance_delay_s). One pending change per param.
    fn propose_change(
        ref self: TContractState, param: felt252, subject: felt252, values: Span<felt252>,
    ) -> u64;
    /// Owner only. Drops the pending change of `param`.
    fn cancel_change(ref self: TContractState, param: felt252, subject: felt252);
    /// Owner only, from the eta until eta + GOVERNANCE_GRACE_S. Applying a raised
    /// `governance_delay_s` cancels every other pending change.
    fn apply_change(ref self: TContractState, param: felt252, subject: felt252);
    /// Owner only. Step 1 of 2: `new_owner` becomes the pending owner (0 cancels).
    fn transfer_ownership(ref self: TContractState, new_owner: ContractAddress);
    /// Pending owner only. Step 2 of 2: the caller becomes the owner; every pending
    /// change is cancelled.
    fn accept_ownership(ref self: TContractState);

    fn get_protocol_count(self: @TContractState) -> u32;
    fn get_metrics(self: @TContractState, index: u32) -> ProtocolMetrics;
    fn get_model_params(self: @TContractState) -> ModelParams;
    /// All inputs in one call; serializes to the §2 element list.
    fn get_inputs(self: @TContractState) -> (Array<ProtocolMetrics>, ModelParams);
    /// Pedersen `compute_hash_on_elements` over the §2 element list.
    fn get_inputs_commitment(self: @TContractState) -> felt252;
    fn get_oracle(self: @TContractState) -> ContractAddress;
    fn get_governance_delay_s(self: @TContractState) -> u64;
    fn get_pending_change(
        self: @TContractState, param: felt252, subject: felt252,
    ) -> Option<PendingChange>;
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

/// The number of values `param` takes; panics on an unknown name.
pub fn risk_param_arity(param: felt252) -> u32 {
    if param == 'model_params' {
        MODEL_PARAMS_LEN
    } else if param == 'oracle' || param == 'governance_delay_s' {
        1
    } else {
        core::panic_with_felt252('unknown governance param')
    }
}

/// The 12 values of a 'model_params' change as ModelParams (each must fit u32).
pub fn model_params_from(values: Span<felt252>) -> ModelParams {
    let mut rest = values;
    match Serde::<ModelParams>::deserialize(ref rest) {
        Option::Some(p) => p,
        Option::None => core::panic_with_felt252('model param > 100000'),
    }
}

/// Checks a change's shape and range; panics with the reason.
pub fn validate_risk_change(param: felt252, subject: felt252, values: Span<felt252>) {
    assert(values.len() == risk_param_arity(param), 'wrong number of values');
    assert(subject == 0, 'subject must be 0');
    if param == 'model_params' {
        validate_params(model_params_from(values));
    } else if param == 'oracle' {
        let oracle: Option<ContractAddress> = (*values.at(0)).try_into();
        assert(oracle.is_some(), 'oracle not an address');
    } else {
        assert(felt_to_u64(*values.at(0), ERR_DELAY) <= MAX_GOVERNANCE_DELAY_S, ERR_DELAY);
    }
}

#[starknet::contract]
pub mod RiskEngine {
    use starknet::storage::{
        Map, StoragePathEntry, StoragePointerReadAccess, StoragePointerWriteAccess,
    };
    use starknet::{ContractAddress, get_block_timestamp, get_caller_address};
    use crate::strategy_router_v2::{ERR_DELAY, GOVERNANCE_GRACE_S, PendingChange, felt_to_u64};
    use super::{
        MAX_PROTOCOLS, ModelParams, ProtocolMetrics, default_model_params, hash_on_elements,
        model_params_from, risk_engine_params, serialize_inputs, validate_metrics,
        validate_risk_change,
    };

    /// A pending change of one param; its values are in `pending_values`.
    #[derive(Drop, Copy, Serde, starknet::Store)]
    struct StoredPending {
        is_pending: bool,
        eta: u64,
        len: u32,
    }

    #[storage]
    struct Storage {
        owner: ContractAddress,
        pending_owner: ContractAddress,
        oracle: ContractAddress,
        protocol_count: u32,
        metrics: Map<u32, ProtocolMetrics>,
        params: ModelParams,
        governance_delay_s: u64,
        pending: Map<felt252, StoredPending>,
        pending_values: Map<(felt252, u32), felt252>,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    pub enum Event {
        MetricsUpdated: MetricsUpdated,
        ModelParamsUpdated: ModelParamsUpdated,
        OracleUpdated: OracleUpdated,
        GovernanceChangeProposed: GovernanceChangeProposed,
        GovernanceChangeCancelled: GovernanceChangeCancelled,
        GovernanceChangeApplied: GovernanceChangeApplied,
        GovernanceParamsUpdated: GovernanceParamsUpdated,
        OwnershipTransferStarted: OwnershipTransferStarted,
        OwnershipTransferred: OwnershipTransferred,
    }

    /// The router's governance events, same names and layout.
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

    /// Followed in the same transaction by ModelParamsUpdated, OracleUpdated or
    /// GovernanceParamsUpdated('governance_delay_s').
    #[derive(Drop, starknet::Event)]
    pub struct GovernanceChangeApplied {
        #[key]
        pub param: felt252,
        #[key]
        pub subject: felt252,
        pub values: Span<felt252>,
        pub eta: u64,
    }

    /// Only 'governance_delay_s' here.
    #[derive(Drop, starknet::Event)]
    pub struct GovernanceParamsUpdated {
        #[key]
        pub param: felt252,
        pub old_value: felt252,
        pub new_value: felt252,
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
    /// OracleUpdated{0, oracle}, ModelParamsUpdated{zeros, defaults, commitment},
    /// GovernanceParamsUpdated{'governance_delay_s', 0, delay}.
    #[constructor]
    fn constructor(
        ref self: ContractState,
        owner: ContractAddress,
        oracle: ContractAddress,
        governance_delay_s: u64,
    ) {
        assert(owner.into() != 0, 'owner is zero');
        validate_risk_change('governance_delay_s', 0, [governance_delay_s.into()].span());
        let zero: ContractAddress = 0.try_into().unwrap();
        self.owner.write(owner);
        self.oracle.write(oracle);
        let old_params = self.params.read();
        let new_params = default_model_params();
        self.params.write(new_params);
        self.governance_delay_s.write(governance_delay_s);
        self.emit(OwnershipTransferred { previous_owner: zero, new_owner: owner });
        self.emit(OracleUpdated { old_oracle: zero, new_oracle: oracle });
        let commitment = self.commitment();
        self.emit(ModelParamsUpdated { old_params, new_params, commitment });
        self
            .emit(
                GovernanceParamsUpdated {
                    param: 'governance_delay_s',
                    old_value: 0,
                    new_value: governance_delay_s.into(),
                },
            );
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

        fn read_pending(self: @ContractState, param: felt252) -> Array<felt252> {
            let stored = self.pending.entry(param).read();
            let mut values = array![];
            for i in 0..stored.len {
                values.append(self.pending_values.entry((param, i)).read());
            }
            values
        }

        /// Removes the pending change of `param`: its values and eta.
        fn take_pending(
            ref self: ContractState, param: felt252, subject: felt252,
        ) -> (Array<felt252>, u64) {
            let stored = self.pending.entry(param).read();
            assert(subject == 0 && stored.is_pending, 'no pending change');
            let values = self.read_pending(param);
            for i in 0..stored.len {
                self.pending_values.entry((param, i)).write(0);
            }
            self.pending.entry(param).write(StoredPending { is_pending: false, eta: 0, len: 0 });
            (values, stored.eta)
        }

        fn cancel_all_pending(ref self: ContractState) {
            for param in risk_engine_params() {
                let param = *param;
                if self.pending.entry(param).read().is_pending {
                    let (values, eta) = self.take_pending(param, 0);
                    self
                        .emit(
                            GovernanceChangeCancelled {
                                param, subject: 0, values: values.span(), eta,
                            },
                        );
                }
            }
        }

        /// Writes a validated change and emits its update event.
        fn write_change(ref self: ContractState, param: felt252, values: Span<felt252>) {
            if param == 'model_params' {
                let params = model_params_from(values);
                let old_params = self.params.read();
                self.params.write(params);
                let commitment = self.commitment();
                self.emit(ModelParamsUpdated { old_params, new_params: params, commitment });
            } else if param == 'oracle' {
                let oracle: ContractAddress = (*values.at(0)).try_into().unwrap();
                let old_oracle = self.oracle.read();
                self.oracle.write(oracle);
                self.emit(OracleUpdated { old_oracle, new_oracle: oracle });
            } else {
                let old = self.governance_delay_s.read();
                let new = felt_to_u64(*values.at(0), ERR_DELAY);
                self.governance_delay_s.write(new);
                self
                    .emit(
                        GovernanceParamsUpdated {
                            param, old_value: old.into(), new_value: new.into(),
                        },
                    );
            }
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

        fn propose_change(
            ref self: ContractState, param: felt252, subject: felt252, values: Span<felt252>,
        ) -> u64 {
            self.assert_owner();
            validate_risk_change(param, subject, values);
            let entry = self.pending.entry(param);
            assert(!entry.read().is_pending, 'change already pending');
            let eta = get_block_timestamp() + self.governance_delay_s.read();
            for i in 0..values.len() {
                self.pending_values.entry((param, i)).write(*values.at(i));
            }
            entry.write(StoredPending { is_pending: true, eta, len: values.len() });
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
            let raises_delay = param == 'governance_delay_s'
                && felt_to_u64(*values.at(0), ERR_DELAY) > self.governance_delay_s.read();
            self.emit(GovernanceChangeApplied { param, subject, values: values.span(), eta });
            self.write_change(param, values.span());
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

        fn get_governance_delay_s(self: @ContractState) -> u64 {
            self.governance_delay_s.read()
        }

        fn get_pending_change(
            self: @ContractState, param: felt252, subject: felt252,
        ) -> Option<PendingChange> {
            let stored = self.pending.entry(param).read();
            if subject != 0 || !stored.is_pending {
                return Option::None;
            }
            Option::Some(PendingChange { values: self.read_pending(param), eta: stored.eta })
        }

        fn get_owner(self: @ContractState) -> ContractAddress {
            self.owner.read()
        }

        fn get_pending_owner(self: @ContractState) -> ContractAddress {
            self.pending_owner.read()
        }
    }
}
