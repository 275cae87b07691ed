//! Queries over a committed version, each answer provable against that
//! version's state root.
//!
//! - a service's instances: [`StateReader::service`] returns crypto's
//!   [`ServiceProof`]: the proven index leaf (every instance's id and record
//!   hash) and the instance records it lists, so nothing can be hidden, added
//!   or altered; or the index's proven absence;
//! - a namespace's services: [`StateReader::namespace`];
//! - any key: [`StateReader::prove`].
//!
//! Label and health filters are applied over the proven set by whoever
//! verified it ([`InstanceFilter`]), never by trusting a node's filtering.

use borsh::BorshDeserialize;
use jmt::JellyfishMerkleTree;
use palisade_crypto::{
    decode, state_key_hash, Digest, Health, InstanceRecord, JmtHasher, Label, MapProof,
    NamespaceRecord, PublicKey, ServiceIndex, ServiceLookup, ServiceProof, ServiceRecord, StateKey,
    ValidatorSet,
};

use super::error::StateError;
use super::lease::LeaseIndex;
use super::records::{
    owner_page_key, system, system_key, ChainRecord, IdentityRecord, InstanceRef,
};
use super::store::{BranchReader, StateStore};

/// A namespace's service list with its proof.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceLookup {
    /// Namespace asked for.
    pub namespace: String,
    /// Canonical encoding of the [`NamespaceRecord`]; `None` when absent.
    pub value: Option<Vec<u8>>,
    /// Proof for `StateKey::Namespace`.
    pub proof: MapProof,
}

impl NamespaceLookup {
    /// Verify against `root` and decode.
    pub fn verify(
        &self,
        root: &Digest,
    ) -> Result<Option<NamespaceRecord>, palisade_crypto::ProofError> {
        let key = StateKey::Namespace {
            namespace: self.namespace.clone(),
        };
        self.proof.verify(root, &key, self.value.as_deref())?;
        let Some(bytes) = &self.value else {
            return Ok(None);
        };
        let record: NamespaceRecord = decode(bytes)?;
        if record.namespace != self.namespace {
            return Err(palisade_crypto::ProofError::WrongRecord(format!(
                "record names namespace {}",
                record.namespace
            )));
        }
        Ok(Some(record))
    }
}

/// Reads one committed version of the map.
pub struct StateReader<'a> {
    store: &'a dyn StateStore,
    version: u64,
}

impl<'a> StateReader<'a> {
    /// A reader of `version` (which must be committed in `store`).
    pub fn at(store: &'a dyn StateStore, version: u64) -> Self {
        StateReader { store, version }
    }

    /// A reader of the store's last committed version.
    pub fn latest(store: &'a dyn StateStore) -> Result<Self, StateError> {
        let meta = store.last_commit()?.ok_or(StateError::UnknownVersion(0))?;
        Ok(Self::at(store, meta.height))
    }

