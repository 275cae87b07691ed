//! Votes, QCs, timeouts and TCs: collecting, verifying and advancing rounds
//! (Jolteon §4: a QC or TC of round r moves a replica to round r + 1; f + 1
//! timeouts of the current round make an honest replica time out too).

use std::collections::{BTreeMap, HashMap};

use palisade_crypto::{hash_encoded, Digest, Domain, LedgerInfo, PublicKey, Signature};
use tracing::debug;

use super::{Output, Replica};
use crate::executor::Executor;
use crate::hotstuff::mutation::{active, Mutation};
use crate::hotstuff::types::timeout_digest;
use crate::hotstuff::{
    ConsensusError, Message, QuorumCert, SyncInfo, Timeout, TimeoutCert, Vote, VoteData,
};

/// Bound on certificates remembered as verified.
const VERIFIED_CACHE: usize = 4096;
/// Bound on QCs waiting for their block.
const PENDING_QCS: usize = 256;

#[derive(Debug, Clone)]
struct PartialQc {
    vote_data: VoteData,
    ledger_info: LedgerInfo,
    signatures: Vec<(PublicKey, Signature)>,
    power: u64,
}

#[derive(Debug, Default)]
struct RoundVotes {
    /// Each voter's first vote (ledger-info digest) in the round.
    voters: HashMap<PublicKey, Digest>,
    by_digest: HashMap<Digest, PartialQc>,
    done: bool,
}

/// Votes per round, first vote per voter wins (a second, different vote of
/// the same voter in a round is equivocation and is not counted).
#[derive(Debug, Default)]
pub(crate) struct VoteCollector {
    rounds: BTreeMap<u64, RoundVotes>,
}

impl VoteCollector {
    /// Count `vote`; a QC once `quorum` power signed one digest. A second,
    /// different vote of a voter in the round is refused as equivocation.
    fn add(
        &mut self,
        voter: PublicKey,
        power: u64,
        vote: Vote,
        quorum: u64,
    ) -> Result<Option<QuorumCert>, ConsensusError> {
        let number = vote.vote_data.round;
        let digest = vote.ledger_info.digest();
        let round = self.rounds.entry(number).or_default();
        match round.voters.get(&voter) {
            Some(first) if *first != digest && !active(Mutation::VoteOnce) => {
                return Err(ConsensusError::Equivocation {
                    key: voter,
                    round: number,
                    kind: "vote",
                })
            }
            Some(_) => return Ok(None),
            None => {
                round.voters.insert(voter, digest);
            }
        }
        if round.done {
            return Ok(None);
        }
        let partial = round
            .by_digest
            .entry(vote.ledger_info.digest())
            .or_insert_with(|| PartialQc {
                vote_data: vote.vote_data.clone(),
                ledger_info: vote.ledger_info.clone(),
                signatures: Vec::new(),
                power: 0,
            });
        partial.signatures.push((voter, vote.signature));
        partial.power += power;
        if partial.power < quorum {
            return Ok(None);
        }
        round.done = true;
        Ok(Some(QuorumCert {
            vote_data: partial.vote_data.clone(),
            ledger_info: partial.ledger_info.clone(),
            signatures: partial.signatures.clone(),
        }))
    }

    pub(crate) fn prune_below(&mut self, round: u64) {
        self.rounds = self.rounds.split_off(&round);
    }
}

#[derive(Debug)]
struct RoundTimeouts {
    signatures: Vec<(PublicKey, u64, Signature)>,
    power: u64,
    high_qc: QuorumCert,
    done: bool,
}

/// Timeouts per round, one per signer.
#[derive(Debug, Default)]
pub(crate) struct TimeoutCollector {
    rounds: BTreeMap<u64, RoundTimeouts>,
}

impl TimeoutCollector {
    /// Add a timeout; returns the power gathered for its round.
    fn add(&mut self, signer: PublicKey, power: u64, t: &Timeout) -> u64 {
        let round = self.rounds.entry(t.round).or_insert_with(|| RoundTimeouts {
            signatures: Vec::new(),
            power: 0,
            high_qc: t.high_qc.clone(),
            done: false,
        });
        if round.signatures.iter().any(|(k, _, _)| *k == signer) {
            return round.power;
        }
        round
            .signatures
            .push((signer, t.high_qc.round(), t.signature));
        round.power += power;
        if t.high_qc.round() > round.high_qc.round() {
            round.high_qc = t.high_qc.clone();
        }
        round.power
    }

    /// The TC of `round`, once (the first time it is asked for).
    fn take_tc(&mut self, epoch: u64, round: u64) -> Option<TimeoutCert> {
        let r = self.rounds.get_mut(&round)?;
        if r.done {
            return None;
        }
        r.done = true;
        Some(TimeoutCert {
            epoch,
            round,
            high_qc: r.high_qc.clone(),
            signatures: r.signatures.clone(),
        })
    }

    pub(crate) fn prune_below(&mut self, round: u64) {
        self.rounds = self.rounds.split_off(&round);
    }
}

