//! obsqra contracts: RiskEngine (proof inputs), StrategyRouterV2 (proof-gated allocation),
//! IntegrityGuard (records Stone verifications from Integrity's CairoVerifier's own report,
//! under the pinned configuration) and DevFactRegistry (a TRUSTED devnet stand-in for
//! Herodotus' Integrity FactRegistry).

pub mod dev_fact_registry;
pub mod fact_registry;
pub mod integrity_guard;
pub mod risk_engine;
pub mod strategy_router_v2;
