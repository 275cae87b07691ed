//! Safety rules (Jolteon §4 / Aptos `safety_rules_2chain`) and the state they
//! guard, which the shell persists before any vote or timeout leaves the node.
//!
//! - **Vote once per round**: vote only in a round above `last_voted_round`;
//!   signing a timeout for a round also counts as having voted in it, so a
//!   replica never votes in a round it gave up on.
//! - **2-chain locking rule**: vote for block B only if B extends the QC of
//!   the previous round (`round(B) = round(B.qc) + 1`), or B is justified by
//!   a TC of the previous round and B's QC is at least as high as every QC
//!   the TC's signers reported (`round(B) = round(TC) + 1` and
//!   `round(B.qc) >= max hqc(TC)`); and never extend a QC below the
//!   preferred round (highest 2-chain round seen).
//! - **Timeouts never go backwards**: sign a timeout only for a round at least
//!   the last voted round, reporting a QC at least as high as any QC used to
//!   vote (`one_chain_round`), right after a QC or TC of the previous round.

use borsh::{BorshDeserialize, BorshSerialize};

use super::mutation::{active, Mutation};
use super::{ConsensusError, QuorumCert, TimeoutCert, Vote};

/// What must be durable before a vote or timeout is sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct SafetyState {
    /// Epoch these rounds belong to (all reset at an epoch change).
    pub epoch: u64,
    /// Highest round voted or timed out in.
    pub last_voted_round: u64,
    /// Highest 2-chain round: the parent round of the highest QC voted on (the lock).
    pub preferred_round: u64,
    /// Highest QC round voted on or adopted.
    pub one_chain_round: u64,
    /// Highest round a timeout was signed for.
    pub highest_timeout_round: u64,
    /// The last vote signed, re-sent as is if asked to vote again in its round.
    pub last_vote: Option<Vote>,
    /// The highest TC this replica had when it last voted or timed out: the
    /// certificate that justified entering that round. Kept so that after a
    /// restart it can still show lagging peers why it is in that round;
    /// without it, replicas restarted in a round entered through a TC and
    /// peers that never saw the TC time out in different rounds, and no TC
    /// forms again (swarm seed 309452). Not a safety rule: liveness only.
    pub high_tc: Option<TimeoutCert>,
    /// The highest QC this replica had when it last voted or timed out, for
    /// the same reason: a QC lives only inside its child block, and a replica
    /// that entered its round through a QC whose child it never stored would
    /// come back unable to show it.
    pub high_qc: Option<QuorumCert>,
}

impl SafetyState {
    /// Fresh state for `epoch`.
    pub fn new(epoch: u64) -> Self {
        SafetyState {
            epoch,
            ..SafetyState::default()
        }
    }

    /// The highest round a replica restarted from this record does not
    /// propose in: the round after the last it voted or timed out in (none
    /// before its first vote or timeout in the epoch: a start from genesis
    /// or an epoch's start proposes at once). A shell may send a proposal
    /// for a round up to this one before the block and the leader's vote
    /// for it are durable, once this record is: a crash before they are
    /// leaves a restart that does not propose a second, different block in
    /// that round. The record must be the durable one, not the replica's
    /// in memory: a leader's vote for its own block is recorded there
    /// before the proposal reaches the shell.
    pub fn no_proposal_after_restart_up_to(&self) -> u64 {
        match self.last_voted_round.max(self.highest_timeout_round) {
            0 => 0,
            record => record.saturating_add(1),
        }
    }

    /// Raise the lock from a QC this replica relies on. Returns whether anything changed.
    pub(crate) fn observe_qc(&mut self, qc: &QuorumCert) -> bool {
        let mut changed = false;
        if qc.round() > self.one_chain_round {
            self.one_chain_round = qc.round();
            changed = true;
        }
        if !qc.is_root() && qc.vote_data.parent_round > self.preferred_round {
            self.preferred_round = qc.vote_data.parent_round;
            changed = true;
        }
        changed
    }

