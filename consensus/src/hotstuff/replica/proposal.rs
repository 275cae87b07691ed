//! Proposals and voting: execute before vote (DiemBFT v4 §5).
//!
//! The leader executes its payload on top of its highest QC's block and
//! proposes the resulting roots; a voter checks the proposal (sender is the
//! round's leader, certificates verify, height, parent info, timestamp after
//! the parent's and at most `max_clock_drift_ms` after its `now`), re-executes,
//! compares every result, stores the block and only then consults the safety
//! rules. A vote commits the parent under the 2-chain rule when the rounds are
//! consecutive.

use palisade_crypto::{tx_root, Digest, LedgerInfo, PublicKey};
use tracing::debug;

use super::{Output, Replica};
use crate::executor::{ExecutionContext, Executor};
use crate::hotstuff::block_tree::TreeBlock;
use crate::hotstuff::mutation::{active, Mutation};
use crate::hotstuff::{Block, ConsensusError, Message, Proposal, Vote, VoteData};

/// Bound on proposals waiting for their parent.
const PENDING_PROPOSALS: usize = 64;

impl<E: Executor> Replica<E> {
    pub(super) fn on_proposal(
        &mut self,
        from: PublicKey,
        p: Proposal,
    ) -> Result<(), ConsensusError> {
        let block = &p.block;
        if let Err(e) = self.check_epoch(from, block.epoch) {
            self.keep_for_next_epoch(from, block.epoch, Message::Proposal(p));
            return Err(e);
        }
        if !self.is_member(&from) {
            return Err(ConsensusError::NotAValidator(from));
        }
        if block.proposer != from {
            return Err(ConsensusError::ProposerNotSender {
                sender: from,
                proposer: block.proposer,
            });
        }
        if block.payload.len() > self.config.max_payload_bytes {
            return Err(ConsensusError::PayloadTooLarge {
                got: block.payload.len(),
                cap: self.config.max_payload_bytes,
            });
        }
        if block.round <= block.parent_qc.round() {
            return Err(ConsensusError::RoundNotAfterParent {
                round: block.round,
                parent_round: block.parent_qc.round(),
            });
        }
        let id = block.id();
        self.verifier.verify(
            &from,
            &block.signing_digest_with_id(&self.config.chain_id, &id),
            &p.signature,
        )?;
        if block.round < self.round() {
            // A replayed or lagging proposal; a lagging peer needs our certificates.
            self.send_sync_info(from);
            return Err(ConsensusError::StaleRound {
                got: block.round,
                current: self.round(),
            });
        }
        self.verify_qc(&block.parent_qc)?;
        if let Some(tc) = &p.tc {
            self.verify_tc(tc)?;
        }
        // The certificates are valid: learn from them even if the block is refused.
        self.process_qc(from, block.parent_qc.clone());
        if let Some(tc) = &p.tc {
            self.process_qc(from, tc.high_qc.clone());
            self.process_tc(tc.clone());
        }
        if block.epoch != self.validators.epoch {
            return Ok(()); // its parent QC committed the end of the epoch
        }
        if block.round < self.round() {
            self.send_sync_info(from);
            return Err(ConsensusError::StaleRound {
                got: block.round,
                current: self.round(),
            });
        }
        let expected = self.leader_of(block.round);
        if expected != from {
            return Err(ConsensusError::WrongLeader {
                round: block.round,
                got: from,
                expected,
            });
        }
        if self.tree.contains(&id) {
            return Ok(());
        }
        let parent_id = block.parent_id();
        if self.tree.parent_view(&parent_id).is_none() {
            // process_qc asked for the parent; retry when it arrives.
            if self.pending_proposals.len() >= PENDING_PROPOSALS {
                self.pending_proposals.clear();
            }
            self.pending_proposals
                .entry(parent_id)
                .or_default()
                .push((from, p));
            return Ok(());
        }
        let tc = p.tc.as_ref().map(|tc| (tc.round, tc.high_qc_round()));
        let slot = (p.block.epoch, p.block.round);
        self.insert_block(p.block, id, true)?;
        // A second valid block of this round from its leader (signature
        // checked) is equivocation: refused here with the evidence named,
        // before the vote (which the safety rules would refuse anyway). An
        // invalid one got its own typed refusal above.
        let keep_from = (self.validators.epoch, self.round().saturating_sub(2));
        self.proposals_seen = self.proposals_seen.split_off(&keep_from);
        match self.proposals_seen.get(&slot) {
            Some(first) if *first != id && !active(Mutation::VoteOnce) => {
                return Err(ConsensusError::Equivocation {
                    key: from,
                    round: slot.1,
                    kind: "proposal",
                });
            }
            Some(_) => {}
            None => {
                self.proposals_seen.insert(slot, id);
            }
        }
        self.vote_for(&id, tc)
    }

