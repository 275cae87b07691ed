//! The registry's records and the key schema of the authenticated map.
//!
//! A service is a bounded index leaf ([`StateKey::Service`] ->
//! [`ServiceIndex`]: every live instance's id and record hash, sorted by id)
//! plus one leaf per instance ([`StateKey::Instance`] -> [`InstanceRecord`]).
//! One proof of the index and the instance records, each checked against the
//! hash the index lists ([`instance_record_hash`]), show a client every
//! instance: none hidden, none added, none altered ([`crate::ServiceProof`]).
//! No stored record grows with the whole service: the index entry is at most
//! `4 + name + 32` bytes per instance. A namespace's service list is one leaf
//! ([`StateKey::Namespace`]). A namespace's changes form a hash chain whose
//! newest link is one fixed-size leaf ([`StateKey::NamespaceLog`] ->
//! [`NamespaceLink`]), so a watcher can prove it was sent every change.
//! Variants of [`StateKey`] are append-only: the
//! borsh tag of a variant is its position and is part of every key hash.

use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{hash, hash_encoded, Digest, Domain, PublicKey};

/// A namespace or service name (bounded by genesis parameters).
pub type ServiceName = String;
/// An instance id, unique within its service.
pub type InstanceId = String;

/// A key of the authenticated map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub enum StateKey {
    /// The instance index of one service -> [`ServiceIndex`].
    Service {
        /// Namespace.
        namespace: ServiceName,
        /// Service.
        service: ServiceName,
    },
    /// The services of a namespace -> [`NamespaceRecord`].
    Namespace {
        /// Namespace.
        namespace: ServiceName,
    },
    /// An enrolled identity -> its enrollment record (defined by the state machine).
    Identity {
        /// The identity's key.
        key: PublicKey,
    },
    /// A signer's next sequence number -> u64.
    Account {
        /// The signer.
        key: PublicKey,
    },
    /// Chain-wide state (validator set, parameters, lease index) -> state machine record.
    System {
        /// Which system record.
        name: String,
    },
    /// One instance of a service -> [`InstanceRecord`]; listed, with its
    /// record's hash, in the service's [`ServiceIndex`].
    Instance {
        /// Namespace.
        namespace: ServiceName,
        /// Service.
        service: ServiceName,
        /// Instance.
        instance: InstanceId,
    },
    /// The newest link of a namespace's change chain -> [`NamespaceLink`].
    NamespaceLog {
        /// Namespace.
        namespace: ServiceName,
    },
    /// One page of an identity's owner index -> the instances it owns whose
    /// page is `page` (defined by the state machine); absent when empty.
    OwnerPage {
        /// The owning identity's key.
        key: PublicKey,
        /// Which page (a fixed function of the instance's name).
        page: u16,
    },
}

/// The role an identity holds in its namespaces.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Registers, renews and removes its own instances.
    Service,
    /// May also deregister any instance in its namespaces.
    Admin,
}

/// One network endpoint of an instance.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Endpoint {
    /// "http", "https", "grpc", "tcp", ...
    pub protocol: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Relative weight for load balancing.
    pub weight: u16,
}

/// A `key=value` label.
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
pub struct Label {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// Labels in JSON as a person reads them: one object, `{"zone": "a"}`, in
/// the list's order (which is key order for anything stored). The canonical
/// (hashed, signed) form stays borsh's list; JSON is a view. Reading also
/// takes the older list of `{"key", "value"}` objects, so a client talks to
/// a node of the previous release. An object with a repeated key keeps every
/// entry as written (the state machine refuses repeated keys; a view must not
/// hide them).
pub(crate) mod labels_json {
    use super::Label;
    use serde::de::{MapAccess, SeqAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};
    use std::fmt;

    /// Write labels as one JSON object, in order.
    pub(crate) fn serialize<S: Serializer>(labels: &[Label], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(labels.len()))?;
        for l in labels {
            map.serialize_entry(&l.key, &l.value)?;
        }
        map.end()
    }

    /// Read an object (or the older list of objects), in document order.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Label>, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Vec<Label>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of label keys to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Vec<Label>, A::Error> {
                // Bound the preallocation by the hint only up to a small
                // number: the real bound is the state machine's label cap.
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(0).min(64));
                while let Some((key, value)) = m.next_entry::<String, String>()? {
                    out.push(Label { key, value });
                }
                Ok(out)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut q: A) -> Result<Vec<Label>, A::Error> {
                let mut out = Vec::with_capacity(q.size_hint().unwrap_or(0).min(64));
                while let Some(l) = q.next_element::<Label>()? {
                    out.push(l);
                }
                Ok(out)
            }
        }
        d.deserialize_any(LabelsVisitor)
    }
}

