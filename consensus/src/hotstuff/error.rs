//! Typed rejections of the consensus core.
//!
//! Every input the core refuses names what was wrong and what was expected.
//! "Not enough evidence yet" (a parent block not yet fetched, a vote that is
//! one of too few) is never an error: the core asks for what it misses and
//! keeps the input pending, or simply waits.

use palisade_crypto::{CertError, DecodeError, Digest, PublicKey, SigError};

use crate::executor::ExecutionError;

/// Why the core refused an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsensusError {
    /// The bytes are too large or not a canonical encoding of a [`super::Message`].
    #[error("undecodable message: {0}")]
    Decode(#[from] DecodeError),
    /// A message, block or certificate of another epoch (a retired or unknown set).
    #[error("epoch {got} is not the current epoch {current}")]
    WrongEpoch {
        /// Epoch named by the input.
        got: u64,
        /// This replica's epoch.
        current: u64,
    },
    /// A certificate signed for another chain.
    #[error("chain {got:?} is not this chain {expected:?}")]
    WrongChain {
        /// Chain id in the input.
        got: String,
        /// This chain's id.
        expected: String,
    },
    /// The authenticated sender is not a validator of the current epoch.
    #[error("sender {0} is not a validator of the current epoch")]
    NotAValidator(PublicKey),
    /// A signature made by the sender does not verify.
    #[error(transparent)]
    Signature(#[from] SigError),
    /// A quorum or timeout certificate does not verify.
    #[error("certificate refused: {0}")]
    Certificate(#[from] CertError),
    /// A certificate is internally inconsistent (what was signed does not match what it claims).
    #[error("malformed certificate: {0}")]
    MalformedCertificate(&'static str),
    /// A genesis-like root certificate (no signatures) that is not this replica's root.
    #[error("unsigned certificate for block {0} is not this replica's root")]
    UnknownRootCertificate(Digest),
    /// A proposal whose block names another proposer than its sender.
    #[error("proposal sent by {sender} names proposer {proposer}")]
    ProposerNotSender {
        /// The authenticated sender.
        sender: PublicKey,
        /// The proposer named in the block.
        proposer: PublicKey,
    },
    /// A proposal from a validator that does not lead its round.
    #[error("{got} proposed for round {round}, whose leader is {expected}")]
    WrongLeader {
        /// The round.
        round: u64,
        /// Who proposed.
        got: PublicKey,
        /// The leader this replica computes from committed history.
        expected: PublicKey,
    },
    /// An input for a round this replica has left.
    #[error("round {got} is stale, the current round is {current}")]
    StaleRound {
        /// Round of the input.
        got: u64,
        /// Current round.
        current: u64,
    },
    /// One key sent two different proposals, or two different votes, for
    /// one round: a Byzantine validator (or two processes sharing its key).
    /// The first message counts; the second is refused and reported.
    #[error("validator {key} equivocated: two different {kind}s in round {round}")]
    Equivocation {
        /// The equivocating validator.
        key: PublicKey,
        /// The round.
        round: u64,
        /// "proposal" or "vote".
        kind: &'static str,
    },
    /// Safety rule: one vote per round (last voted round).
    #[error("already voted or timed out in round {last_voted}, refusing to vote in round {round}")]
    AlreadyVoted {
        /// Round of the refused vote.
        round: u64,
        /// Last round voted (or timed out) in.
        last_voted: u64,
    },
    /// Safety rule: a block must extend the previous round's QC, or a TC's
    /// highest QC (2-chain locking rule, Jolteon §4).
    #[error("block of round {round} extends QC round {qc_round}; it needs round {round} = qc + 1 or = tc + 1 with qc >= {tc_high_qc_round:?}")]
    UnsafeVote {
        /// Round of the block.
        round: u64,
        /// Round of its parent QC.
        qc_round: u64,
        /// Round of the accompanying TC, if any.
        tc_round: Option<u64>,
        /// Highest QC round reported in that TC, if any.
        tc_high_qc_round: Option<u64>,
    },
    /// Safety rule: a block must not extend a QC older than the preferred (2-chain) round.
    #[error("block extends QC round {qc_round}, below the preferred round {preferred}")]
    BelowPreferredRound {
        /// Round of the block's parent QC.
        qc_round: u64,
        /// Preferred round (highest 2-chain round seen).
        preferred: u64,
    },
    /// Safety rule: timeouts never go backwards.
    #[error("refusing to time out round {round}, already at round {highest}")]
    TimeoutBackwards {
        /// Round of the refused timeout.
        round: u64,
        /// Highest round voted or timed out in.
        highest: u64,
    },
    /// Safety rule: a timeout must report the highest QC this replica has seen.
    #[error("timeout reports QC round {qc_round}, but QC round {one_chain_round} was seen")]
    TimeoutHidesQc {
        /// QC round in the timeout.
        qc_round: u64,
        /// Highest QC round seen.
        one_chain_round: u64,
    },
    /// Safety rule: a timeout must follow a QC or TC of the previous round.
    #[error(
        "timeout for round {round} follows neither QC round {qc_round} nor TC round {tc_round:?}"
    )]
    TimeoutNotJustified {
        /// Round of the timeout.
        round: u64,
        /// Its QC round.
        qc_round: u64,
        /// The TC round, if any.
        tc_round: Option<u64>,
    },
    /// A block's round does not exceed its parent's.
    #[error("block round {round} does not exceed parent round {parent_round}")]
    RoundNotAfterParent {
        /// Block round.
        round: u64,
        /// Parent round.
        parent_round: u64,
    },
    /// A block's height is not its parent's plus one.
    #[error("block height {got}, expected {expected}")]
    WrongHeight {
        /// Height in the block.
        got: u64,
        /// Parent height + 1.
        expected: u64,
    },
    /// A block's `parent_info` is not the hash of its parent's block info.
    #[error("block names parent info {got}, the parent's is {expected}")]
    WrongParentInfo {
        /// Named in the block.
        got: Digest,
        /// Hash of the parent's info.
        expected: Digest,
    },
    /// Block time is not after the parent's.
    #[error("timestamp {got} ms is not after the parent's {parent} ms")]
    TimestampNotAfterParent {
        /// Block time.
        got: u64,
        /// Parent block time.
        parent: u64,
    },
    /// Block time too far ahead of this replica's clock.
    #[error("timestamp {got} ms is more than {max_drift} ms after now ({now} ms)")]
    TimestampInFuture {
        /// Block time.
        got: u64,
        /// This replica's `now`.
        now: u64,
        /// Allowed drift.
        max_drift: u64,
    },
    /// The payload exceeds the configured cap.
    #[error("payload of {got} bytes exceeds the {cap}-byte cap")]
    PayloadTooLarge {
        /// Payload size.
        got: usize,
        /// The cap.
        cap: usize,
    },
    /// A block after an uncommitted epoch-ending block carries a payload or
    /// changes the state (reconfiguration suffix rule).
    #[error("block {0} follows an epoch-ending block but is not an empty suffix block")]
    BadSuffixBlock(Digest),
    /// Re-execution does not reproduce the block's claimed result.
    #[error("block {block}: {field} differs from re-execution")]
    ExecutionMismatch {
        /// The block.
        block: Digest,
        /// Which field differs (`state_root`, `tx_root`, `next_validators`).
        field: &'static str,
    },
    /// The executor refused the payload.
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    /// A vote's commit or data does not match what this replica computes.
    #[error("vote for block {0} signs inconsistent ledger info")]
    InconsistentVote(Digest),
    /// A sync response that does not chain to what was asked for.
    #[error("sync response refused: {0}")]
    BadSyncResponse(&'static str),
    /// A sync response nobody asked for.
    #[error("unsolicited sync response from {0}")]
    UnsolicitedResponse(PublicKey),
    /// The payload handed in is for a round this replica does not lead now.
    #[error("no proposal is due for round {round} (current round {current})")]
    NoProposalDue {
        /// Round of the payload.
        round: u64,
        /// Current round.
        current: u64,
    },
    /// The executor's committed block is not the replica's root.
    #[error("executor is at block {executor}, the consensus root is {root}")]
    ExecutorMismatch {
        /// Executor's committed block.
        executor: Digest,
        /// Consensus root.
        root: Digest,
    },
    /// Recovery data that does not fit together.
    #[error("invalid recovery data: {0}")]
    InvalidRecovery(&'static str),
    /// The replica stopped after a failure it must not carry on past (see
    /// [`super::Output::Halt`]); it refuses every input from then on.
    #[error("replica halted: {0}")]
    Halted(String),
}

impl ConsensusError {
    /// The variant's name (`"StaleRound"`, `"Equivocation"`, ...): a stable,
    /// low-cardinality label for counting refusals by reason.
    pub fn kind(&self) -> String {
        let text = format!("{self:?}");
        text.split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_the_variant_name() {
        let stale = ConsensusError::StaleRound { got: 1, current: 2 };
        assert_eq!(stale.kind(), "StaleRound");
        let unknown = ConsensusError::NotAValidator(PublicKey([1; 32]));
        assert_eq!(unknown.kind(), "NotAValidator");
        assert_eq!(ConsensusError::Halted("disk".into()).kind(), "Halted");
    }
}
