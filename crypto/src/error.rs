//! Typed errors: every rejection names what was wrong and what was expected.

use crate::{Digest, PublicKey};

/// Why bytes did not decode into a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input was longer than the cap for this message kind.
    #[error("input of {got} bytes exceeds the {cap}-byte cap")]
    TooLarge {
        /// Bytes received.
        got: usize,
        /// The cap.
        cap: usize,
    },
    /// The bytes are not a canonical borsh encoding of the expected type.
    #[error("malformed encoding: {0}")]
    Malformed(String),
    /// Hex text did not decode.
    #[error("bad hex: {0}")]
    BadHex(String),
}

/// Why a single signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The 32 bytes are not a valid curve point.
    #[error("public key {0} is not a valid ed25519 point")]
    InvalidKey(PublicKey),
    /// The key has small order (it would verify forged signatures).
    #[error("public key {0} is weak (small order)")]
    WeakKey(PublicKey),
    /// `verify_strict` refused the signature.
    #[error("bad signature by {0}")]
    BadSignature(PublicKey),
}

/// A batch failed; `index` names the first signature that fails on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signature {index} of the batch failed: {error}")]
pub struct BatchError {
    /// Position of the first failing item.
    pub index: usize,
    /// Why it failed.
    pub error: SigError,
}

/// Why a transaction envelope was refused before execution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// Signed for another chain.
    #[error("transaction is for chain {got:?}, this is chain {expected:?}")]
    WrongChain {
        /// Chain id in the transaction.
        got: String,
        /// This chain's id.
        expected: String,
    },
    /// Signed for another genesis of a chain with the same id (a
    /// re-genesis): its sequence numbers started over, so it must not replay.
    #[error("transaction is for genesis {got}, this chain grew from genesis {expected}")]
    WrongGenesis {
        /// Genesis hash in the transaction.
        got: Digest,
        /// This chain's genesis hash.
        expected: Digest,
    },
    /// The signer's or a cosigner's signature failed.
    #[error(transparent)]
    Signature(#[from] SigError),
    /// A cosigner appears twice, or is the signer itself.
    #[error("cosigner {0} appears more than once")]
    DuplicateCosigner(PublicKey),
    /// The envelope did not decode or exceeds a bound.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// Certificate of another chain.
    #[error("certificate is for chain {got:?}, expected {expected:?}")]
    WrongChain {
        /// Chain id in the ledger info.
        got: String,
        /// Trusted chain id.
        expected: String,
    },
    /// Certificate of another epoch than the validator set given.
    #[error("certificate is for epoch {got}, the validator set is epoch {expected}")]
    WrongEpoch {
        /// Epoch in the ledger info.
        got: u64,
        /// Epoch of the trusted validator set.
        expected: u64,
    },
    /// A signer is not a member of the validator set.
    #[error("signer {0} is not in the validator set")]
    UnknownSigner(PublicKey),
    /// A signer appears twice.
    #[error("signer {0} appears more than once")]
    DuplicateSigner(PublicKey),
    /// A signature does not verify.
    #[error(transparent)]
    Signature(#[from] SigError),
    /// The distinct valid signers hold too little power.
    #[error("signers hold {got} of {total} voting power, a quorum needs {needed}")]
    InsufficientPower {
        /// Power of the signers.
        got: u64,
        /// Power needed (more than two thirds of total).
        needed: u64,
        /// Total power of the set.
        total: u64,
    },
    /// The ledger info commits no block (a QC whose round is not consecutive).
    #[error("ledger info commits no block")]
    NotACommit,
    /// An epoch change names a set that is not the successor of the trusted one.
    #[error("epoch change to epoch {got}, expected {expected}")]
    BadEpochChange {
        /// Epoch of the announced set.
        got: u64,
        /// Epoch expected.
        expected: u64,
    },
    /// The validator set itself is malformed (empty, zero or overflowing power, duplicate key).
    #[error("invalid validator set: {0}")]
    InvalidSet(String),
}

/// Why a map proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof does not connect the key and value to the root.
    #[error("proof does not verify against root {root}: {reason}")]
    Mismatch {
        /// The root the proof was checked against.
        root: Digest,
        /// The verifier's explanation.
        reason: String,
    },
    /// The value does not decode, or decodes to a record for another key.
    #[error("record does not match the requested key: {0}")]
    WrongRecord(String),
    /// The proof bytes do not decode.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
}
