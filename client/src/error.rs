//! Every way a client operation fails, as one typed enum.
//!
//! Verification failures ([`ClientError::is_verification_failure`]) mean a node
//! sent something the trusted validator set does not back; the client then
//! asks another node, and reports the failure only when no node gave a
//! verifiable answer (or when told to talk to one node only).

use palisade_crypto::{CertError, Digest, ProofError, PublicKey, SigError};

/// Why a client operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A certificate (or transaction) is for another chain.
    #[error("certificate is for chain {got:?}, the trusted network is {expected:?}")]
    WrongChain {
        /// Chain id in the certificate.
        got: String,
        /// Chain id of the trusted network file.
        expected: String,
    },
    /// A certificate names another genesis than the trusted network file's
    /// (the same chain id re-genesised, signed by the old chain's keys).
    #[error("certificate is for genesis {got}, the trusted network's genesis is {expected}")]
    WrongGenesis {
        /// Genesis hash in the certificate.
        got: palisade_crypto::Digest,
        /// Genesis hash of the trusted network file.
        expected: palisade_crypto::Digest,
    },
    /// A certificate signer is not a validator of the certificate's epoch.
    #[error("certificate signer {0} is not a validator of its epoch")]
    UnknownSigner(PublicKey),
    /// A certificate counts one signer twice.
    #[error("certificate signer {0} appears more than once")]
    DuplicateSigner(PublicKey),
    /// The certificate's distinct signers hold too little voting power.
    #[error("certificate signers hold {got} of {total} voting power; a quorum needs {needed}")]
    InsufficientQuorum {
        /// Power of the signers.
        got: u64,
        /// Power a quorum needs.
        needed: u64,
        /// Total power of the epoch's set.
        total: u64,
    },
    /// A certificate signature does not verify.
    #[error("forged certificate signature: {0}")]
    ForgedSignature(SigError),
    /// The certificate certifies no committed block.
    #[error("certificate commits no block")]
    NotACommit,
    /// The certificate's epoch is beyond what the client could follow.
    #[error("certificate is for epoch {got}; the client can verify epochs up to {trusted}")]
    UnknownEpoch {
        /// Epoch of the certificate.
        got: u64,
        /// Latest epoch whose validator set the client trusts.
        trusted: u64,
    },
    /// A certificate of a retired epoch for a height past that epoch's end
    /// (its validators may have been sold or leaked since).
    #[error("certificate of epoch {epoch} for height {height}, but epoch {epoch} ended at height {ended_at}")]
    RetiredEpoch {
        /// Epoch of the certificate.
        epoch: u64,
        /// The height it certifies.
        height: u64,
        /// The last height of that epoch.
        ended_at: u64,
    },
    /// An epoch change does not lead from a trusted set to its successor.
    #[error("bad epoch change: {0}")]
    BadEpochChange(String),
    /// Two different, validly signed ends of one epoch were seen: its keys
    /// signed a fork (retired keys forging a successor set). The trust chain
    /// refuses every certificate from then on; both certificates are
    /// evidence.
    #[error("two different certified ends of epoch {epoch}: the chain of validator sets forked")]
    ConflictingEpochChange {
        /// The epoch with two ends.
        epoch: u64,
    },
    /// A proof does not connect the answer to the certified state root.
    #[error("forged proof: {0}")]
    ForgedProof(ProofError),
    /// The node answered about another service than the one asked for.
    #[error("answer is about {got}, asked about {asked}")]
    WrongService {
        /// What was asked (`namespace/service`).
        asked: String,
        /// What the answer is about.
        got: String,
    },
    /// The certified state is older than the freshness bound.
    #[error("certified state is {age_ms} ms old; the bound is {max_age_ms} ms")]
    Stale {
        /// Age of the certified block time against the local clock.
        age_ms: u64,
        /// The configured bound.
        max_age_ms: u64,
    },
    /// The certified block time is ahead of the local clock beyond the allowed skew.
    #[error(
        "certified block time is {ahead_ms} ms ahead of the local clock (allowed {max_skew_ms} ms)"
    )]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: u64,
        /// The allowed clock skew.
        max_skew_ms: u64,
    },
    /// A commit receipt does not prove the transaction was committed.
    #[error("forged receipt: {0}")]
    ForgedReceipt(String),
    /// A verified answer arrived out of order (a replayed or rolled-back update).
    #[error("update for {service} at height {got} does not follow height {last}")]
    OutOfOrder {
        /// `namespace/service`.
        service: String,
        /// Height received.
        got: u64,
        /// Last height delivered.
        last: u64,
    },
    /// Two answers certified different states at one height: more than a
    /// third of the voting power signed conflicting blocks.
    #[error("conflicting certified states at height {height}: {first} and {second}")]
    Equivocation {
        /// The height.
        height: u64,
        /// One certified state root.
        first: Digest,
        /// The other.
        second: Digest,
    },
    /// A node reported a transaction applied, but the certified state at or
    /// after its block does not show its effect.
    #[error("a node reported the transaction applied, but the certified state at height {height} does not show {what}")]
    Unconfirmed {
        /// The effect looked for.
        what: String,
        /// Height of the state looked at.
        height: u64,
    },
    /// An answer did not decode.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The transaction was committed but the state machine refused it.
    #[error("transaction {tx_id} was rejected: {reason}")]
    Rejected {
        /// Transaction id.
        tx_id: Digest,
        /// The state machine's reason.
        reason: String,
    },
    /// Gave up waiting.
    #[error("timed out after {waited_ms} ms waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited_ms: u64,
    },
    /// A node refused the request.
    #[error("node {node} answered {status} {code}: {message}")]
    Api {
        /// Node URL.
        node: String,
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// Its explanation.
        message: String,
    },
    /// A node could not be reached or broke the connection.
    #[error("node {node} unreachable: {reason}")]
    Transport {
        /// Node URL.
        node: String,
        /// What went wrong.
        reason: String,
    },
    /// No node gave a usable answer; one line per attempt.
    #[error("no node answered: {}", .0.join("; "))]
    Unavailable(Vec<String>),
    /// A key file could not be read or written.
    #[error("key: {0}")]
    Key(String),
    /// The network file is unreadable or invalid.
    #[error("network file: {0}")]
    Network(String),
    /// The on-disk cache failed.
    #[error("cache: {0}")]
    Cache(String),
    /// A caller-supplied argument is invalid.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl ClientError {
    /// Whether a node sent something that failed verification (as opposed to
    /// being unreachable, refusing, or the client giving up).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            ClientError::WrongChain { .. }
                | ClientError::WrongGenesis { .. }
                | ClientError::UnknownSigner(_)
                | ClientError::DuplicateSigner(_)
                | ClientError::InsufficientQuorum { .. }
                | ClientError::ForgedSignature(_)
                | ClientError::NotACommit
                | ClientError::UnknownEpoch { .. }
                | ClientError::RetiredEpoch { .. }
                | ClientError::BadEpochChange(_)
                | ClientError::ConflictingEpochChange { .. }
                | ClientError::ForgedProof(_)
                | ClientError::WrongService { .. }
                | ClientError::Stale { .. }
                | ClientError::FromTheFuture { .. }
                | ClientError::ForgedReceipt(_)
                | ClientError::OutOfOrder { .. }
                | ClientError::Equivocation { .. }
                | ClientError::Unconfirmed { .. }
                | ClientError::Malformed(_)
        )
    }

    /// Whether the failure says only that nodes could not be reached (or were
    /// overloaded), so an offline answer may stand in.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::Unavailable(_) => true,
            ClientError::Timeout { .. } => true,
            ClientError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

impl From<CertError> for ClientError {
    fn from(e: CertError) -> Self {
        match e {
            CertError::WrongChain { got, expected } => ClientError::WrongChain { got, expected },
            CertError::WrongEpoch { got, expected } => ClientError::UnknownEpoch {
                got,
                trusted: expected,
            },
            CertError::UnknownSigner(k) => ClientError::UnknownSigner(k),
            CertError::DuplicateSigner(k) => ClientError::DuplicateSigner(k),
            CertError::Signature(s) => ClientError::ForgedSignature(s),
            CertError::InsufficientPower { got, needed, total } => {
                ClientError::InsufficientQuorum { got, needed, total }
            }
            CertError::NotACommit => ClientError::NotACommit,
            e @ CertError::BadEpochChange { .. } => ClientError::BadEpochChange(e.to_string()),
            e @ CertError::InvalidSet(_) => ClientError::BadEpochChange(e.to_string()),
        }
    }
}

impl From<palisade_keys::KeyError> for ClientError {
    fn from(e: palisade_keys::KeyError) -> Self {
        ClientError::Key(e.to_string())
    }
}