impl<E: Executor> Replica<E> {
    /// Verify a QC of the current epoch (unsigned only if it is our root's),
    /// remembering the verdict so each certificate is checked once.
    pub(super) fn verify_qc(&mut self, qc: &QuorumCert) -> Result<(), ConsensusError> {
        qc.check_shape(
            &self.config.chain_id,
            self.config.genesis_hash,
            self.validators.epoch,
        )?;
        if qc.is_root() {
            return if qc == self.tree.root_qc() {
                Ok(())
            } else {
                Err(ConsensusError::UnknownRootCertificate(qc.certified_id()))
            };
        }
        let key = hash_encoded(Domain::Message, qc);
        if self.verified.contains(&key) {
            return Ok(());
        }
        qc.verify_with(
            &self.config.chain_id,
            self.config.genesis_hash,
            &self.validators,
            &*self.verifier,
        )?;
        if self.verified.len() >= VERIFIED_CACHE {
            self.verified.clear();
        }
        self.verified.insert(key);
        Ok(())
    }

    pub(super) fn verify_tc(&mut self, tc: &TimeoutCert) -> Result<(), ConsensusError> {
        let chain_id = self.config.chain_id.clone();
        let set = self.validators.clone();
        let verifier = self.verifier.clone();
        let genesis_hash = self.config.genesis_hash;
        tc.verify(&chain_id, &genesis_hash, &set, &*verifier, |qc| {
            self.verify_qc(qc)
        })
    }

    /// Act on a verified QC: fetch its block if missing, else adopt it,
    /// commit what it commits and enter the next round.
    pub(super) fn process_qc(&mut self, from: PublicKey, qc: QuorumCert) {
        if qc.epoch() != self.validators.epoch {
            return;
        }
        let id = qc.certified_id();
        if !self.tree.contains(&id) {
            if qc.round() > self.tree.root_round() {
                self.request_block(from, id);
                if self.pending_qcs.len() >= PENDING_QCS {
                    self.pending_qcs.clear();
                }
                self.pending_qcs.insert(id, (from, qc));
            }
            return;
        }
        let commit = qc.commit_info().cloned();
        self.tree.insert_qc(qc.clone());
        if let Some(info) = commit {
            if info.height > self.tree.committed_height() {
                let epoch = self.validators.epoch;
                self.commit_to(&info, &qc);
                if self.validators.epoch != epoch {
                    return;
                }
            }
        }
        self.enter_round(qc.round() + 1);
        self.maybe_request_payload();
    }

    pub(super) fn process_tc(&mut self, tc: TimeoutCert) {
        if tc.epoch != self.validators.epoch {
            return;
        }
        let round = tc.round;
        if self.high_tc.as_ref().is_none_or(|h| h.round < round) {
            self.high_tc = Some(tc);
        }
        self.enter_round(round + 1);
        self.maybe_request_payload();
    }

    /// Enter `round` if it is ahead; drop what older rounds collected.
    pub(super) fn enter_round(&mut self, round: u64) -> bool {
        if !self
            .pacemaker
            .enter(round, self.now, self.tree.root_round())
        {
            return false;
        }
        debug!(me = %self.me.short(), round, "entered round");
        self.votes.prune_below(round.saturating_sub(1));
        self.timeouts.prune_below(round);
        self.maybe_request_payload();
        true
    }

    /// If this replica leads the current round and can justify a block, ask for a payload.
    pub(super) fn maybe_request_payload(&mut self) {
        let round = self.round();
        // A round this replica voted (or timed out) in is one it may
        // already have proposed in before a restart (a leader votes for its
        // own block). So is the round after it: a driver may send a proposal
        // before its block and its leader's vote are durable
        // (`SafetyState::no_proposal_after_restart_up_to`), and a crash then
        // loses both. A restarted replica starts with `proposed_round` at
        // that round, so the in-memory check below covers it (no
        // equivocation after a restart's amnesia).
        if self.payload_requested >= round
            || self.proposed_round >= round
            || self.safety.last_voted_round >= round
        {
            return;
        }
        if self.leader_of(round) != self.me {
            return;
        }
        let hqc = self.tree.high_qc();
        let by_qc = hqc.round() + 1 == round;
        let by_tc = self.high_tc.as_ref().is_some_and(|tc| {
            tc.round + 1 == round
                && (hqc.round() >= tc.high_qc_round() || active(Mutation::TcHighQc))
        });
        if !(by_qc || by_tc) {
            return;
        }
        let parent_id = hqc.certified_id();
        let Some(parent) = self.tree.parent_view(&parent_id) else {
            return;
        };
        self.payload_requested = round;
        self.emit(Output::NeedPayload {
            round,
            parent_id,
            height: parent.height + 1,
        });
    }