    /// May this replica vote for a block of `round` extending `qc`, justified
    /// by a TC of `(tc_round, tc_high_qc_round)` if any?
    pub(crate) fn check_vote(
        &self,
        round: u64,
        qc: &QuorumCert,
        tc: Option<(u64, u64)>,
    ) -> Result<(), ConsensusError> {
        if round <= self.last_voted_round && !active(Mutation::VoteOnce) {
            return Err(ConsensusError::AlreadyVoted {
                round,
                last_voted: self.last_voted_round,
            });
        }
        if qc.round() < self.preferred_round && !active(Mutation::Lock) {
            return Err(ConsensusError::BelowPreferredRound {
                qc_round: qc.round(),
                preferred: self.preferred_round,
            });
        }
        let extends_qc = round == qc.round() + 1;
        let justified_by_tc = matches!(tc, Some((tc_round, tc_hqc))
            if round == tc_round + 1 && (qc.round() >= tc_hqc || active(Mutation::TcHighQc)));
        if !(extends_qc || justified_by_tc) {
            return Err(ConsensusError::UnsafeVote {
                round,
                qc_round: qc.round(),
                tc_round: tc.map(|t| t.0),
                tc_high_qc_round: tc.map(|t| t.1),
            });
        }
        Ok(())
    }

    /// Record a vote (after [`SafetyState::check_vote`]).
    pub(crate) fn record_vote(&mut self, qc: &QuorumCert, vote: &Vote) {
        self.observe_qc(qc);
        self.last_voted_round = vote.vote_data.round;
        self.last_vote = Some(vote.clone());
    }

    /// May this replica sign a timeout for `round` reporting `qc_round`,
    /// having entered the round through a TC of `tc_round` if any?
    pub(crate) fn check_timeout(
        &self,
        round: u64,
        qc_round: u64,
        tc_round: Option<u64>,
    ) -> Result<(), ConsensusError> {
        if active(Mutation::Timeout) {
            return Ok(());
        }
        let highest = self.last_voted_round.max(self.highest_timeout_round);
        if round < highest {
            return Err(ConsensusError::TimeoutBackwards { round, highest });
        }
        if qc_round < self.one_chain_round {
            return Err(ConsensusError::TimeoutHidesQc {
                qc_round,
                one_chain_round: self.one_chain_round,
            });
        }
        // The round this replica last voted or timed out in was justified
        // then; timing out there again (after a restart that lost the
        // certificate that led there) is what lets a TC of that round form.
        if round != qc_round + 1 && Some(round) != tc_round.map(|t| t + 1) && round != highest {
            return Err(ConsensusError::TimeoutNotJustified {
                round,
                qc_round,
                tc_round,
            });
        }
        Ok(())
    }

