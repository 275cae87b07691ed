//! The genesis document: chain id, validators, enrollment authority and
//! parameters. Its hash ([`Genesis::hash`], [`Domain::Genesis`]) names the
//! chain in `network.json` and is the id of the genesis block (height 0).
//!
//! Every field is part of the hash, parameters included, so two networks that
//! disagree on a limit never share a genesis hash.

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{
    hash_encoded, Digest, Domain, Enrollment, PublicKey, Validator, ValidatorSet, MAX_DECODE_BYTES,
};
use serde::{Deserialize, Serialize};

use super::error::StateError;
use super::validate;

/// The enrollment authority: `threshold` of `members` must sign an authority
/// act (Enroll, Revoke, ChangeValidators).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Authority {
    /// Member keys (distinct).
    pub members: Vec<PublicKey>,
    /// Signatures needed (`1..=members.len()`).
    pub threshold: u32,
}

/// Limits and timing of the registry. Defaults suit a datacenter registry of
/// the size etcd or Consul serve; every limit bounds a stored record or a
/// block, so no transaction can grow state without bound.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    /// Largest lease TTL in seconds.
    pub max_ttl_secs: u32,
    /// Instances per service (bounds the service's index leaf and the size
    /// of a whole-service lookup answer).
    pub max_instances_per_service: u32,
    /// Services per namespace.
    pub max_services_per_namespace: u32,
    /// Instances one identity may own (bounds a revocation's work).
    pub max_instances_per_identity: u32,
    /// Namespaces one identity may be enrolled in.
    pub max_namespaces_per_identity: u32,
    /// Longest namespace, service or instance name.
    pub max_name_len: u32,
    /// Labels per instance.
    pub max_labels: u32,
    /// Longest label key.
    pub max_label_key_len: u32,
    /// Longest label value.
    pub max_label_value_len: u32,
    /// Endpoints per instance.
    pub max_endpoints: u32,
    /// Longest endpoint host.
    pub max_host_len: u32,
    /// Longest version string or probe path.
    pub max_text_len: u32,
    /// Largest encoded signed transaction.
    pub max_tx_bytes: u32,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// Largest encoded block payload.
    pub max_block_bytes: u32,
    /// Most validators in a set.
    pub max_validators: u32,
    /// How far ahead of a voter's clock a proposed block time may be
    /// (checked by consensus, not by execution).
    pub max_timestamp_drift_ms: u64,
    /// Length of a mass-expiry window (see the state module's "Leases").
    pub expiry_window_ms: u64,
    /// Share of the live instances (per mille) that may expire in one window.
    pub max_expiry_permille: u32,
    /// Expiries always allowed per window, whatever the share.
    pub min_expiry_per_window: u32,
    /// Namespaces holding services (the size of the namespace directory).
    pub max_namespaces: u32,
    /// How leases run out: on block time (heartbeats are transactions) or on
    /// validators' silence reports (heartbeats stay off consensus). Not in
    /// this record's borsh encoding (so chains on block-time leases keep
    /// their genesis hash and state roots): [`Genesis::hash`] appends it when
    /// it is not the default, and genesis stores it as `System{"lease_mode"}`
    /// then (absent = block time).
    #[borsh(skip)]
    pub lease_mode: LeaseMode,
}

/// How an instance's lease runs out (a chain-wide choice made at genesis).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LeaseMode {
    /// An instance is removed at the first block past its deadline
    /// (registration or last Heartbeat transaction + TTL).
    #[default]
    BlockTime,
    /// Owners send signed heartbeats to every validator, off consensus; an
    /// instance is removed by an ExpireSilent transaction carrying fresh
    /// silence reports of a quorum of validators, each made after its
    /// on-chain deadline (a Heartbeat transaction still moves that deadline).
    Attested,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            max_ttl_secs: 600,
            max_instances_per_service: 256,
            max_services_per_namespace: 1024,
            max_instances_per_identity: 1024,
            max_namespaces_per_identity: 32,
            max_name_len: 63,
            max_labels: 16,
            max_label_key_len: 63,
            max_label_value_len: 255,
            max_endpoints: 8,
            max_host_len: 253,
            max_text_len: 256,
            max_tx_bytes: 16 * 1024,
            max_block_txs: 4096,
            max_block_bytes: 4 << 20,
            max_validators: 128,
            max_timestamp_drift_ms: 5_000,
            expiry_window_ms: 60_000,
            max_expiry_permille: 150,
            min_expiry_per_window: 16,
            max_namespaces: 4096,
            lease_mode: LeaseMode::BlockTime,
        }
    }
}