    pub(super) fn on_vote(&mut self, from: PublicKey, vote: Vote) -> Result<(), ConsensusError> {
        if let Err(e) = self.check_epoch(from, vote.vote_data.epoch) {
            self.keep_for_next_epoch(from, vote.vote_data.epoch, Message::Vote(vote));
            return Err(e);
        }
        let power = self
            .validators
            .power_of(&from)
            .ok_or(ConsensusError::NotAValidator(from))?;
        let as_qc = QuorumCert {
            vote_data: vote.vote_data.clone(),
            ledger_info: vote.ledger_info.clone(),
            signatures: vec![(from, vote.signature)],
        };
        as_qc
            .check_shape(
                &self.config.chain_id,
                self.config.genesis_hash,
                self.validators.epoch,
            )
            .map_err(|e| match e {
                ConsensusError::MalformedCertificate(_) => {
                    ConsensusError::InconsistentVote(vote.vote_data.block_id)
                }
                other => other,
            })?;
        let round = vote.vote_data.round;
        // Votes of the round just certified are late, not stale: the collector ignores them.
        if round.saturating_add(1) < self.round() {
            return Err(ConsensusError::StaleRound {
                got: round,
                current: self.round(),
            });
        }
        self.verifier
            .verify(&from, &vote.ledger_info.digest(), &vote.signature)?;
        let quorum = self.validators.quorum_power();
        if let Some(qc) = self.votes.add(from, power, vote, quorum)? {
            debug!(me = %self.me.short(), round, "formed QC");
            self.verified.insert(hash_encoded(Domain::Message, &qc));
            self.process_qc(from, qc);
        }
        Ok(())
    }

    pub(super) fn on_timeout(&mut self, from: PublicKey, t: Timeout) -> Result<(), ConsensusError> {
        self.check_epoch(from, t.epoch)?;
        if !self.is_member(&from) {
            return Err(ConsensusError::NotAValidator(from));
        }
        if t.high_qc.round() >= t.round {
            return Err(ConsensusError::MalformedCertificate(
                "timeout reports a QC not below its round",
            ));
        }
        self.verifier.verify(
            &from,
            &timeout_digest(
                &self.config.chain_id,
                &self.config.genesis_hash,
                t.epoch,
                t.round,
                t.high_qc.round(),
            ),
            &t.signature,
        )?;
        if t.round < self.round() {
            // A lagging peer: tell it what we know (its QC may even be from a
            // root we have long left, so it is not checked).
            self.send_sync_info(from);
            return Err(ConsensusError::StaleRound {
                got: t.round,
                current: self.round(),
            });
        }
        self.verify_qc(&t.high_qc)?;
        self.process_qc(from, t.high_qc.clone());
        self.add_timeout(from, t);
        Ok(())
    }

    fn add_timeout(&mut self, signer: PublicKey, t: Timeout) {
        let Some(power) = self.validators.power_of(&signer) else {
            return;
        };
        let round = t.round;
        let gathered = self.timeouts.add(signer, power, &t);
        // Bracha-style amplification: f + 1 timeouts mean an honest one timed out.
        if round == self.round()
            && gathered >= self.validators.validity_power()
            && self.safety.highest_timeout_round < round
        {
            if let Err(e) = self.local_timeout() {
                debug!(me = %self.me.short(), round, error = %e, "not joining the timeout");
            }
        }
        if gathered >= self.validators.quorum_power() && round >= self.round() {
            if let Some(tc) = self.timeouts.take_tc(self.validators.epoch, round) {
                debug!(me = %self.me.short(), round, "formed TC");
                self.process_tc(tc);
            }
        }
    }

    /// Time out the current round (safety rules permitting) and broadcast it.
    pub(super) fn local_timeout(&mut self) -> Result<(), ConsensusError> {
        let round = self.round();
        let high_qc = self.tree.high_qc().clone();
        let tc_round = self.high_tc.as_ref().map(|t| t.round);
        self.safety
            .check_timeout(round, high_qc.round(), tc_round)?;
        self.safety.record_timeout(round);
        self.persist_safety();
        let digest = timeout_digest(
            &self.config.chain_id,
            &self.config.genesis_hash,
            self.validators.epoch,
            round,
            high_qc.round(),
        );
        let timeout = Timeout {
            epoch: self.validators.epoch,
            round,
            high_qc,
            signature: self.sign(&digest),
        };
        debug!(me = %self.me.short(), round, "timing out");
        self.emit(Output::Broadcast(Message::Timeout(timeout.clone())));
        self.add_timeout(self.me, timeout);
        Ok(())
    }

    pub(super) fn on_sync_info(
        &mut self,
        from: PublicKey,
        s: SyncInfo,
    ) -> Result<(), ConsensusError> {
        self.check_epoch(from, s.high_qc.epoch())?;
        self.verify_qc(&s.high_qc)?;
        self.process_qc(from, s.high_qc);
        if let Some(commit) = s.high_commit {
            self.verify_qc(&commit)?;
            self.process_qc(from, commit);
        }
        if let Some(tc) = s.high_tc {
            self.verify_tc(&tc)?;
            self.process_qc(from, tc.high_qc.clone());
            self.process_tc(tc);
        }
        Ok(())
    }

    /// Tell a lagging peer what we know (once per peer and round).
    pub(super) fn send_sync_info(&mut self, to: PublicKey) {
        if to == self.me || self.sync_sent.get(&to) == Some(&self.round()) {
            return;
        }
        self.sync_sent.insert(to, self.round());
        let info = self.sync_info();
        self.emit(Output::Send {
            to,
            message: Message::SyncInfo(info),
        });
    }
}
