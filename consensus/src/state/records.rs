//! Records the state machine defines on top of crypto's key schema.
//!
//! Map layout (keys are [`StateKey`], values canonical borsh):
//! - `Service{ns, svc}` -> `ServiceIndex`: `(instance id, record hash)` of
//!   every live instance, sorted by id; absent when the service has no
//!   instance. At most `max_instances_per_service` entries of at most
//!   `4 + max_name_len + 32` bytes.
//! - `Instance{ns, svc, id}` -> `InstanceRecord` (endpoints, labels, version,
//!   lease, health, probe); its hash is its index entry's `record_hash`, so
//!   one proof of the index plus the records proves the whole service. A
//!   change of one instance (registration, renewal, health flip) rewrites
//!   that leaf and one 32-byte hash in the index, never the other records.
//!   At most [`super::Params::max_instance_record_bytes`] bytes.
//! - `Namespace{ns}` -> `NamespaceRecord` (services with instances, sorted);
//!   absent when empty; at most `max_services_per_namespace` names.
//! - `Identity{key}` -> [`IdentityRecord`]; its owner index lists at most
//!   `max_instances_per_identity` instances.
//! - `Account{key}` -> `u64`, the sequence number the signer must use next.
//!
//! Every record's largest encoding follows from the genesis limits
//! ([`super::Params::record_bounds`]); genesis refuses limits that would let
//! any record, or a whole service's lookup answer, exceed
//! `MAX_DECODE_BYTES`, so no write can create a record that a later block
//! cannot read. Growth is refused at write time with a typed rejection
//! (`ServiceFull`, `IdentityFull`, `NamespaceFull`, `RegistryFull`,
//! `RecordTooLarge`), never by failing a block.
//!
//! Planned extensions keep this shape: expiry by validator reports (issue 16)
//! touches only `Instance` leaves and index entries; a per-height change
//! index and pruning live outside the map (node storage).
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
    /// `LeaseMode`, present only when not `BlockTime`.
    pub(crate) const LEASE_MODE: &str = "lease_mode";
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
    /// The key of the service's index leaf.
    pub fn service_key(&self) -> StateKey {
        StateKey::Service {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
        }
    }

    /// The key of this instance's leaf.
    pub fn instance_key(&self) -> StateKey {
        StateKey::Instance {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
            instance: self.instance.clone(),
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

/// The fields of an [`IdentityRecord`] before its owner index, in order (a
/// prefix of the record's encoding).
#[derive(BorshDeserialize)]
struct IdentityHead {
    namespaces: Vec<ServiceName>,
    role: Role,
    enrolled_at: u64,
    revoked_at: Option<u64>,
}

impl IdentityRecord {
    /// Decode the record in `bytes` but for its owner index, which is left
    /// empty: for the authorization rule, which reads only the namespaces and
    /// the revocation (an owner index can hold thousands of instances).
    pub(crate) fn decode_without_instances(bytes: &[u8]) -> std::io::Result<Self> {
        let head = IdentityHead::deserialize(&mut &bytes[..])?;
        Ok(IdentityRecord {
            namespaces: head.namespaces,
            role: head.role,
            enrolled_at: head.enrolled_at,
            revoked_at: head.revoked_at,
            instances: Vec::new(),
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crypto::encode;

    #[test]
    fn an_identity_decodes_without_its_owner_index() {
        let instance = |i: u32| InstanceRef {
            namespace: "shop".into(),
            service: "web".into(),
            instance: format!("i{i}"),
        };
        for (revoked_at, instances) in [(None, vec![]), (Some(9), (0..50).map(instance).collect())]
        {
            let record = IdentityRecord {
                namespaces: vec!["billing".into(), "shop".into()],
                role: Role::Admin,
                enrolled_at: 7,
                revoked_at,
                instances,
            };
            let head = IdentityRecord::decode_without_instances(&encode(&record)).unwrap();
            assert_eq!(
                head,
                IdentityRecord {
                    instances: Vec::new(),
                    ..record.clone()
                }
            );
            assert_eq!(head.may_write("shop"), record.may_write("shop"));
        }
        assert!(IdentityRecord::decode_without_instances(&[1, 0]).is_err());
    }
}