/// The largest canonical encoding of each stored record (and of a whole
/// service's lookup answer) that the limits allow; see [`Params::record_bounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBounds {
    /// `Instance` leaf (`InstanceRecord`).
    pub instance: u64,
    /// `Service` leaf (`ServiceIndex`).
    pub service_index: u64,
    /// A whole service's answer: its index and every instance record.
    pub service_answer: u64,
    /// `Namespace` leaf (`NamespaceRecord`).
    pub namespace: u64,
    /// `System{"namespaces"}` (the namespace directory).
    pub directory: u64,
    /// `Identity` leaf (`IdentityRecord`: enrollment and owned count).
    pub identity: u64,
    /// `OwnerPage` leaf (one page of an owner index: at worst every
    /// instance the identity owns shares one page).
    pub owner_page: u64,
    /// `System{"validators"}` (`ValidatorSet`).
    pub validator_set: u64,
}

/// borsh length prefix of strings and vectors.
const LEN: u64 = 4;
/// Longest endpoint protocol (see `validate`).
pub(crate) const MAX_PROTOCOL_LEN: u64 = 16;

impl Params {
    /// Upper bounds of every stored record's encoding under these limits
    /// (borsh: 4-byte length prefixes, 32-byte keys and digests).
    pub fn record_bounds(&self) -> RecordBounds {
        let name = LEN + self.max_name_len as u64;
        let text = LEN + self.max_text_len as u64;
        let endpoint = (LEN + MAX_PROTOCOL_LEN) + (LEN + self.max_host_len as u64) + 2 + 2;
        let label = (LEN + self.max_label_key_len as u64) + (LEN + self.max_label_value_len as u64);
        let probe = 1 + (1 + text) + 4;
        let instance = name
            + 32
            + LEN
            + self.max_endpoints as u64 * endpoint
            + LEN
            + self.max_labels as u64 * label
            + text
            + 4
            + 8
            + 8
            + 1
            + LEN
            + self.max_validators as u64 * 32
            + probe;
        let service_index = 2 * name + LEN + self.max_instances_per_service as u64 * (name + 32);
        let instance_ref = 3 * name;
        RecordBounds {
            instance,
            service_index,
            service_answer: service_index
                .saturating_add(self.max_instances_per_service as u64 * instance),
            namespace: name + LEN + self.max_services_per_namespace as u64 * name,
            directory: LEN + self.max_namespaces as u64 * name,
            identity: LEN + self.max_namespaces_per_identity as u64 * name + 1 + 8 + 9 + 4,
            owner_page: LEN + self.max_instances_per_identity as u64 * instance_ref,
            validator_set: 8 + LEN + self.max_validators as u64 * (32 + 8),
        }
    }

    /// The largest `InstanceRecord` encoding these limits allow (checked
    /// again at write time).
    pub fn max_instance_record_bytes(&self) -> u64 {
        self.record_bounds().instance
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_ttl_secs", self.max_ttl_secs),
            ("max_instances_per_service", self.max_instances_per_service),
            (
                "max_services_per_namespace",
                self.max_services_per_namespace,
            ),
            (
                "max_instances_per_identity",
                self.max_instances_per_identity,
            ),
            (
                "max_namespaces_per_identity",
                self.max_namespaces_per_identity,
            ),
            ("max_name_len", self.max_name_len),
            ("max_label_key_len", self.max_label_key_len),
            ("max_endpoints", self.max_endpoints),
            ("max_host_len", self.max_host_len),
            ("max_tx_bytes", self.max_tx_bytes),
            ("max_block_txs", self.max_block_txs),
            ("max_block_bytes", self.max_block_bytes),
            ("max_validators", self.max_validators),
            ("max_namespaces", self.max_namespaces),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("parameter {name} must be positive"));
        }
        if self.max_block_bytes as usize > MAX_DECODE_BYTES {
            return Err(format!(
                "max_block_bytes {} exceeds the decode cap {MAX_DECODE_BYTES}",
                self.max_block_bytes
            ));
        }
        let b = self.record_bounds();
        let cap = MAX_DECODE_BYTES as u64;
        for (record, bound) in [
            ("instance record", b.instance),
            ("service index", b.service_index),
            (
                "whole-service lookup answer (index and every instance record)",
                b.service_answer,
            ),
            ("namespace record", b.namespace),
            ("namespace directory", b.directory),
            ("identity record", b.identity),
            ("owner index page", b.owner_page),
            ("validator set", b.validator_set),
        ] {
            if bound > cap {
                return Err(format!(
                    "limits allow a {record} of {bound} bytes, over the decode cap of {cap} bytes; \
                     lower the limits that size it"
                ));
            }
        }
        if self.max_tx_bytes > self.max_block_bytes {
            return Err("max_tx_bytes exceeds max_block_bytes".into());
        }
        if self.expiry_window_ms == 0 || self.max_expiry_permille > 1000 {
            return Err(
                "expiry window must be positive and the share at most 1000 permille".into(),
            );
        }
        Ok(())
    }
}

