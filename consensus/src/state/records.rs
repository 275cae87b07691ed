//! Records the state machine defines on top of crypto's key schema.
//!
//! Map layout (keys are [`StateKey`], values canonical borsh):
//! - `Service{ns, svc}` -> `ServiceRecord` (all live instances, sorted by id);
//!   absent when the service has no instance.
//! - `Namespace{ns}` -> `NamespaceRecord` (services with instances, sorted);
//!   absent when empty.
//! - `Identity{key}` -> [`IdentityRecord`].
//! - `Account{key}` -> `u64`, the lowest sequence number the signer may use next.
//! - `System{"chain"}` -> [`ChainRecord`]; `System{"params"}` -> `Params`;
//!   `System{"authority"}` -> `Authority`; `System{"validators"}` -> the
//!   `ValidatorSet` signing the next block; `System{"expiry"}` ->
//!   [`ExpiryState`]; `System{"namespaces"}` -> sorted `Vec<String>` of
//!   non-empty namespaces (the directory the lease index is rebuilt from).

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{Digest, InstanceId, Role, ServiceName, StateKey};
use serde::{Deserialize, Serialize};

/// `System` record names.
pub(crate) mod system {
    pub(crate) const CHAIN: &str = "chain";
    pub(crate) const PARAMS: &str = "params";
    pub(crate) const AUTHORITY: &str = "authority";
    pub(crate) const VALIDATORS: &str = "validators";
    pub(crate) const EXPIRY: &str = "expiry";
    pub(crate) const NAMESPACES: &str = "namespaces";
}

/// The `System` key named `name`.
pub fn system_key(name: &str) -> StateKey {
    StateKey::System {
        name: name.to_string(),
    }
}

/// Which chain this state belongs to.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ChainRecord {
    /// Chain id.
    pub chain_id: String,
    /// Hash of the genesis document.
    pub genesis_hash: Digest,
}

/// One instance, named.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct InstanceRef {
    /// Namespace.
    pub namespace: ServiceName,
    /// Service.
    pub service: ServiceName,
    /// Instance.
    pub instance: InstanceId,
}

impl InstanceRef {
    /// The key of the service leaf holding this instance.
    pub fn service_key(&self) -> StateKey {
        StateKey::Service {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
        }
    }
}

/// The value of `StateKey::Identity`: an enrolled (or revoked) identity.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// Namespaces it may write, sorted and distinct.
    pub namespaces: Vec<ServiceName>,
    /// Its role there.
    pub role: Role,
    /// Height of the (latest) enrollment.
    pub enrolled_at: u64,
    /// Height of the revocation, if revoked. A revoked identity keeps its
    /// record so clients can prove the revocation.
    pub revoked_at: Option<u64>,
    /// Live instances it owns, sorted (the owner index revocation uses).
    pub instances: Vec<InstanceRef>,
}

impl IdentityRecord {
    /// Whether the identity may write in `namespace` now.
    pub fn may_write(&self, namespace: &str) -> bool {
        self.revoked_at.is_none() && self.namespaces.iter().any(|n| n == namespace)
    }
}

/// The value of `System{"expiry"}`: the mass-expiry budget's bookkeeping.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ExpiryState {
    /// Live instances (every instance in a `ServiceRecord`).
    pub live: u64,
    /// Block time at which the current window opened.
    pub window_start_ms: u64,
    /// Expiries the current window allows (fixed when it opens).
    pub window_budget: u64,
    /// Expiries executed in the current window.
    pub expired_in_window: u64,
}