    /// The version read.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn branch(&self) -> BranchReader<'a> {
        BranchReader::committed(self.store, self.version)
    }

    /// The state root of this version.
    pub fn root(&self) -> Result<Digest, StateError> {
        let reader = self.branch();
        let tree = JellyfishMerkleTree::<_, JmtHasher>::new(&reader);
        match tree.get_root_hash_option(self.version) {
            Ok(Some(root)) => Ok(Digest(root.0)),
            Ok(None) => Err(StateError::UnknownVersion(self.version)),
            Err(e) => Err(StateError::Tree(format!("{e:#}"))),
        }
    }

    /// The value of `key` (canonical bytes, `None` if absent) and its proof.
    pub fn prove(&self, key: &StateKey) -> Result<(Option<Vec<u8>>, MapProof), StateError> {
        let reader = self.branch();
        let tree = JellyfishMerkleTree::<_, JmtHasher>::new(&reader);
        let (value, proof) = tree
            .get_with_proof(state_key_hash(key), self.version)
            .map_err(|e| StateError::Tree(format!("{e:#}")))?;
        Ok((value, MapProof(proof)))
    }

    /// The decoded value of `key`, without proof.
    pub fn get<T: BorshDeserialize>(&self, key: &StateKey) -> Result<Option<T>, StateError> {
        match self.store.value(self.version, state_key_hash(key))? {
            None => Ok(None),
            Some(bytes) => decode(&bytes).map(Some).map_err(|e| StateError::Corrupt {
                key: format!("{key:?}"),
                reason: e.to_string(),
            }),
        }
    }

    /// A service's index (or its absence) with proof, and the instance
    /// records the index lists, in its order.
    pub fn service(&self, namespace: &str, service: &str) -> Result<ServiceProof, StateError> {
        self.service_reusing(namespace, service, None)
    }

    /// [`StateReader::service`], taking the instance records from `known`
    /// (an index's canonical bytes and the records it lists, in its order)
    /// when this version's index has exactly those bytes: an index lists the
    /// hash of every record ([`palisade_crypto::ServiceIndex`]), so equal
    /// index bytes name the same records at any version. This spares a
    /// lookup its one store read per instance while the service is unchanged.
    pub fn service_reusing(
        &self,
        namespace: &str,
        service: &str,
        known: Option<(&[u8], &[Vec<u8>])>,
    ) -> Result<ServiceProof, StateError> {
        let key = StateKey::Service {
            namespace: namespace.to_string(),
            service: service.to_string(),
        };
        let (value, proof) = self.prove(&key)?;
        let mut instances = Vec::new();
        let reuse = match (&value, known) {
            (Some(bytes), Some((index, records))) if bytes[..] == index[..] => Some(records),
            _ => None,
        };
        if let Some(records) = reuse {
            instances = records.to_vec();
        } else if let Some(bytes) = &value {
            let index: ServiceIndex = decode(bytes).map_err(|e| StateError::Corrupt {
                key: format!("{key:?}"),
                reason: e.to_string(),
            })?;
            instances.reserve(index.instances.len());
            for entry in index.instances {
                let key = StateKey::Instance {
                    namespace: namespace.to_string(),
                    service: service.to_string(),
                    instance: entry.instance,
                };
                let bytes = self
                    .store
                    .value(self.version, state_key_hash(&key))?
                    .ok_or_else(|| StateError::Corrupt {
                        key: format!("{key:?}"),
                        reason: "listed in its service's index but missing".into(),
                    })?;
                instances.push(bytes);
            }
        }
        Ok(ServiceProof {
            lookup: ServiceLookup {
                namespace: namespace.to_string(),
                service: service.to_string(),
                value,
                proof,
            },
            instances,
        })
    }

    /// A service's instances, decoded, without proof (`None` when absent).
    pub fn service_record(
        &self,
        namespace: &str,
        service: &str,
    ) -> Result<Option<ServiceRecord>, StateError> {
        let key = StateKey::Service {
            namespace: namespace.to_string(),
            service: service.to_string(),
        };
        let Some(index) = self.get::<ServiceIndex>(&key)? else {
            return Ok(None);
        };
        let mut instances = Vec::with_capacity(index.instances.len());
        for entry in index.instances {
            let key = StateKey::Instance {
                namespace: namespace.to_string(),
                service: service.to_string(),
                instance: entry.instance,
            };
            let record = self
                .get::<InstanceRecord>(&key)?
                .ok_or_else(|| StateError::Corrupt {
                    key: format!("{key:?}"),
                    reason: "listed in its service's index but missing".into(),
                })?;
            instances.push(record);
        }
        Ok(Some(ServiceRecord {
            namespace: index.namespace,
            service: index.service,
            instances,
        }))
    }

    /// A namespace's services (or its absence) with proof.
    pub fn namespace(&self, namespace: &str) -> Result<NamespaceLookup, StateError> {
        let key = StateKey::Namespace {
            namespace: namespace.to_string(),
        };
        let (value, proof) = self.prove(&key)?;
        Ok(NamespaceLookup {
            namespace: namespace.to_string(),
            value,
            proof,
        })
    }

    /// An identity's record.
    pub fn identity(&self, key: &PublicKey) -> Result<Option<IdentityRecord>, StateError> {
        self.get(&StateKey::Identity { key: *key })
    }

    /// Every live instance `key` owns, sorted: its owner index, read from
    /// all [`super::records::OWNER_PAGES`] pages.
    pub fn owned_instances(&self, key: &PublicKey) -> Result<Vec<InstanceRef>, StateError> {
        let mut all = Vec::new();
        for page in 0..super::records::OWNER_PAGES {
            let listed: Option<Vec<InstanceRef>> = self.get(&owner_page_key(key, page))?;
            all.extend(listed.into_iter().flatten());
        }
        all.sort();
        Ok(all)
    }

    /// The enrollment authority.
    pub fn authority(&self) -> Result<super::Authority, StateError> {
        self.get(&system_key(system::AUTHORITY))?
            .ok_or_else(|| StateError::Corrupt {
                key: "System{authority}".into(),
                reason: "missing".into(),
            })
    }

    /// The state machine's admission rule for `stx` against this version:
    /// the cosignature count and who may sign it (see the `apply` module).
    /// `signers` are the signer and cosigners whose signatures were verified
    /// (`SignedTransaction::verify`). `Ok(Err(_))` is a refusal; a block
    /// carrying the transaction on top of this state would be invalid.
    pub fn admissible(
        &self,
        stx: &palisade_crypto::SignedTransaction,
        signers: &[PublicKey],
    ) -> Result<Result<(), super::TxRejection>, StateError> {
        let authority = self.authority()?;
        if let Err(r) = super::apply::cosignature_count(stx, &authority) {
            return Ok(Err(r));
        }
        let validators = self.validators()?;
        let identity = self.identity(&stx.tx.signer)?;
        Ok(super::apply::authorize(
            stx,
            signers,
            &authority,
            &validators,
            identity.as_ref(),
        ))
    }

    /// The lowest sequence number `key` may use next (what a mempool admits).
    pub fn next_sequence(&self, key: &PublicKey) -> Result<u64, StateError> {
        Ok(self
            .get::<u64>(&StateKey::Account { key: *key })?
            .unwrap_or(0))
    }

    /// The validator set stored at this version (the one signing the next block).
    pub fn validators(&self) -> Result<ValidatorSet, StateError> {
        self.get(&system_key(system::VALIDATORS))?
            .ok_or_else(|| StateError::Corrupt {
                key: "System{validators}".into(),
                reason: "missing".into(),
            })
    }

    /// The namespaces that hold at least one service.
    pub fn namespaces(&self) -> Result<Vec<String>, StateError> {
        Ok(self
            .get(&system_key(system::NAMESPACES))?
            .unwrap_or_default())
    }

    pub(crate) fn chain(&self) -> Result<ChainRecord, StateError> {
        self.get(&system_key(system::CHAIN))?
            .ok_or_else(|| StateError::Corrupt {
                key: "System{chain}".into(),
                reason: "missing".into(),
            })
    }

    /// Rebuild the lease index from the namespace directory.
    pub(crate) fn lease_index(&self) -> Result<LeaseIndex, StateError> {
        let mut index = LeaseIndex::default();
        for ns in self.namespaces()? {
            let key = StateKey::Namespace {
                namespace: ns.clone(),
            };
            let Some(record) = self.get::<NamespaceRecord>(&key)? else {
                continue;
            };
            for svc in record.services {
                let Some(service) = self.service_record(&ns, &svc)? else {
                    continue;
                };
                for inst in service.instances {
                    let r = InstanceRef {
                        namespace: ns.clone(),
                        service: svc.clone(),
                        instance: inst.instance,
                    };
                    index.set(r, Some(inst.lease_expires_at_ms));
                }
            }
        }
        tracing::debug!(leases = index.len(), "lease index rebuilt");
        Ok(index)
    }
}

/// A client-side filter over a proven instance set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Every label here must be present with this value.
    pub labels: Vec<Label>,
    /// Keep only instances whose health is `Passing`.
    pub passing_only: bool,
    /// With `Some(now_ms)`, drop instances whose lease deadline is before
    /// `now_ms` (overdue instances kept by the mass-expiry bound).
    pub live_at_ms: Option<u64>,
}

impl InstanceFilter {
    /// Whether `instance` passes the filter.
    pub fn matches(&self, instance: &InstanceRecord) -> bool {
        if self.passing_only && instance.health != Health::Passing {
            return false;
        }
        if let Some(now) = self.live_at_ms {
            if instance.lease_expires_at_ms < now {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|want| instance.labels.contains(want))
    }

    /// The instances of `record` that pass, in record order.
    pub fn apply<'r>(&self, record: &'r ServiceRecord) -> Vec<&'r InstanceRecord> {
        record
            .instances
            .iter()
            .filter(|i| self.matches(i))
            .collect()
    }
}
