//! The working set of one block: typed records read lazily from the parent's
//! version and written back, encoded once, when the block ends.
//!
//! Records are decoded once per block and mutated in place, so a block that
//! registers a thousand instances in one service encodes that service's leaf
//! once. Transactions are atomic because every handler checks everything
//! before its first mutation (see [`super::apply`]); a storage failure in the
//! middle of a handler aborts the whole block, so no half-applied transaction
//! can survive either way.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{
    decode, encode, instance_record_hash, state_key_hash, InstanceEntry, InstanceRecord,
    NamespaceRecord, PublicKey, ServiceIndex, StateKey, ValidatorSet,
};

use super::error::StateError;
use super::lease::LeaseDelta;
use super::records::{
    owner_page_key, system, system_key, ExpiryState, IdentityRecord, InstanceRef, OWNER_PAGES,
};
use super::store::BranchReader;

/// Cached records of one type: value (or absence) and whether it changed.
struct Table<V> {
    entries: BTreeMap<StateKey, (Option<V>, bool)>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            entries: BTreeMap::new(),
        }
    }
}

impl<V: BorshSerialize + BorshDeserialize> Table<V> {
    fn load(&mut self, src: &Source<'_>, key: &StateKey) -> Result<(), StateError> {
        if !self.entries.contains_key(key) {
            let value = src.read(key)?;
            self.entries.insert(key.clone(), (value, false));
        }
        Ok(())
    }

    fn get(&mut self, src: &Source<'_>, key: &StateKey) -> Result<Option<&V>, StateError> {
        self.load(src, key)?;
        Ok(self.entries[key].0.as_ref())
    }

    fn get_mut(&mut self, src: &Source<'_>, key: &StateKey) -> Result<Option<&mut V>, StateError> {
        self.load(src, key)?;
        let entry = self.entries.get_mut(key).expect("loaded above");
        entry.1 |= entry.0.is_some();
        Ok(entry.0.as_mut())
    }

    fn set(&mut self, key: StateKey, value: Option<V>) {
        self.entries.insert(key, (value, true));
    }

    fn drain_into(self, out: &mut BTreeMap<StateKey, Option<Vec<u8>>>) {
        for (key, (value, dirty)) in self.entries {
            if dirty {
                out.insert(key, value.as_ref().map(encode));
            }
        }
    }
}

/// Where a block reads the parent's state from.
pub(crate) struct Source<'a> {
    reader: &'a BranchReader<'a>,
    /// The parent's version; `None` for genesis (nothing to read).
    version: Option<u64>,
}

impl Source<'_> {
    fn read<V: BorshDeserialize>(&self, key: &StateKey) -> Result<Option<V>, StateError> {
        match self.bytes(key)? {
            None => Ok(None),
            Some(bytes) => decode_record(key, &bytes).map(Some),
        }
    }

    /// The parent's encoded value of `key`.
    fn bytes(&self, key: &StateKey) -> Result<Option<Vec<u8>>, StateError> {
        let Some(version) = self.version else {
            return Ok(None);
        };
        Ok(self.reader.value(version, state_key_hash(key))?)
    }
}

fn decode_record<V: BorshDeserialize>(key: &StateKey, bytes: &[u8]) -> Result<V, StateError> {
    decode(bytes).map_err(|e| StateError::Corrupt {
        key: format!("{key:?}"),
        reason: e.to_string(),
    })
}

/// The typed working set of a block.
pub(crate) struct WorkingSet<'a> {
    src: Source<'a>,
    services: Table<ServiceIndex>,
    instances: Table<InstanceRecord>,
    namespaces: Table<NamespaceRecord>,
    identities: Table<IdentityRecord>,
    /// Owner index pages (an empty page is written as absent).
    owner_pages: Table<Vec<InstanceRef>>,
    accounts: Table<u64>,
    validators: Table<ValidatorSet>,
    expiry: Table<ExpiryState>,
    directory: Table<Vec<String>>,
    raw: BTreeMap<StateKey, Option<Vec<u8>>>,
    /// Lease changes of this block.
    pub(crate) leases: LeaseDelta,
}

fn service_key(namespace: &str, service: &str) -> StateKey {
    StateKey::Service {
        namespace: namespace.to_string(),
        service: service.to_string(),
    }
}