/// How validators actively probe an instance.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ProbeKind {
    /// HTTP GET of `path` on the first endpoint; 2xx passes.
    Http {
        /// Path, starting with '/'.
        path: String,
    },
    /// TCP connect to the first endpoint.
    Tcp,
}

/// An active health probe request.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct ProbeSpec {
    /// What to probe.
    pub kind: ProbeKind,
    /// Seconds between probes.
    pub interval_secs: u32,
}

/// Health of an instance as the registry sees it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Passing (or never reported failing by a quorum of reporters).
    Passing,
    /// At least f+1 distinct validators reported it failing.
    Failing,
}

/// The body of a Register transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Registration {
    /// Namespace the signer is enrolled in.
    pub namespace: ServiceName,
    /// Service.
    pub service: ServiceName,
    /// Instance id.
    pub instance: InstanceId,
    /// Endpoints (at least one).
    pub endpoints: Vec<Endpoint>,
    /// Labels (keys unique; stored sorted). JSON: an object `{"key": "value"}`.
    #[serde(with = "labels_json")]
    pub labels: Vec<Label>,
    /// Version string of the instance.
    pub version: String,
    /// Lease time-to-live in seconds.
    pub ttl_secs: u32,
    /// Optional active probe.
    pub probe: Option<ProbeSpec>,
}

/// The body of an Enroll transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Enrollment {
    /// The identity enrolled.
    pub identity: PublicKey,
    /// Namespaces it may write.
    pub namespaces: Vec<ServiceName>,
    /// Its role there.
    pub role: Role,
}

/// One registered instance, as stored and proven.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Instance id.
    pub instance: InstanceId,
    /// The identity that registered it (the only one that may change it, besides admins).
    pub owner: PublicKey,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Labels, sorted by key. JSON: an object `{"key": "value"}`.
    #[serde(with = "labels_json")]
    pub labels: Vec<Label>,
    /// Version.
    pub version: String,
    /// Lease TTL in seconds.
    pub ttl_secs: u32,
    /// Block time (ms) of the registration.
    pub registered_at_ms: u64,
    /// Block time (ms) after which the lease has expired.
    pub lease_expires_at_ms: u64,
    /// Health as decided by validator reports.
    pub health: Health,
    /// Validators whose latest report disagrees with `health` (turns it at f+1).
    pub dissenting_reporters: Vec<PublicKey>,
    /// Active probe, if asked for.
    pub probe: Option<ProbeSpec>,
}

/// One entry of a [`ServiceIndex`].
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct InstanceEntry {
    /// Instance id.
    pub instance: InstanceId,
    /// [`instance_record_hash`] of the instance's leaf.
    pub record_hash: Digest,
}

/// The value of [`StateKey::Service`]: every live instance's id and record
/// hash, sorted by id (absent when the service has no instance).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ServiceIndex {
    /// Namespace.
    pub namespace: ServiceName,
    /// Service.
    pub service: ServiceName,
    /// Entries sorted by `instance`, ids distinct.
    pub instances: Vec<InstanceEntry>,
}

/// The hash a [`ServiceIndex`] lists for an instance: BLAKE3 in
/// [`Domain::InstanceRecord`] of the record's canonical encoding.
pub fn instance_record_hash(encoded: &[u8]) -> Digest {
    hash(Domain::InstanceRecord, encoded)
}

/// A whole service as a client sees it once verified: the index's instances,
/// records in index order. Assembled from a [`StateKey::Service`] index and
/// its [`StateKey::Instance`] leaves; never stored as one leaf.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Namespace.
    pub namespace: ServiceName,
    /// Service.
    pub service: ServiceName,
    /// Instances sorted by `instance`.
    pub instances: Vec<InstanceRecord>,
}

/// The value of [`StateKey::Namespace`]: the services that have instances, sorted.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct NamespaceRecord {
    /// Namespace.
    pub namespace: ServiceName,
    /// Services, sorted.
    pub services: Vec<ServiceName>,
}

