//! Committing (2-chain rule, Jolteon §4) and epoch changes.
//!
//! A QC whose ledger info commits block B makes B and its uncommitted
//! ancestors final: the executor commits them, the shell gets them in height
//! order with the QC as their commit certificate, leader reputation records
//! them. If B ended the epoch (its execution named the next validator set),
//! the epoch changes: the next set signs from round 1 of the new epoch on top
//! of B, certificates of the retired set are refused from then on, and the
//! reconfiguration-suffix blocks after B are dropped.

use palisade_crypto::{BlockInfo, ValidatorSet};
use tracing::{debug, info, warn};

use super::{Output, Replica};
use crate::executor::Executor;
use crate::hotstuff::leader::CommitRecord;
use crate::hotstuff::{Block, Message, QuorumCert, SafetyState};

/// Rounds skipped before a committed block whose leaders are recorded as failed.
const MAX_FAILED_ROUNDS: u64 = 16;

impl<E: Executor> Replica<E> {
    /// Record what a committed block shows: its proposer and the signers of
    /// its parent QC were alive; the leaders of the rounds it skipped (between
    /// its parent QC and its own round) failed. All replicas commit the same
    /// blocks in the same order, so they record the same history.
    pub(super) fn record_commit(&mut self, block: &Block) {
        let skipped = block.parent_qc.round() + 1..block.round;
        let failed = skipped
            .rev()
            .take(MAX_FAILED_ROUNDS as usize)
            .map(|r| (r, self.leaders.leader(&self.validators, r)))
            .collect();
        self.leaders.record(CommitRecord {
            round: block.round,
            proposer: block.proposer,
            voters: block.parent_qc.signatures.iter().map(|(k, _)| *k).collect(),
            voted_round: block.parent_qc.round(),
            failed,
        });
    }

    /// Commit up to `info` (a block in the tree) with `qc`.
    pub(super) fn commit_to(&mut self, info: &BlockInfo, qc: &QuorumCert) {
        match self.tree.get(&info.block_id) {
            Some(b) if b.info == *info => {}
            Some(_) => {
                warn!(me = %self.me.short(), block = %info.block_id, "QC commits a block info this replica computes differently");
                return;
            }
            None => return,
        }
        let committed = self.tree.commit(&info.block_id, qc);
        if committed.is_empty() {
            return;
        }
        if let Err(e) = self.executor.commit(&info.block_id) {
            // The executor executed every block of the path, so this is its
            // store failing (or a bug in it): the chain committed the block,
            // this replica's state did not. Stop rather than vote or serve on
            // the wrong state; none of these blocks is reported committed.
            self.halt(format!(
                "executor could not commit height {}: {e}",
                info.height
            ));
            return;
        }
        info!(me = %self.me.short(), height = info.height, round = info.round, "committed");
        for c in committed {
            self.record_commit(&c.block);
            self.emit(Output::Committed(c));
        }
        if let Some(next) = info.next_validators.clone() {
            // Whoever formed or saw this QC first would otherwise leave the
            // epoch without anyone else learning it: hand it to everyone.
            let last_words = Message::SyncInfo(self.sync_info());
            self.emit(Output::Broadcast(last_words));
            self.start_epoch(next);
        }
    }

    /// Switch to the next epoch on top of the committed root.
    fn start_epoch(&mut self, next: ValidatorSet) {
        let root = self.tree.root_info().clone();
        let root_qc = QuorumCert::root(
            &self.config.chain_id,
            self.config.genesis_hash,
            next.epoch,
            &root,
            0,
        );
        info!(me = %self.me.short(), epoch = next.epoch, "new epoch");
        self.tree.reset_epoch(root, root_qc);
        self.validators = next.clone();
        self.safety = SafetyState::new(next.epoch);
        self.persist_safety();
        self.leaders.reset();
        self.votes = Default::default();
        self.timeouts = Default::default();
        self.high_tc = None;
        self.proposed_round = 0;
        self.payload_requested = 0;
        self.pending_proposals.clear();
        self.pending_qcs.clear();
        self.block_requests.clear();
        self.verified.clear();
        self.emit(Output::NewEpoch(next));
        self.pacemaker.reset();
        self.enter_round(1);
        // What the replicas that got here first already sent.
        for (from, message) in std::mem::take(&mut self.next_epoch) {
            if let Err(e) = self.handle_message(self.now, from, message) {
                debug!(me = %self.me.short(), error = %e, "kept next-epoch message refused");
            }
        }
    }
}
