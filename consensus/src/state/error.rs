//! Typed errors of the state machine.
//!
//! [`TxRejection`] is a transaction's fault: the transaction stays in its
//! block with a rejected receipt and changes nothing. [`StateError`] is not
//! anyone's transaction's fault (storage failed, stored data is corrupt, the
//! genesis is invalid): it aborts the block or the operation.

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{PublicKey, SigError, TxError};

use super::store::StoreError;

/// Why a transaction was rejected. Checks run in a fixed order (size,
/// signatures, sequence, authorization, body, limits), so every replica
/// names the same reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, BorshSerialize, BorshDeserialize)]
pub enum TxRejection {
    /// The encoded transaction exceeds `max_tx_bytes`.
    #[error("transaction of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Encoded size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// Signed for another chain.
    #[error("transaction is for chain {got:?}, this is chain {expected:?}")]
    WrongChain {
        /// Chain id in the transaction.
        got: String,
        /// This chain's id.
        expected: String,
    },
    /// A signer's or cosigner's key is not a valid ed25519 point.
    #[error("key {0} is not a valid ed25519 point")]
    InvalidKey(PublicKey),
    /// A signer's or cosigner's key is weak (small order).
    #[error("key {0} is weak")]
    WeakKey(PublicKey),
    /// A signature failed `verify_strict`.
    #[error("bad signature by {0}")]
    BadSignature(PublicKey),
    /// The envelope is malformed.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// A cosigner appears twice or is the signer.
    #[error("cosigner {0} appears more than once")]
    DuplicateCosigner(PublicKey),
    /// Cosignatures on a transaction that is not an authority act.
    #[error("{count} cosignatures on a transaction that takes none")]
    UnexpectedCosignatures {
        /// How many were attached.
        count: u64,
    },
    /// More cosignatures than the authority has members.
    #[error("{count} cosignatures, the authority has {members} members")]
    TooManyCosignatures {
        /// Attached.
        count: u64,
        /// Authority size.
        members: u64,
    },
    /// Sequence number not above the signer's last one (replay or reordering).
    #[error("sequence {got} is stale, the next accepted is at least {next}")]
    StaleSequence {
        /// Sequence in the transaction.
        got: u64,
        /// Lowest sequence accepted.
        next: u64,
    },
    /// `u64::MAX` is never a valid sequence (nothing could follow it).
    #[error("sequence u64::MAX is reserved")]
    SequenceExhausted,
    /// An authority act signed by someone outside the authority.
    #[error("{0} is not a member of the enrollment authority")]
    NotAuthority(PublicKey),
    /// Too few distinct authority members signed.
    #[error("{got} authority signatures, the threshold is {needed}")]
    BelowThreshold {
        /// Distinct authority signers.
        got: u64,
        /// Threshold.
        needed: u64,
    },
    /// The signer is not an enrolled identity.
    #[error("{0} is not enrolled")]
    NotEnrolled(PublicKey),
    /// The signer (or the target of a revocation) was revoked.
    #[error("identity {0} is revoked")]
    Revoked(PublicKey),
    /// The signer is not enrolled in this namespace.
    #[error("not enrolled in namespace {namespace:?}")]
    NamespaceNotPermitted {
        /// The namespace written to.
        namespace: String,
    },
    /// The instance belongs to another identity and the signer is no admin.
    #[error("instance {instance:?} belongs to {owner}")]
    NotOwner {
        /// Instance.
        instance: String,
        /// Its owner.
        owner: PublicKey,
    },
    /// No such live instance.
    #[error("no instance {namespace}/{service}/{instance}")]
    UnknownInstance {
        /// Namespace.
        namespace: String,
        /// Service.
        service: String,
        /// Instance.
        instance: String,
    },
    /// A health report by a key outside the current validator set.
    #[error("{0} is not a validator")]
    NotValidator(PublicKey),
    /// Revocation of a key that was never enrolled.
    #[error("identity {0} is not enrolled")]
    UnknownIdentity(PublicKey),
    /// A name (namespace, service, instance) breaks the name rules.
    #[error("invalid {field}: {reason}")]
    InvalidName {
        /// Which field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// An endpoint breaks the endpoint rules.
    #[error("invalid endpoint {index}: {reason}")]
    InvalidEndpoint {
        /// Position in the list.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A label breaks the label rules.
    #[error("invalid label {key:?}: {reason}")]
    InvalidLabel {
        /// Label key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Version string too long or not printable.
    #[error("invalid version: {0}")]
    InvalidVersion(String),
    /// TTL outside `1..=max_ttl_secs`.
    #[error("ttl {got}s outside 1..={max}s")]
    InvalidTtl {
        /// Requested TTL.
        got: u32,
        /// Maximum.
        max: u32,
    },
    /// Probe spec breaks the probe rules.
    #[error("invalid probe: {0}")]
    InvalidProbe(String),
    /// The service already holds `max_instances_per_service` instances.
    #[error("service is full ({max} instances)")]
    ServiceFull {
        /// Limit.
        max: u64,
    },
    /// The namespace already holds `max_services_per_namespace` services.
    #[error("namespace is full ({max} services)")]
    NamespaceFull {
        /// Limit.
        max: u64,
    },
    /// The identity already owns `max_instances_per_identity` instances.
    #[error("identity owns its maximum of {max} instances")]
    IdentityFull {
        /// Limit.
        max: u64,
    },
    /// An enrollment breaks the enrollment rules.
    #[error("invalid enrollment: {0}")]
    InvalidEnrollment(String),
    /// A proposed validator set is malformed.
    #[error("invalid validator set: {0}")]
    InvalidValidatorSet(String),
    /// An epoch change is already decided and not yet in force.
    /// (Variants are append-only: their borsh tags are in stored receipts.)
    #[error("an epoch change to epoch {pending} is already pending")]
    EpochChangePending {
        /// The epoch already decided.
        pending: u64,
    },
    /// The registry already holds `max_namespaces` non-empty namespaces.
    #[error("the registry is full ({max} namespaces)")]
    RegistryFull {
        /// Limit.
        max: u64,
    },
    /// Sequence number too far past the signer's next one (at most
    /// `next + MAX_SEQUENCE_STEP`), so no one can steer a signer's account
    /// towards the end of the sequence space.
    #[error("sequence {got} is too far ahead, at most {max} accepted (next is {next})")]
    SequenceTooFar {
        /// Sequence in the transaction.
        got: u64,
        /// The signer's next sequence.
        next: u64,
        /// Highest sequence accepted.
        max: u64,
    },
    /// The record the transaction would write is larger than the genesis
    /// limits allow (`Params::record_bounds`).
    #[error("{record} would be {size} bytes, at most {max} allowed")]
    RecordTooLarge {
        /// Which record.
        record: String,
        /// Its encoded size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// Silence reports on a chain whose leases expire on block time.
    #[error("this chain's leases expire on block time, not on silence reports")]
    LeasesNotAttested,
    /// A silence report of an ExpireSilent transaction is unusable.
    #[error("silence report {index}: {reason}")]
    BadSilenceReport {
        /// Position in the transaction.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// Signed for another genesis of a chain with this id (issue-13 review:
    /// after a re-genesis, old transactions must not replay).
    #[error("transaction is for genesis {got}, this chain grew from genesis {expected}")]
    WrongGenesis {
        /// Genesis hash in the transaction.
        got: palisade_crypto::Digest,
        /// This chain's genesis hash.
        expected: palisade_crypto::Digest,
    },
}

impl TxRejection {
    /// The reason's stable code: what a receipt leaf hashes
    /// ([`palisade_crypto::receipt_root`]), so that the transaction root
    /// never depends on how a reason is printed. Codes are append-only and
    /// never reused; 0 is [`palisade_crypto::OUTCOME_APPLIED`]. The table is
    /// pinned by the known-answer test `rejection_code_table`.
    pub fn code(&self) -> u16 {
        match self {
            TxRejection::TooLarge { .. } => 1,
            TxRejection::WrongChain { .. } => 2,
            TxRejection::InvalidKey(_) => 3,
            TxRejection::WeakKey(_) => 4,
            TxRejection::BadSignature(_) => 5,
            TxRejection::Malformed(_) => 6,
            TxRejection::DuplicateCosigner(_) => 7,
            TxRejection::UnexpectedCosignatures { .. } => 8,
            TxRejection::TooManyCosignatures { .. } => 9,
            TxRejection::StaleSequence { .. } => 10,
            TxRejection::SequenceExhausted => 11,
            TxRejection::NotAuthority(_) => 12,
            TxRejection::BelowThreshold { .. } => 13,
            TxRejection::NotEnrolled(_) => 14,
            TxRejection::Revoked(_) => 15,
            TxRejection::NamespaceNotPermitted { .. } => 16,
            TxRejection::NotOwner { .. } => 17,
            TxRejection::UnknownInstance { .. } => 18,
            TxRejection::NotValidator(_) => 19,
            TxRejection::UnknownIdentity(_) => 20,
            TxRejection::InvalidName { .. } => 21,
            TxRejection::InvalidEndpoint { .. } => 22,
            TxRejection::InvalidLabel { .. } => 23,
            TxRejection::InvalidVersion(_) => 24,
            TxRejection::InvalidTtl { .. } => 25,
            TxRejection::InvalidProbe(_) => 26,
            TxRejection::ServiceFull { .. } => 27,
            TxRejection::NamespaceFull { .. } => 28,
            TxRejection::IdentityFull { .. } => 29,
            TxRejection::InvalidEnrollment(_) => 30,
            TxRejection::InvalidValidatorSet(_) => 31,
            TxRejection::EpochChangePending { .. } => 32,
            TxRejection::RegistryFull { .. } => 33,
            TxRejection::SequenceTooFar { .. } => 34,
            TxRejection::RecordTooLarge { .. } => 35,
            TxRejection::LeasesNotAttested => 36,
            TxRejection::BadSilenceReport { .. } => 37,
            TxRejection::WrongGenesis { .. } => 38,
        }
    }
}

impl From<SigError> for TxRejection {
    fn from(e: SigError) -> Self {
        match e {
            SigError::InvalidKey(k) => TxRejection::InvalidKey(k),
            SigError::WeakKey(k) => TxRejection::WeakKey(k),
            SigError::BadSignature(k) => TxRejection::BadSignature(k),
        }
    }
}

impl From<TxError> for TxRejection {
    fn from(e: TxError) -> Self {
        match e {
            TxError::WrongChain { got, expected } => TxRejection::WrongChain { got, expected },
            TxError::WrongGenesis { got, expected } => TxRejection::WrongGenesis { got, expected },
            TxError::Signature(s) => s.into(),
            TxError::DuplicateCosigner(k) => TxRejection::DuplicateCosigner(k),
            TxError::Malformed(d) => TxRejection::Malformed(d.to_string()),
        }
    }
}

/// A failure that is no transaction's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The block carries transactions that break the admission rule (bad
    /// signature, or a signer that may not sign them): the block is invalid.
    #[error("block carries {n} inadmissible transaction(s); the first: {reason}", n = tx_ids.len())]
    Inadmissible {
        /// Every inadmissible transaction of the block.
        tx_ids: Vec<palisade_crypto::Digest>,
        /// Why the first one is.
        reason: TxRejection,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The jmt refused an operation (a missing node: pruned or corrupt store).
    #[error("authenticated map: {0}")]
    Tree(String),
    /// A stored record does not decode.
    #[error("stored record for {key} does not decode: {reason}")]
    Corrupt {
        /// Which key.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// The genesis document is invalid.
    #[error("invalid genesis: {0}")]
    InvalidGenesis(String),
    /// The store holds another chain's state.
    #[error("store holds genesis {stored}, expected {expected}")]
    GenesisMismatch {
        /// Genesis hash in the store.
        stored: palisade_crypto::Digest,
        /// Genesis hash given.
        expected: palisade_crypto::Digest,
    },
    /// A version that is not (or no longer) in the store.
    #[error("version {0} is not stored")]
    UnknownVersion(u64),
}