impl<'a> WorkingSet<'a> {
    pub(crate) fn new(reader: &'a BranchReader<'a>, version: Option<u64>) -> Self {
        WorkingSet {
            src: Source { reader, version },
            services: Table::default(),
            instances: Table::default(),
            namespaces: Table::default(),
            identities: Table::default(),
            owner_pages: Table::default(),
            accounts: Table::default(),
            validators: Table::default(),
            expiry: Table::default(),
            directory: Table::default(),
            raw: BTreeMap::new(),
            leases: LeaseDelta::new(),
        }
    }

    /// The service's index (`None` when it has no instance).
    pub(crate) fn service(
        &mut self,
        namespace: &str,
        service: &str,
    ) -> Result<Option<&ServiceIndex>, StateError> {
        self.services
            .get(&self.src, &service_key(namespace, service))
    }

    /// An instance's record.
    pub(crate) fn instance(
        &mut self,
        r: &InstanceRef,
    ) -> Result<Option<&InstanceRecord>, StateError> {
        self.instances.get(&self.src, &r.instance_key())
    }

    /// Write an instance's leaf and its entry (id, record hash) in the
    /// service's index, creating the index when needed. Returns whether the
    /// instance is new to the service.
    pub(crate) fn put_instance_leaf(
        &mut self,
        r: &InstanceRef,
        record: InstanceRecord,
    ) -> Result<bool, StateError> {
        let entry = InstanceEntry {
            instance: r.instance.clone(),
            record_hash: instance_record_hash(&encode(&record)),
        };
        self.instances.set(r.instance_key(), Some(record));
        let key = service_key(&r.namespace, &r.service);
        let is_new = match self.services.get_mut(&self.src, &key)? {
            Some(index) => match index
                .instances
                .binary_search_by(|e| e.instance.as_str().cmp(&r.instance))
            {
                Ok(pos) => {
                    index.instances[pos] = entry;
                    false
                }
                Err(pos) => {
                    index.instances.insert(pos, entry);
                    true
                }
            },
            None => {
                self.services.set(
                    key,
                    Some(ServiceIndex {
                        namespace: r.namespace.clone(),
                        service: r.service.clone(),
                        instances: vec![entry],
                    }),
                );
                true
            }
        };
        Ok(is_new)
    }