    /// Validate `block` against its (known) parent, execute it, store it.
    /// `live` blocks (fresh proposals) must also not be ahead of our clock.
    pub(super) fn insert_block(
        &mut self,
        block: Block,
        id: Digest,
        live: bool,
    ) -> Result<(), ConsensusError> {
        let parent = self
            .tree
            .parent_view(&block.parent_id())
            .ok_or(ConsensusError::BadSyncResponse("parent block is unknown"))?;
        if block.epoch != self.validators.epoch {
            return Err(ConsensusError::WrongEpoch {
                got: block.epoch,
                current: self.validators.epoch,
            });
        }
        if block.round <= parent.round || block.parent_qc.round() != parent.round {
            return Err(ConsensusError::RoundNotAfterParent {
                round: block.round,
                parent_round: parent.round,
            });
        }
        if block.height != parent.height + 1 {
            return Err(ConsensusError::WrongHeight {
                got: block.height,
                expected: parent.height + 1,
            });
        }
        if block.parent_info != parent.info_hash {
            return Err(ConsensusError::WrongParentInfo {
                got: block.parent_info,
                expected: parent.info_hash,
            });
        }
        if block.parent_qc.vote_data.info_hash != parent.info_hash {
            return Err(ConsensusError::MalformedCertificate(
                "parent QC certifies another execution result than the parent's",
            ));
        }
        if block.timestamp_ms <= parent.timestamp_ms {
            return Err(ConsensusError::TimestampNotAfterParent {
                got: block.timestamp_ms,
                parent: parent.timestamp_ms,
            });
        }
        let max_drift = self.config.max_clock_drift_ms;
        if live && block.timestamp_ms > self.now.saturating_add(max_drift) {
            return Err(ConsensusError::TimestampInFuture {
                got: block.timestamp_ms,
                now: self.now,
                max_drift,
            });
        }
        let epoch_end = match parent.epoch_end {
            Some(end) => {
                // Reconfiguration suffix: nothing may happen after the epoch ended.
                if !block.payload.is_empty()
                    || block.state_root != parent.state_root
                    || block.tx_root != tx_root(&[])
                    || block.next_validators.is_some()
                {
                    return Err(ConsensusError::BadSuffixBlock(id));
                }
                Some(end)
            }
            None => {
                let ctx = ExecutionContext {
                    parent_id: parent.id,
                    block_id: id,
                    height: block.height,
                    epoch: block.epoch,
                    timestamp_ms: block.timestamp_ms,
                };
                let result = self.executor.execute(&ctx, &block.payload)?;
                let mismatch = |field| ConsensusError::ExecutionMismatch { block: id, field };
                if result.state_root != block.state_root && !active(Mutation::ExecRoot) {
                    return Err(mismatch("state_root"));
                }
                if result.tx_root != block.tx_root {
                    return Err(mismatch("tx_root"));
                }
                if result.next_validators != block.next_validators {
                    return Err(mismatch("next_validators"));
                }
                match &block.next_validators {
                    Some(next) => {
                        next.validate()?;
                        if next.epoch != block.epoch + 1 {
                            return Err(palisade_crypto::CertError::BadEpochChange {
                                got: next.epoch,
                                expected: block.epoch + 1,
                            }
                            .into());
                        }
                        Some(id)
                    }
                    None => None,
                }
            }
        };
        let info = block.info_with_id(id);
        self.emit(Output::PersistBlock(block.clone()));
        self.tree.insert(TreeBlock {
            block,
            id,
            info,
            epoch_end,
        });
        self.on_block_inserted(&id);
        Ok(())
    }

    /// Retry what waited for `id`.
    fn on_block_inserted(&mut self, id: &Digest) {
        if let Some((from, qc)) = self.pending_qcs.remove(id) {
            self.process_qc(from, qc);
        }
        if let Some(waiting) = self.pending_proposals.remove(id) {
            for (from, p) in waiting {
                if let Err(e) = self.on_proposal(from, p) {
                    debug!(me = %self.me.short(), error = %e, "pending proposal refused");
                }
            }
        }
    }