    /// Record a timeout (after [`SafetyState::check_timeout`]): no vote in that round any more.
    pub(crate) fn record_timeout(&mut self, round: u64) {
        self.highest_timeout_round = self.highest_timeout_round.max(round);
        if round > self.last_voted_round && !active(Mutation::Timeout) {
            self.last_voted_round = round;
            self.last_vote = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use palisade_crypto::{Digest, LedgerInfo, Signature};

    use super::*;
    use crate::hotstuff::VoteData;

    fn qc(round: u64, parent_round: u64) -> QuorumCert {
        let vote_data = VoteData {
            epoch: 0,
            block_id: Digest([round as u8; 32]),
            round,
            height: round,
            parent_id: Digest([parent_round as u8; 32]),
            parent_round,
            info_hash: Digest::ZERO,
        };
        let ledger_info = LedgerInfo {
            chain_id: "t".into(),
            genesis_hash: Digest::ZERO,
            epoch: 0,
            commit: None,
            consensus_data_hash: vote_data.hash(),
        };
        let signer = palisade_crypto::SecretKey::from_seed([1; 32]).public();
        QuorumCert {
            vote_data,
            ledger_info,
            signatures: vec![(signer, Signature([0; 64]))],
        }
    }

    fn vote(round: u64) -> Vote {
        let q = qc(round, round - 1);
        Vote {
            vote_data: q.vote_data,
            ledger_info: q.ledger_info,
            signature: Signature([0; 64]),
        }
    }

    #[test]
    fn never_votes_twice_in_a_round() {
        let mut s = SafetyState::new(0);
        s.check_vote(5, &qc(4, 3), None).unwrap();
        s.record_vote(&qc(4, 3), &vote(5));
        assert_eq!(
            s.check_vote(5, &qc(4, 3), None),
            Err(ConsensusError::AlreadyVoted {
                round: 5,
                last_voted: 5
            })
        );
        assert!(matches!(
            s.check_vote(4, &qc(3, 2), None),
            Err(ConsensusError::AlreadyVoted { .. })
        ));
    }

    #[test]
    fn two_chain_locking_rule() {
        let s = SafetyState::new(0);
        // Not the successor of its QC and no TC: refused.
        assert!(matches!(
            s.check_vote(7, &qc(5, 4), None),
            Err(ConsensusError::UnsafeVote { .. })
        ));
        // TC of round 6 whose signers reported QC round 6 at best: a block
        // extending QC round 5 could fork a block certified in round 6.
        assert!(matches!(
            s.check_vote(7, &qc(5, 4), Some((6, 6))),
            Err(ConsensusError::UnsafeVote { .. })
        ));
        // A TC of another round does not justify it either.
        assert!(matches!(
            s.check_vote(7, &qc(5, 4), Some((5, 5))),
            Err(ConsensusError::UnsafeVote { .. })
        ));
        s.check_vote(7, &qc(6, 5), Some((6, 6))).unwrap();
        s.check_vote(7, &qc(5, 4), Some((6, 5))).unwrap();
        s.check_vote(6, &qc(5, 4), None).unwrap();
    }

    #[test]
    fn never_extends_below_the_preferred_round() {
        let mut s = SafetyState::new(0);
        s.record_vote(&qc(9, 8), &vote(10));
        assert_eq!(s.preferred_round, 8);
        assert_eq!(
            s.check_vote(12, &qc(7, 6), Some((11, 7))),
            Err(ConsensusError::BelowPreferredRound {
                qc_round: 7,
                preferred: 8
            })
        );
    }

    #[test]
    fn timeouts_never_go_backwards() {
        let mut s = SafetyState::new(0);
        s.check_timeout(8, 7, None).unwrap();
        s.record_timeout(8);
        // Same round again (re-broadcast) is fine, an older one is not.
        s.check_timeout(8, 7, None).unwrap();
        assert_eq!(
            s.check_timeout(7, 6, None),
            Err(ConsensusError::TimeoutBackwards {
                round: 7,
                highest: 8
            })
        );
        // Having timed out in round 8, no vote in round 8.
        assert!(matches!(
            s.check_vote(8, &qc(7, 6), None),
            Err(ConsensusError::AlreadyVoted { .. })
        ));
    }

    #[test]
    fn timeout_must_report_the_highest_qc_voted_on() {
        let mut s = SafetyState::new(0);
        s.record_vote(&qc(9, 8), &vote(10));
        assert_eq!(
            s.check_timeout(11, 8, Some(10)),
            Err(ConsensusError::TimeoutHidesQc {
                qc_round: 8,
                one_chain_round: 9
            })
        );
        s.check_timeout(11, 9, Some(10)).unwrap();
        assert!(matches!(
            s.check_timeout(12, 9, Some(10)),
            Err(ConsensusError::TimeoutNotJustified { .. })
        ));
    }

    #[test]
    fn a_timed_out_round_may_be_timed_out_again_after_losing_its_tc() {
        let mut s = SafetyState::new(0);
        s.check_timeout(8, 6, Some(7)).unwrap();
        s.record_timeout(8);
        // Restarted without the TC of round 7: round 8 is still its round.
        s.check_timeout(8, 6, None).unwrap();
        assert!(matches!(
            s.check_timeout(9, 6, None),
            Err(ConsensusError::TimeoutNotJustified { .. })
        ));
        // Likewise the round it last voted in, its QC lost with the restart.
        let mut s = SafetyState::new(0);
        s.record_vote(&qc(9, 8), &vote(10));
        s.check_timeout(10, 9, None).unwrap();
        assert!(matches!(
            s.check_timeout(11, 9, None),
            Err(ConsensusError::TimeoutNotJustified { .. })
        ));
    }
}
