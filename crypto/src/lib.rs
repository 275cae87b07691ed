//! Palisade's wire types and the verification a client needs, with no I/O.
//!
//! Everything a light client checks lives here: domain-separated BLAKE3
//! ([`hash`]), ed25519 signatures verified with `verify_strict` and weak keys
//! refused ([`SecretKey`], [`PublicKey`]), canonical borsh encodings
//! ([`encode`], [`decode`]), the signed transaction envelope
//! ([`SignedTransaction`]), commit certificates checked against a validator set
//! ([`CommitCertificate::verify`]) and proofs over the authenticated registry map
//! ([`MapProof`]).
//!
//! ```
//! use palisade_crypto::{Domain, SecretKey, hash};
//! let key = SecretKey::from_seed([7; 32]);
//! let digest = hash(Domain::Transaction, b"hello");
//! let sig = key.sign_digest(&digest);
//! key.public().verify_digest(&digest, &sig).unwrap();
//! ```
#![forbid(unsafe_code)]

pub mod api;
pub mod dc;
mod encoding;
mod error;
mod hash;
mod lease;
mod ledger;
mod network;
mod proof;
mod registry;
mod sig;
mod tx;
mod txroot;

pub use encoding::{decode, decode_capped, encode, Hex, MAX_DECODE_BYTES};
pub use error::{BatchError, CertError, DecodeError, ProofError, SigError, TxError};
pub use hash::{hash, hash_encoded, Digest, Domain, JmtHasher};
pub use lease::{
    LeaseHeartbeat, SignedHeartbeat, SignedSilenceReport, SilenceReport, MAX_SILENT_PER_REPORT,
};
pub use ledger::{
    BlockInfo, CommitCertificate, LedgerInfo, Validator, ValidatorSet, VerifiedLedgerInfo,
};
pub use network::{NetworkFile, NodeEndpoint};
pub use proof::{state_key_hash, MapProof, ServiceLookup, ServiceProof, VerifiedLookup};
pub use registry::{
    changed_services, instance_record_hash, Endpoint, Enrollment, Health, InstanceEntry,
    InstanceId, InstanceRecord, Label, NamespaceLink, NamespaceRecord, ProbeKind, ProbeSpec,
    Registration, Role, ServiceIndex, ServiceName, ServiceRecord, StateKey,
};
pub use sig::{verify_batch, PublicKey, SecretKey, Signature};
pub use tx::{Cosignature, SignedTransaction, Transaction, TxBody, MAX_SEQUENCE_STEP};
pub use txroot::{receipt_root, tx_root, ReceiptTree, TxInclusionProof, OUTCOME_APPLIED};