    /// Delete an instance's leaf and its index entry, and the index with its
    /// last entry. Returns whether the service is now empty.
    pub(crate) fn remove_instance_leaf(&mut self, r: &InstanceRef) -> Result<bool, StateError> {
        self.instances.set(r.instance_key(), None);
        let key = service_key(&r.namespace, &r.service);
        let now_empty = match self.services.get_mut(&self.src, &key)? {
            Some(index) => {
                if let Ok(pos) = index
                    .instances
                    .binary_search_by(|e| e.instance.as_str().cmp(&r.instance))
                {
                    index.instances.remove(pos);
                }
                index.instances.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.services.set(key, None);
        }
        Ok(now_empty)
    }

    pub(crate) fn namespace(&mut self, ns: &str) -> Result<Option<&NamespaceRecord>, StateError> {
        let key = StateKey::Namespace {
            namespace: ns.to_string(),
        };
        self.namespaces.get(&self.src, &key)
    }

    pub(crate) fn set_namespace(&mut self, ns: &str, v: Option<NamespaceRecord>) {
        let key = StateKey::Namespace {
            namespace: ns.to_string(),
        };
        self.namespaces.set(key, v);
    }

    pub(crate) fn identity(
        &mut self,
        key: &PublicKey,
    ) -> Result<Option<&IdentityRecord>, StateError> {
        self.identities
            .get(&self.src, &StateKey::Identity { key: *key })
    }

    pub(crate) fn identity_mut(
        &mut self,
        key: &PublicKey,
    ) -> Result<Option<&mut IdentityRecord>, StateError> {
        self.identities
            .get_mut(&self.src, &StateKey::Identity { key: *key })
    }

    pub(crate) fn set_identity(&mut self, key: &PublicKey, v: IdentityRecord) {
        self.identities
            .set(StateKey::Identity { key: *key }, Some(v));
    }

    /// List `r` in `owner`'s index; returns whether it was not listed.
    pub(crate) fn add_owned(
        &mut self,
        owner: &PublicKey,
        r: &InstanceRef,
    ) -> Result<bool, StateError> {
        let key = owner_page_key(owner, r.owner_page());
        let page = match self.owner_pages.get_mut(&self.src, &key)? {
            Some(page) => page,
            None => {
                self.owner_pages.set(key.clone(), Some(Vec::new()));
                self.owner_pages
                    .get_mut(&self.src, &key)?
                    .expect("set above")
            }
        };
        match page.binary_search(r) {
            Ok(_) => Ok(false),
            Err(pos) => {
                page.insert(pos, r.clone());
                Ok(true)
            }
        }
    }

    /// Drop `r` from `owner`'s index; returns whether it was listed.
    pub(crate) fn remove_owned(
        &mut self,
        owner: &PublicKey,
        r: &InstanceRef,
    ) -> Result<bool, StateError> {
        let key = owner_page_key(owner, r.owner_page());
        let Some(page) = self.owner_pages.get_mut(&self.src, &key)? else {
            return Ok(false);
        };
        match page.binary_search(r) {
            Ok(pos) => {
                page.remove(pos);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Every instance `owner`'s index lists, sorted; the index is emptied.
    /// Reads all [`OWNER_PAGES`] pages.
    pub(crate) fn take_owned(&mut self, owner: &PublicKey) -> Result<Vec<InstanceRef>, StateError> {
        let mut all = Vec::new();
        for page in 0..OWNER_PAGES {
            let key = owner_page_key(owner, page);
            if let Some(listed) = self.owner_pages.get(&self.src, &key)? {
                if !listed.is_empty() {
                    all.extend(listed.iter().cloned());
                    self.owner_pages.set(key, None);
                }
            }
        }
        all.sort();
        Ok(all)
    }

    /// The lowest sequence `key` may use next (0 for a new signer).
    pub(crate) fn next_sequence(&mut self, key: &PublicKey) -> Result<u64, StateError> {
        Ok(self
            .accounts
            .get(&self.src, &StateKey::Account { key: *key })?
            .copied()
            .unwrap_or(0))
    }

    pub(crate) fn set_next_sequence(&mut self, key: &PublicKey, next: u64) {
        self.accounts
            .set(StateKey::Account { key: *key }, Some(next));
    }

    pub(crate) fn validators(&mut self) -> Result<ValidatorSet, StateError> {
        let key = system_key(system::VALIDATORS);
        self.validators
            .get(&self.src, &key)?
            .cloned()
            .ok_or_else(|| StateError::Corrupt {
                key: "System{validators}".into(),
                reason: "missing".into(),
            })
    }

    pub(crate) fn set_validators(&mut self, set: ValidatorSet) {
        self.validators
            .set(system_key(system::VALIDATORS), Some(set));
    }

    pub(crate) fn expiry(&mut self) -> Result<ExpiryState, StateError> {
        Ok(self
            .expiry
            .get(&self.src, &system_key(system::EXPIRY))?
            .cloned()
            .unwrap_or_default())
    }

    pub(crate) fn set_expiry(&mut self, state: ExpiryState) {
        self.expiry.set(system_key(system::EXPIRY), Some(state));
    }

    /// Number of non-empty namespaces.
    pub(crate) fn directory_len(&mut self) -> Result<usize, StateError> {
        let key = system_key(system::NAMESPACES);
        Ok(self.directory.get(&self.src, &key)?.map_or(0, Vec::len))
    }

    pub(crate) fn directory_mut(&mut self) -> Result<&mut Vec<String>, StateError> {
        let key = system_key(system::NAMESPACES);
        if self.directory.get(&self.src, &key)?.is_none() {
            self.directory.set(key.clone(), Some(Vec::new()));
        }
        Ok(self.directory.get_mut(&self.src, &key)?.expect("set above"))
    }

    /// Write a record of a type the block never reads (genesis records).
    pub(crate) fn put_raw<V: BorshSerialize>(&mut self, key: StateKey, value: &V) {
        self.raw.insert(key, Some(encode(value)));
    }

    /// The writes of the block, keyed and sorted.
    pub(crate) fn into_writes(self) -> (BTreeMap<StateKey, Option<Vec<u8>>>, LeaseDelta) {
        let mut out = self.raw;
        self.services.drain_into(&mut out);
        self.instances.drain_into(&mut out);
        self.namespaces.drain_into(&mut out);
        self.identities.drain_into(&mut out);
        for (key, (page, dirty)) in self.owner_pages.entries {
            if dirty {
                let bytes = page.filter(|p| !p.is_empty()).as_ref().map(encode);
                out.insert(key, bytes);
            }
        }
        self.accounts.drain_into(&mut out);
        self.validators.drain_into(&mut out);
        self.expiry.drain_into(&mut out);
        self.directory.drain_into(&mut out);
        (out, self.leases)
    }

    /// Note a lease change of this block.
    pub(crate) fn set_lease(&mut self, instance: InstanceRef, deadline: Option<u64>) {
        self.leases.insert(instance, deadline);
    }
}