/// One link of a namespace's change chain: the services of `namespace`
/// whose records changed at `height` (by their [`Self::services_hash`]), and
/// the digest and height of the previous link (`Digest::ZERO` and 0 for the
/// first). The newest link is the value of [`StateKey::NamespaceLog`]; it is
/// rewritten once per block that changes the namespace, whatever the number
/// of changes, and never grows (issue-13 review: a namespace watch's
/// `synced` proves the chain's head, and the links below it, which nodes
/// serve from their history, name every service changed since the watcher's
/// resume point; collision resistance makes the chain unforgeable).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct NamespaceLink {
    /// Namespace.
    pub namespace: ServiceName,
    /// Height of the block whose changes this link lists.
    pub height: u64,
    /// [`Self::services_hash`] of the services changed at `height`, sorted.
    pub services_hash: Digest,
    /// How many services changed at `height`.
    pub count: u32,
    /// [`Self::digest`] of the previous link; zero for the first.
    pub prev: Digest,
    /// Height of the previous link; 0 for the first.
    pub prev_height: u64,
}

impl NamespaceLink {
    /// The link's digest (what the next link names as `prev`).
    pub fn digest(&self) -> Digest {
        hash_encoded(Domain::NamespaceLink, self)
    }

    /// The digest of a sorted list of service names.
    pub fn services_hash(services: &[ServiceName]) -> Digest {
        hash_encoded(Domain::NamespaceChanges, services)
    }

    /// The link after `prev` (if any) for `services` changed at `height`.
    pub fn next(
        prev: Option<&NamespaceLink>,
        namespace: &str,
        height: u64,
        services: &[ServiceName],
    ) -> NamespaceLink {
        NamespaceLink {
            namespace: namespace.to_string(),
            height,
            services_hash: Self::services_hash(services),
            count: services.len() as u32,
            prev: prev.map_or(Digest::ZERO, NamespaceLink::digest),
            prev_height: prev.map_or(0, |p| p.height),
        }
    }
}

/// The services whose records a set of changed keys touches, per
/// namespace, sorted and distinct: a [`StateKey::Service`] or
/// [`StateKey::Instance`] key changes its service. What the state machine
/// chains into [`NamespaceLink`]s and nodes index per height.
pub fn changed_services<'a>(
    keys: impl IntoIterator<Item = &'a StateKey>,
) -> BTreeMap<ServiceName, Vec<ServiceName>> {
    let mut out: BTreeMap<ServiceName, Vec<ServiceName>> = BTreeMap::new();
    for key in keys {
        if let StateKey::Service { namespace, service }
        | StateKey::Instance {
            namespace, service, ..
        } = key
        {
            out.entry(namespace.clone())
                .or_default()
                .push(service.clone());
        }
    }
    for services in out.values_mut() {
        services.sort();
        services.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(labels: &[(&str, &str)]) -> InstanceRecord {
        InstanceRecord {
            instance: "api-1".into(),
            owner: PublicKey([7; 32]),
            endpoints: vec![],
            labels: labels
                .iter()
                .map(|(k, v)| Label {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
            version: "1".into(),
            ttl_secs: 30,
            registered_at_ms: 1,
            lease_expires_at_ms: 2,
            health: Health::Passing,
            dissenting_reporters: vec![],
            probe: None,
        }
    }

    #[test]
    fn labels_read_as_a_json_object_in_order() {
        let r = record(&[("tier", "web"), ("zone", "a")]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json["labels"],
            serde_json::json!({"tier": "web", "zone": "a"})
        );
        assert_eq!(
            serde_json::to_string(&json["labels"]).unwrap(),
            r#"{"tier":"web","zone":"a"}"#
        );
        let back: InstanceRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn labels_in_the_older_list_form_still_read() {
        let r = record(&[("zone", "a")]);
        let mut json = serde_json::to_value(&r).unwrap();
        json["labels"] = serde_json::json!([{"key": "zone", "value": "a"}]);
        let back: InstanceRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_repeated_label_key_is_kept_not_hidden() {
        // serde_json::Value would fold the keys: parse from text.
        let r = record(&[]);
        let text = serde_json::to_string(&r)
            .unwrap()
            .replace(r#""labels":{}"#, r#""labels":{"zone":"a","zone":"b"}"#);
        let back: InstanceRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back.labels.len(), 2);
        assert_eq!(back.labels[1].value, "b");
    }

    #[test]
    fn labels_that_are_neither_object_nor_list_are_refused() {
        let r = record(&[]);
        let mut json = serde_json::to_value(&r).unwrap();
        json["labels"] = serde_json::json!("zone=a");
        assert!(serde_json::from_value::<InstanceRecord>(json).is_err());
    }
}
