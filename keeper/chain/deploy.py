"""Declare, deploy and converge RiskEngine and StrategyRouterV2: the one core behind
``obsqra-keeper deploy`` (Sepolia, mainnet, any RPC URL) and ``obsqra-keeper devnet deploy``.

Running it again is always safe, and finishes what an interrupted run left:

- a class is declared only when the chain does not know its hash;
- a contract is deployed only when neither its recorded address nor its deterministic
  address (UDC, fixed salt: known before anything is sent) holds the expected class;
- every role and parameter is written only when the chain value differs. The router
  takes its whole configuration in its constructor; afterwards a value changes only
  through its timelock: proposed, then applied in the same multicall when the delay in
  force is 0 (a devnet), or by a later run once the eta has passed;
- the record (``--out``, JSON) is rewritten atomically after every step; a transaction's
  hash and nonce are written before it is broadcast, so a run killed while one was in
  flight first settles it (receipt, or "never sent" when its nonce is still unused).

A dry run reads the chain and estimates every transaction without sending any; a
transaction that depends on one not sent yet (a deployment of a class the run would
declare first) is listed with that reason instead of a fee. Each step is reported as
``(name, action)``; every transaction as a ``PlannedTx``.

The jobs live in their own modules; this one names them all (callers import from here):

- ``deploy_params``: the deploy TOML, checked all at once;
- ``deploy_artifacts``: the compiled contracts, class hashes, the chain reads a deploy makes;
- ``deploy_record``: the deployment record (``--out``);
- ``deploy_tx``: transactions (estimate, cap, journal before broadcast, wait; dry run);
- ``deploy_run``: one run (declare, deploy, converge, settle what was in flight);
- ``deploy_guard``: our IntegrityGuard, the router's fact registry over Integrity's verifier;
- ``deploy_network``: real networks (keystore signer, chain checks, the mainnet delay floor).

The devnet specifics (predeployed accounts, the trusted DevFactRegistry or Integrity
from its classes) live in ``keeper.devnet.deploy``.
"""

from __future__ import annotations

from keeper.chain.deploy_artifacts import (
    PACKAGE,
    ContractArtifact,
    call_view,
    class_declared,
    class_hash_at,
    compiled_class_hash,
    invoke,
    load_artifacts,
    make_call,
    selector,
    sierra_class_hash,
)
from keeper.chain.deploy_guard import (
    GUARD,
    GuardPendingChange,
    GuardPin,
    ensure_guard,
    guard_constructor_calldata,
    guard_timelock_calls,
    integrity_verifier,
    read_guard_pending,
    read_guard_pin,
    require_guard_verifier,
)
from keeper.chain.deploy_network import (
    NETWORK_ARTIFACTS,
    DeployResult,
    NetworkTarget,
    check_governance_delay,
    check_network_chain,
    choose_fact_registry,
    deploy_network,
)
from keeper.chain.deploy_params import (
    DEFAULT_DIRECT_PIN,
    DEVNET_PROFILE,
    MAINNET,
    MAINNET_MIN_GOVERNANCE_DELAY_S,
    MODEL_PARAM_NAMES,
    NETWORK_PROFILE,
    NETWORKS,
    PIN_KEYS,
    PIN_PATHS,
    PRODUCTION_GOVERNANCE_DELAY_S,
    PROTOCOL_FIELDS,
    REGISTRY_KEY,
    ROUTER_LIMITS,
    DeployParams,
    FeePolicy,
    ParamsProfile,
    load_deploy_params,
    parse_deploy_params,
)
from keeper.chain.deploy_record import (
    Deployment,
    Report,
    Step,
    read_deployment,
    write_deployment,
)
from keeper.chain.deploy_run import (
    NETWORK_CONTRACTS,
    DeployContext,
    RecordFile,
    Roles,
    converge,
    default_program_hashes,
    ensure_contract,
    ensure_declared,
    router_constructor_calldata,
    settle_pending,
    wanted_governance,
)
from keeper.chain.deploy_tx import (
    PlannedTx,
    Sender,
    wait_for_receipt,
)

__all__ = [
    "DEFAULT_DIRECT_PIN",
    "DEVNET_PROFILE",
    "GUARD",
    "MAINNET",
    "MAINNET_MIN_GOVERNANCE_DELAY_S",
    "MODEL_PARAM_NAMES",
    "NETWORKS",
    "NETWORK_ARTIFACTS",
    "NETWORK_CONTRACTS",
    "NETWORK_PROFILE",
    "PACKAGE",
    "PIN_KEYS",
    "PIN_PATHS",
    "PRODUCTION_GOVERNANCE_DELAY_S",
    "PROTOCOL_FIELDS",
    "REGISTRY_KEY",
    "ROUTER_LIMITS",
    "ContractArtifact",
    "DeployContext",
    "DeployParams",
    "DeployResult",
    "Deployment",
    "FeePolicy",
    "GuardPendingChange",
    "GuardPin",
    "NetworkTarget",
    "ParamsProfile",
    "PlannedTx",
    "RecordFile",
    "Report",
    "Roles",
    "Sender",
    "Step",
    "call_view",
    "check_governance_delay",
    "check_network_chain",
    "choose_fact_registry",
    "class_declared",
    "class_hash_at",
    "compiled_class_hash",
    "converge",
    "default_program_hashes",
    "deploy_network",
    "ensure_contract",
    "ensure_declared",
    "ensure_guard",
    "guard_constructor_calldata",
    "guard_timelock_calls",
    "integrity_verifier",
    "invoke",
    "load_artifacts",
    "load_deploy_params",
    "make_call",
    "parse_deploy_params",
    "read_deployment",
    "read_guard_pending",
    "read_guard_pin",
    "require_guard_verifier",
    "router_constructor_calldata",
    "selector",
    "settle_pending",
    "sierra_class_hash",
    "wait_for_receipt",
    "wanted_governance",
    "write_deployment",
]