    /// Vote for a stored block of the current round, if the safety rules allow.
    fn vote_for(&mut self, id: &Digest, tc: Option<(u64, u64)>) -> Result<(), ConsensusError> {
        let Some(entry) = self.tree.get(id) else {
            return Ok(());
        };
        let block = entry.block.clone();
        let info_hash = entry.info.hash();
        if block.round != self.round() {
            return Ok(());
        }
        self.safety.check_vote(block.round, &block.parent_qc, tc)?;
        let parent_qc = &block.parent_qc;
        let commit = if block.round == parent_qc.round() + 1 && !parent_qc.is_root() {
            self.tree
                .commit_target(&block.parent_id())
                .filter(|info| info.height > self.tree.committed_height())
        } else {
            None
        };
        let vote_data = VoteData {
            epoch: block.epoch,
            block_id: *id,
            round: block.round,
            height: block.height,
            parent_id: block.parent_id(),
            parent_round: parent_qc.round(),
            info_hash,
        };
        let ledger_info = LedgerInfo {
            chain_id: self.config.chain_id.clone(),
            genesis_hash: self.config.genesis_hash,
            epoch: block.epoch,
            commit,
            consensus_data_hash: vote_data.hash(),
        };
        let vote = Vote {
            signature: self.sign(&ledger_info.digest()),
            vote_data,
            ledger_info,
        };
        self.safety.record_vote(parent_qc, &vote);
        self.persist_safety();
        debug!(me = %self.me.short(), round = block.round, "voting");
        // Broadcast: everyone aggregates. Linear: only the next leader does.
        let to = if self.config.broadcast_votes {
            None
        } else {
            Some(self.leader_of(block.round + 1))
        };
        match to {
            Some(next) if next != self.me => {
                self.emit(Output::Send {
                    to: next,
                    message: Message::Vote(vote),
                });
                Ok(())
            }
            Some(_) => self.on_vote(self.me, vote),
            None => {
                self.emit(Output::Broadcast(Message::Vote(vote.clone())));
                self.on_vote(self.me, vote)
            }
        }
    }

    /// Build, execute, sign and broadcast this round's block, then vote for it.
    pub(super) fn propose(&mut self, round: u64, payload: Vec<u8>) -> Result<(), ConsensusError> {
        let current = self.round();
        let not_due = ConsensusError::NoProposalDue { round, current };
        if round != current
            || self.proposed_round >= round
            || self.safety.last_voted_round >= round
            || self.leader_of(round) != self.me
        {
            return Err(not_due);
        }
        if payload.len() > self.config.max_payload_bytes {
            return Err(ConsensusError::PayloadTooLarge {
                got: payload.len(),
                cap: self.config.max_payload_bytes,
            });
        }
        let high_qc = self.tree.high_qc().clone();
        let tc = if high_qc.round() + 1 == round {
            None
        } else {
            match self.high_tc.clone() {
                Some(tc)
                    if tc.round + 1 == round
                        && (high_qc.round() >= tc.high_qc_round()
                            || active(Mutation::TcHighQc)) =>
                {
                    Some(tc)
                }
                _ => return Err(not_due),
            }
        };
        let parent = self
            .tree
            .parent_view(&high_qc.certified_id())
            .ok_or(not_due)?;
        let suffix = parent.epoch_end.is_some();
        let mut block = Block {
            epoch: self.validators.epoch,
            round,
            height: parent.height + 1,
            parent_qc: high_qc,
            // After an uncommitted epoch end, only empty blocks (the payload
            // stays in the shell's mempool).
            payload: if suffix { Vec::new() } else { payload },
            proposer: self.me,
            timestamp_ms: self.now.max(parent.timestamp_ms + 1),
            state_root: parent.state_root,
            tx_root: tx_root(&[]),
            next_validators: None,
            parent_info: parent.info_hash,
        };
        let id = block.id();
        if !suffix {
            let ctx = ExecutionContext {
                parent_id: parent.id,
                block_id: id,
                height: block.height,
                epoch: block.epoch,
                timestamp_ms: block.timestamp_ms,
            };
            let result = self.executor.execute(&ctx, &block.payload)?;
            block.state_root = result.state_root;
            block.tx_root = result.tx_root;
            block.next_validators = result.next_validators;
        }
        self.proposed_round = round;
        let proposal = Proposal {
            signature: self.sign(&block.signing_digest_with_id(&self.config.chain_id, &id)),
            block,
            tc,
        };
        debug!(me = %self.me.short(), round, "proposing");
        self.emit(Output::Broadcast(Message::Proposal(proposal.clone())));
        self.on_proposal(self.me, proposal)
    }
}
