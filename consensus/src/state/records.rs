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
//! - `Identity{key}` -> [`IdentityRecord`]: enrollment (namespaces, role,
//!   heights) and the count of live instances the identity owns (at most
//!   `max_instances_per_identity`, checked at registration). Fixed size but
//!   for its namespaces (at most `max_namespaces_per_identity`).
//! - `OwnerPage{key, page}` -> sorted `Vec<InstanceRef>`: the identity's
//!   owner index, split into [`OWNER_PAGES`] pages; an instance lives on the
//!   page [`InstanceRef::owner_page`] (a hash of its name); absent when
//!   empty. Registering or removing one instance rewrites the identity's
//!   head and one page (about `owned / OWNER_PAGES` entries), not a list of
//!   everything the identity owns. Revocation reads every page (a constant
//!   number of reads) and removes every instance listed. A page holds at
//!   most `max_instances_per_identity` entries (an owner can choose names
//!   that share a page, costing only its own writes).
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
use palisade_crypto::{
    hash_encoded, Digest, Domain, InstanceId, PublicKey, Role, ServiceName, StateKey,
};
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

    /// The page of its owner's index this instance is listed in: the first
    /// two bytes (little-endian) of `hash(OwnerPage, borsh(self))` modulo
    /// [`OWNER_PAGES`].
    pub fn owner_page(&self) -> u16 {
        let digest = hash_encoded(Domain::OwnerPage, self);
        u16::from_le_bytes([digest.0[0], digest.0[1]]) % OWNER_PAGES
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

/// Pages of each identity's owner index ([`StateKey::OwnerPage`]).
///
/// 64: a registration rewrites one page of about `owned / 64` entries (the
/// bench's 256 instances per identity: 4 entries, ~120 bytes; the default
/// limit of 1,024: 16 entries, ~470 bytes, the size of one instance record)
/// while revocation, which must read every page, makes 64 point reads (a
/// revocation already rewrites up to 1,024 instances' leaves and indexes).
/// Fewer pages make pages grow with the identity; more make each page a
/// single entry (a leaf per instance) and revocation read hundreds of
/// mostly absent keys for little saving: the JMT path written per page
/// change (~1 KB of nodes) dominates a page of a few entries either way.
/// Part of the state layout: changing it moves every instance's page.
pub const OWNER_PAGES: u16 = 64;

/// The key of page `page` of `identity`'s owner index.
pub fn owner_page_key(identity: &PublicKey, page: u16) -> StateKey {
    StateKey::OwnerPage {
        key: *identity,
        page,
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
    /// Live instances it owns (listed in its `OwnerPage` records); the
    /// quota `max_instances_per_identity` bounds it.
    pub owned: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pages_spread_instances() {
        let mut counts = [0u32; OWNER_PAGES as usize];
        for i in 0..6400 {
            let r = InstanceRef {
                namespace: "shop".into(),
                service: format!("s{}", i % 7),
                instance: format!("i{i}"),
            };
            let page = r.owner_page();
            assert!(page < OWNER_PAGES);
            assert_eq!(page, r.clone().owner_page(), "a fixed function");
            counts[page as usize] += 1;
        }
        // 100 expected per page; a hash spreads them (binomial sd ~10).
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
    }
}