/// The genesis document.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Genesis {
    /// Chain id (one per datacenter); every transaction names it.
    pub chain_id: String,
    /// Block time of the genesis block (ms since the Unix epoch).
    pub genesis_time_ms: u64,
    /// The validators of epoch 0.
    pub validators: ValidatorSet,
    /// The enrollment authority.
    pub authority: Authority,
    /// Limits.
    #[serde(default)]
    pub params: Params,
    /// Identities enrolled from the start (e.g. a testnet's services).
    #[serde(default)]
    pub enrollments: Vec<Enrollment>,
}

impl Genesis {
    /// A genesis with default parameters and no initial enrollments.
    pub fn new(
        chain_id: impl Into<String>,
        genesis_time_ms: u64,
        validators: Vec<Validator>,
        authority: Authority,
    ) -> Self {
        Genesis {
            chain_id: chain_id.into(),
            genesis_time_ms,
            validators: ValidatorSet {
                epoch: 0,
                validators,
            },
            authority,
            params: Params::default(),
            enrollments: Vec::new(),
        }
    }

    /// The genesis hash: `hash(Domain::Genesis, borsh(self))`, followed by
    /// `borsh(params.lease_mode)` when that is not `BlockTime` (an extension
    /// that leaves every block-time chain's hash as it was); also the genesis
    /// block's id.
    pub fn hash(&self) -> Digest {
        match self.params.lease_mode {
            LeaseMode::BlockTime => hash_encoded(Domain::Genesis, self),
            mode => hash_encoded(Domain::Genesis, &(self, mode)),
        }
    }

    /// Check the document: chain id, validator set (epoch 0, valid keys),
    /// authority (distinct valid keys, threshold in range), parameters, and
    /// initial enrollments under those parameters.
    pub fn validate(&self) -> Result<(), StateError> {
        let bad = StateError::InvalidGenesis;
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return Err(bad("chain id must be 1..=64 bytes".into()));
        }
        self.params.validate().map_err(bad)?;
        if self.validators.epoch != 0 {
            return Err(bad("genesis validators must be epoch 0".into()));
        }
        validate::validator_set(&self.validators, &self.params).map_err(|e| bad(e.to_string()))?;
        let members = &self.authority.members;
        if members.is_empty() || members.len() > self.params.max_validators as usize {
            return Err(bad(format!(
                "authority needs 1..={} members",
                self.params.max_validators
            )));
        }
        for (i, key) in members.iter().enumerate() {
            key.to_verifying_key().map_err(|e| bad(e.to_string()))?;
            if members[..i].contains(key) {
                return Err(bad(format!("authority member {key} listed twice")));
            }
        }
        if self.authority.threshold == 0 || self.authority.threshold as usize > members.len() {
            return Err(bad(format!(
                "authority threshold {} outside 1..={}",
                self.authority.threshold,
                members.len()
            )));
        }
        for (i, e) in self.enrollments.iter().enumerate() {
            validate::enrollment(e, &self.params).map_err(|r| bad(r.to_string()))?;
            if self.enrollments[..i]
                .iter()
                .any(|o| o.identity == e.identity)
            {
                return Err(bad(format!("identity {} enrolled twice", e.identity)));
            }
        }
        Ok(())
    }
}
