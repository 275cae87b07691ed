//! The consensus driver: the I/O shell around the sans-IO [`Replica`].
//!
//! One task owns the replica and feeds it authenticated frames, timer
//! expiries (`now` from the system clock, passed in) and payloads from the
//! mempool, then carries out its outputs **in order**: safety records,
//! blocks, the state commit (written by the executor), the committed log,
//! the ledger index and its certificate are written without sync; the
//! messages are held back, and at the end of the outputs (or before a change
//! of peers) **one** sync makes every write durable, then the messages leave
//! in their order and waiters and watch streams are told. So nothing leaves
//! the node before the records it depends on are durable, with one fsync per
//! round instead of one per record.
//!
//! Two things do not wait for this node's sync, because a quorum already
//! makes them safe (`Driver::early_release`, `Driver::sends_before_sync`):
//! - a commit is announced, and its receipts served, as soon as its ledger
//!   entry is written, when the QC that committed it carries no vote of this
//!   node written since the last sync: each of its 2f + 1 signers persisted
//!   the committing child and its lock before signing, so the block is in
//!   every future chain and this node, recovering from any crash, commits it
//!   again at the same height with the same receipts (the client verifies
//!   the certificate, not this node's disk);
//! - this node's own proposal leaves at once when nothing safety-relevant of
//!   this node is unsynced (no safety record written since the last sync, no
//!   message held before it): its vote for the block, its timeouts and every
//!   other message still wait for the sync; and only for the round after
//!   the last this node voted or timed out in (durable), which a restarted
//!   replica never proposes in: a leader that crashes after sending and
//!   before syncing loses that round, and does not propose a second block
//!   for it.
//!
//! Leaders propose as soon as the mempool holds transactions (after
//! `consensus.proposal_delay_ms` to fill the block) or an uncommitted
//! ancestor carries some (only its descendants' QCs commit it). When the
//! nearest block with transactions is already committed here (typically the
//! grandparent, which the QC just formed here committed), the leader waits
//! up to `consensus.commit_linger_ms` for a transaction first: every replica
//! forms that QC from the broadcast votes, and a sequential client's next
//! write, sent on that commit, then rides in this block instead of waiting a
//! round for the next. An idle chain proposes empty blocks only every half
//! round timeout, so an idle node stays nearly idle. A proposal due at once
//! is made inside the drain whose outputs asked for it (typically: the QC
//! just formed here), so the commit that QC caused and the new block share
//! one sync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_consensus::executor::ExecutionError;
use palisade_consensus::hotstuff::{
    Block, CommitRequest, CommitResponse, CommittedBlock, ConsensusError, Message, Output,
    QuorumCert, Replica,
};
use palisade_consensus::state::{decode_payload, encode_payload, Params, RegistryExecutor};
use palisade_crypto::{decode_capped, encode, Digest, PublicKey, SignedTransaction};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::config::ConsensusConfig;
use crate::context::{Context, Progress, Wire, MAX_GOSSIP_TXS};
use crate::error::NodeError;
use crate::net::{Inbound, MAX_FRAME};
use crate::shutdown::Shutdown;
use crate::storage::NodeStore;

/// Blocks per sync response served from storage (the core's default batch).
const SYNC_BATCH: usize = 64;

/// Bound on proposals made inside one drain before its sync (a single
/// validator's own vote forms the next QC at once, so without a bound its
/// chain of immediate proposals would run until the ancestors are empty).
const MAX_PROPOSALS_PER_DRAIN: usize = 4;

/// Milliseconds since the Unix epoch: the `now` handed to the core.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct PayloadDue {
    round: u64,
    parent_id: Digest,
    asked_at: Instant,
}

/// What the driver remembers of blocks it accepted: parent and whether the
/// block carries transactions.
struct BlockMeta {
    height: u64,
    parent: Digest,
    nonempty: bool,
}

pub(crate) struct Driver {
    ctx: Arc<Context>,
    replica: Replica<RegistryExecutor<NodeStore>>,
    inbound: mpsc::Receiver<Inbound>,
    params: Params,
    config: ConsensusConfig,
    due: Option<PayloadDue>,
    blocks: HashMap<Digest, BlockMeta>,
    /// Uncommitted blocks on disk by height, to delete by id once committed
    /// past: scanning the column family on every commit walked the
    /// tombstones of every block deleted since the last compaction, and made
    /// an idle node after a write burst spend 2% of a core on it.
    pending_on_disk: BTreeMap<u64, Vec<Digest>>,
    timed_out_round: Option<u64>,
    retain_committed: usize,
    /// Heights whose ledger entry recovery rebuilt from stored blocks after
    /// a crash (oldest first): their commit QC died with the process, so the
    /// committed log (history, sync, audits) lacks them until the next commit
    /// batch, whose QC commits a descendant and proves them through the
    /// parent links.
    unlogged: Vec<(
        palisade_consensus::hotstuff::Block,
        palisade_crypto::BlockInfo,
    )>,
    /// A safety record (a vote or timeout of this node) was written since
    /// the last sync: a QC formed here may count that vote, so what it
    /// commits waits for the sync, and so does anything this node sends.
    safety_unsynced: bool,
    /// The highest round a restart from the last safety record written
    /// would not propose in (`SafetyState::no_proposal_after_restart_up_to`),
    /// durable when `safety_unsynced` is not set. Not the replica's record in
    /// memory: by the time the shell sees a proposal, the leader's vote for
    /// it is recorded there.
    no_proposal_after_restart_up_to: u64,
    /// This drain sent or announced something before its sync.
    woke_early: bool,
    /// Tests: where sent frames go instead of the network (`to`: `None`
    /// for a broadcast), in the order they leave.
    #[cfg(test)]
    sink: Option<Sink>,
    /// Tests: a broken release rule, to show the crash-point check catches it.
    #[cfg(test)]
    broken: Option<crash_points::Broken>,
}

/// Tests: a sink for sent frames (`to`: `None` for a broadcast).
#[cfg(test)]
type Sink = Box<dyn FnMut(Option<PublicKey>, Vec<u8>) + Send>;

/// Committed heights just below the ledger's top with a block info but no
/// committed-log entry (a crash between the state commit and the ledger
/// write), with their stored blocks, oldest first.
fn unlogged_heights(
    store: &crate::storage::NodeStore,
) -> Result<
    Vec<(
        palisade_consensus::hotstuff::Block,
        palisade_crypto::BlockInfo,
    )>,
    NodeError,
> {
    let mut out = Vec::new();
    let mut h = store.committed_height()?;
    while h > 0 && store.committed_block(h)?.is_none() {
        let Some(info) = store.block_info(h)? else {
            break;
        };
        let Some(block) = store.pending_block(&info.block_id)? else {
            break;
        };
        out.push((block, info));
        h -= 1;
    }
    out.reverse();
    Ok(out)
}

impl Driver {
    pub(crate) fn new(
        ctx: Arc<Context>,
        replica: Replica<RegistryExecutor<NodeStore>>,
        inbound: mpsc::Receiver<Inbound>,
        config: ConsensusConfig,
    ) -> Self {
        let params = replica.executor().params().clone();
        let retain_committed = config.retain_committed;
        // The replica was just recovered from the durable record.
        let no_proposal_after_restart_up_to = replica.safety().no_proposal_after_restart_up_to();
        let ctx_store = ctx.store.clone();
        // One scan at start: also catches blocks left by an earlier run.
        let mut pending_on_disk: BTreeMap<u64, Vec<Digest>> = BTreeMap::new();
        match ctx.store.pending_blocks() {
            Ok(blocks) => {
                for b in blocks {
                    pending_on_disk.entry(b.height).or_default().push(b.id());
                }
            }
            Err(e) => warn!(error = %e, "reading stored uncommitted blocks failed"),
        }
        Driver {
            ctx,
            replica,
            inbound,
            params,
            config,
            due: None,
            blocks: HashMap::new(),
            pending_on_disk,
            timed_out_round: None,
            retain_committed,
            unlogged: unlogged_heights(&ctx_store).unwrap_or_else(|e| {
                warn!(error = %e, "reading the committed log's tail failed");
                Vec::new()
            }),
            safety_unsynced: false,
            no_proposal_after_restart_up_to,
            woke_early: false,
            #[cfg(test)]
            sink: None,
            #[cfg(test)]
            broken: None,
        }
    }

    /// Run until shutdown or a storage failure (which stops the node: it
    /// must not vote on state it could not persist).
    pub(crate) async fn run(mut self, mut shutdown: Shutdown) -> Result<(), NodeError> {
        self.drain()?;
        loop {
            if self.proposal_due_now() {
                // Not through the select's timer: a zero sleep still waits
                // for the next tick of tokio's millisecond wheel.
                self.propose();
                self.drain()?;
                continue;
            }
            let sleep =
                Duration::from_millis(self.replica.next_deadline().saturating_sub(now_ms()));
            let payload_wait = self.payload_wait();
            tokio::select! {
                _ = shutdown.wait() => break,
                frame = self.inbound.recv() => match frame {
                    Some(frame) => self.on_frame(frame),
                    None => break,
                },
                _ = tokio::time::sleep(sleep) => {
                    if let Err(e) = self.replica.handle_timeout(now_ms()) {
                        debug!(error = %e, "timeout refused");
                    }
                }
                _ = tokio::time::sleep(payload_wait.unwrap_or_default()), if payload_wait.is_some() => {
                    self.propose();
                }
                _ = self.ctx.tx_ready.notified(), if self.due.is_some() => {}
            }
            self.drain()?;
        }
        info!("consensus driver stopped");
        Ok(())
    }

    fn on_frame(&mut self, frame: Inbound) {
        self.ctx.net.shared.release(&frame.from, frame.bytes.len());
        let wire: Wire = match decode_capped(&frame.bytes, MAX_FRAME) {
            Ok(w) => w,
            Err(e) => {
                self.ctx.metrics.frames_dropped.inc();
                debug!(from = %frame.from.short(), error = %e, "undecodable frame");
                return;
            }
        };
        match wire {
            Wire::Consensus(bytes) => {
                let message = match Message::decode(&bytes) {
                    Ok(m) => m,
                    Err(e) => {
                        self.ctx.metrics.frames_dropped.inc();
                        debug!(from = %frame.from.short(), error = %e, "undecodable consensus message");
                        return;
                    }
                };
                if let Message::CommitRequest(r) = &message {
                    if self.serve_old_commits(frame.from, r) {
                        return;
                    }
                }
                let (kind, round) = message_kind(&message);
                let started = Instant::now();
                let result = self.replica.handle_message(now_ms(), frame.from, message);
                debug!(from = %frame.from.short(), kind, round, handled_us = started.elapsed().as_micros() as u64, "consensus message handled");
                if let Err(e) = result {
                    self.ctx.metrics.refuse_consensus(&e);
                    debug!(from = %frame.from.short(), error = %e, "consensus message refused");
                }
            }
            Wire::Txs(txs) => {
                let ctx = self.ctx.clone();
                let txs: Vec<SignedTransaction> = txs.into_iter().take(MAX_GOSSIP_TXS).collect();
                debug!(from = %frame.from.short(), txs = txs.len(), "gossip received");
                // Verification is CPU work: off the driver's task.
                tokio::task::spawn_blocking(move || {
                    for tx in txs {
                        let _ = ctx.admit(tx, false);
                    }
                });
            }
            Wire::Silence(reports) => {
                let ctx = self.ctx.clone();
                let from = frame.from;
                tokio::task::spawn_blocking(move || {
                    crate::leases::Reporter::handle_frame(&ctx, from, reports)
                });
            }
        }
    }

    /// Answer a request for committed blocks older than the core's in-memory
    /// window from the committed log, exactly as the core answers newer ones
    /// (blocks of one epoch, oldest first, ending at a block the returned QC
    /// commits). Returns whether it answered.
    fn serve_old_commits(&self, from: PublicKey, r: &CommitRequest) -> bool {
        let committed = self.replica.committed().height;
        let window = (self.retain_committed as u64 / 2).max(1);
        if r.from_height == 0 || r.from_height + window > committed {
            return false;
        }
        match self.committed_from_log(r.from_height) {
            Ok(Some((blocks, commit_qc))) => {
                debug!(to = %from.short(), from_height = r.from_height, blocks = blocks.len(), "serving committed history from storage");
                let message = Message::CommitResponse(CommitResponse { blocks, commit_qc });
                self.ctx.net.send(from, wire(&message));
                true
            }
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "reading the committed log failed");
                false
            }
        }
    }

    fn committed_from_log(
        &self,
        height: u64,
    ) -> Result<Option<(Vec<Block>, QuorumCert)>, NodeError> {
        let Some(first) = self.ctx.store.committed_block(height)? else {
            return Ok(None);
        };
        let epoch = first.block.epoch;
        let mut blocks = Vec::new();
        let mut qc = None;
        let mut next = Some(first);
        let mut h = height;
        while let Some(c) = next {
            if c.block.epoch != epoch {
                break;
            }
            let commits_this =
                c.commit_qc.commit_info().map(|i| i.block_id) == Some(c.info.block_id);
            let ends_epoch = c.info.next_validators.is_some();
            blocks.push(c.block.clone());
            if commits_this {
                qc = Some(c.commit_qc.clone());
                if blocks.len() >= SYNC_BATCH || ends_epoch {
                    break;
                }
            }
            if blocks.len() >= 4 * SYNC_BATCH {
                break;
            }
            h += 1;
            next = self.ctx.store.committed_block(h)?;
        }
        let Some(qc) = qc else { return Ok(None) };
        let Some(last) = qc.commit_info().map(|i| i.height) else {
            return Ok(None);
        };
        blocks.retain(|b| b.height <= last);
        Ok(Some((blocks, qc)))
    }

    /// Why a block with transactions needs a child of the block `id`:
    /// [`Needs::Commit`] when `id` or an uncommitted ancestor carries some
    /// (only descendants' QCs commit it); [`Needs::Certificate`] when the
    /// nearest block in reach that does (`id` down to the first committed
    /// ancestor at depth two or more) is already committed here: typically
    /// the grandparent, committed by the QC on `id` that the proposal would
    /// carry and that every replica also forms from the broadcast votes
    /// (the core's `broadcast_votes`, on in the node); else [`Needs::Nothing`].
    fn child_needed(&self, mut id: Digest) -> Needs {
        let committed = self.replica.committed().height;
        let mut depth = 0;
        while let Some(meta) = self.blocks.get(&id) {
            if meta.nonempty {
                return if meta.height > committed {
                    Needs::Commit
                } else {
                    Needs::Certificate
                };
            }
            depth += 1;
            if meta.height <= committed && depth >= 2 {
                return Needs::Nothing;
            }
            id = meta.parent;
        }
        Needs::Nothing
    }

    fn payload_wait(&self) -> Option<Duration> {
        let due = self.due.as_ref()?;
        let pending = !self
            .ctx
            .mempool
            .lock()
            .expect("mempool lock poisoned")
            .is_empty();
        let idle = self.config.round_timeout_ms / 2;
        let wait = if pending {
            self.config.proposal_delay_ms
        } else {
            match self.child_needed(due.parent_id) {
                Needs::Commit => 0,
                // A sequential client's next write arrives just after its
                // commit: waiting for it here puts it in this block instead
                // of the one after.
                Needs::Certificate => self.config.commit_linger_ms.min(idle),
                Needs::Nothing => idle,
            }
        };
        Some((due.asked_at + Duration::from_millis(wait)).saturating_duration_since(Instant::now()))
    }

    /// Whether this node leads the current round and should propose now
    /// (no proposal delay left to wait).
    fn proposal_due_now(&self) -> bool {
        self.due
            .as_ref()
            .is_some_and(|d| d.round == self.replica.round())
            && self.payload_wait() == Some(Duration::ZERO)
    }

    fn propose(&mut self) {
        let Some(due) = self.due.take() else { return };
        let max_txs = self
            .config
            .max_block_txs
            .min(self.params.max_block_txs as usize);
        let ctx = self.ctx.clone();
        let mut txs = ctx
            .mempool
            .lock()
            .expect("mempool lock poisoned")
            .take_batch(max_txs, Instant::now(), |k| ctx.committed_next_sequence(k));
        // Keep the payload within the block bound (the frame cap is larger).
        let cap = (self.params.max_block_bytes as usize).min(MAX_FRAME / 2);
        let mut size = 4;
        let mut keep = 0;
        for tx in &txs {
            let len = encode(tx).len();
            if size + len > cap {
                break;
            }
            size += len;
            keep += 1;
        }
        txs.truncate(keep);
        // Transactions that became inadmissible since admission (e.g. their
        // signer was revoked in a block not yet committed) make the block
        // invalid: drop them from the pool and propose again without them.
        // Execution lists them all at once; bounded for safety.
        for _ in 0..4 {
            let n = txs.len();
            let started = Instant::now();
            match self
                .replica
                .handle_payload(now_ms(), due.round, encode_payload(&txs))
            {
                Ok(()) => {
                    debug!(
                        round = due.round,
                        txs = n,
                        waited_us = due.asked_at.elapsed().as_micros() as u64,
                        handled_us = started.elapsed().as_micros() as u64,
                        "proposed"
                    );
                    return;
                }
                Err(ConsensusError::Execution(ExecutionError::Inadmissible { tx_ids, reason })) => {
                    warn!(
                        round = due.round,
                        dropped = tx_ids.len(),
                        %reason,
                        "dropping inadmissible transactions from the proposal"
                    );
                    ctx.mempool
                        .lock()
                        .expect("mempool lock poisoned")
                        .set_aside(&tx_ids, Instant::now());
                    txs.retain(|t| !tx_ids.contains(&t.id()));
                }
                Err(e) => {
                    debug!(round = due.round, error = %e, "proposal refused");
                    return;
                }
            }
        }
    }

    /// One sync for everything written so far, then the held-back messages
    /// in order, then the commit notification.
    fn release(&mut self, held: &mut Vec<Held>, notify: &mut Option<u64>) -> Result<(), NodeError> {
        let started = Instant::now();
        if held.is_empty() && notify.is_none() && !self.safety_unsynced {
            // Nothing waits for these writes (a commit released early, a
            // block fetched): the next sync makes them durable with the
            // rest (the WAL is sequential). A replica's drain on the QC that
            // commits would otherwise block in this sync while the next
            // proposal waits in its queue.
            self.woke_early = false;
            return Ok(());
        }
        if std::mem::take(&mut self.woke_early) {
            // What this drain released before its sync (a proposal's send, a
            // receipt's waiter) runs on another worker meanwhile: without
            // handing this worker's queue over, the woken tasks wait in it
            // until the sync returns (measured: proposals reached the
            // replicas 0.27 ms after the leader's sync ended, as before).
            blocking(|| self.ctx.store.sync())?;
        } else {
            self.ctx.store.sync()?;
        }
        self.safety_unsynced = false;
        if !held.is_empty() || notify.is_some() {
            debug!(
                sync_us = started.elapsed().as_micros() as u64,
                messages = held.len(),
                commit = notify.unwrap_or(0),
                "synced, releasing"
            );
        }
        for h in held.drain(..) {
            self.send_now(h);
        }
        if let Some(top) = notify.take() {
            let _ = self.ctx.commits.send(top);
        }
        Ok(())
    }

    fn send_now(&mut self, h: Held) {
        #[cfg(test)]
        if let Some(sink) = self.sink.as_mut() {
            match h {
                Held::Send(to, bytes) => sink(Some(to), bytes),
                Held::Broadcast(bytes) => sink(None, bytes),
            }
            return;
        }
        match h {
            Held::Send(to, bytes) => self.ctx.net.send(to, bytes),
            Held::Broadcast(bytes) => self.ctx.net.broadcast(bytes),
        }
    }

    /// Whether a commit written now may be announced (and its receipts
    /// served) before this drain's sync: the QC that committed it may count
    /// a vote of this node only if that vote is durable, i.e. no safety
    /// record was written since the last sync (a QC formed from others'
    /// votes alone, or with a vote of ours synced in an earlier drain, has
    /// 2f + 1 signers that each persisted the committing child and its lock
    /// before signing).
    fn early_release(&self) -> bool {
        #[cfg(test)]
        if self.broken == Some(crash_points::Broken::IgnoreOwnVote) {
            return true;
        }
        !self.safety_unsynced
    }

    /// Whether a proposal of this node for `round` may leave before the
    /// drain's sync: nothing held before it (order kept), no safety record
    /// of this node unsynced (the QC or TC the proposal carries may count
    /// this node's vote or timeout, which must be durable before it
    /// leaves), and the durable record already keeps a restart from
    /// proposing in `round` again (a crash before the sync loses the block
    /// and the leader's vote for it; a restart that proposed another block
    /// in that round would equivocate).
    fn sends_before_sync(&self, held: &[Held], round: u64) -> bool {
        held.is_empty() && !self.safety_unsynced && round <= self.no_proposal_after_restart_up_to
    }

    /// A commit indexed (written, unsynced) at `top`: announce it now when a
    /// quorum already makes it durable, else after the sync.
    fn announce(&mut self, top: u64, notify: &mut Option<u64>) {
        if self.early_release() {
            debug!(height = top, "commit released before sync");
            self.ctx.store.release_ledger(top);
            let _ = self.ctx.commits.send(top);
            self.woke_early = true;
        } else {
            *notify = Some(top);
        }
    }

    /// Carry out the replica's outputs in order. When they make this node
    /// the leader of the next round with a proposal due at once (the QC just
    /// formed here), it proposes before the sync: the commit the QC caused,
    /// the new block and the leader's safety record become durable in one
    /// sync, and the proposal leaves without waiting for another turn of the
    /// loop (a timer tick) and a second sync.
    fn drain(&mut self) -> Result<(), NodeError> {
        let round_before = self.ctx.progress.borrow().round;
        let mut committed: Vec<CommittedBlock> = Vec::new();
        let mut held: Vec<Held> = Vec::new();
        let mut notify: Option<u64> = None;
        for pass in 0..=MAX_PROPOSALS_PER_DRAIN {
            self.carry_out(&mut committed, &mut held, &mut notify)?;
            if pass == MAX_PROPOSALS_PER_DRAIN || !self.proposal_due_now() {
                break;
            }
            self.propose();
        }
        self.release(&mut held, &mut notify)?;
        self.update_progress(round_before);
        Ok(())
    }

    /// One batch of the replica's outputs, in order: writes done (unsynced),
    /// messages held back, commits indexed.
    fn carry_out(
        &mut self,
        committed: &mut Vec<CommittedBlock>,
        held: &mut Vec<Held>,
        notify: &mut Option<u64>,
    ) -> Result<(), NodeError> {
        let outputs = self.replica.take_outputs();
        for out in outputs {
            if !matches!(out, Output::Committed(_)) && !committed.is_empty() {
                let top = self.on_committed(std::mem::take(committed))?;
                self.announce(top, notify);
            }
            match out {
                Output::PersistSafety(s) => {
                    self.ctx.store.put_safety_state(&s)?;
                    self.safety_unsynced = true;
                    self.no_proposal_after_restart_up_to = s.no_proposal_after_restart_up_to();
                }
                Output::PersistBlock(b) => {
                    self.ctx.store.put_pending_block(&b)?;
                    let id = b.id();
                    self.pending_on_disk.entry(b.height).or_default().push(id);
                    let ids: Vec<Digest> = decode_payload(&b.payload, &self.params)
                        .map(|txs| txs.iter().map(|t| t.id()).collect())
                        .unwrap_or_default();
                    self.ctx
                        .mempool
                        .lock()
                        .expect("mempool lock poisoned")
                        .mark_in_flight(&ids, Instant::now());
                    self.blocks.insert(
                        id,
                        BlockMeta {
                            height: b.height,
                            parent: b.parent_id(),
                            nonempty: !ids.is_empty(),
                        },
                    );
                }
                Output::Send { to, message } => held.push(Held::Send(to, wire(&message))),
                Output::Broadcast(message) => {
                    if let Message::Timeout(t) = &message {
                        self.ctx.metrics.timeouts.inc();
                        self.timed_out_round = Some(t.round);
                    }
                    let early = match &message {
                        Message::Proposal(p) => self.sends_before_sync(held, p.block.round),
                        _ => false,
                    };
                    if early {
                        debug!("proposal sent before sync");
                        self.send_now(Held::Broadcast(wire(&message)));
                        self.woke_early = true;
                    } else {
                        held.push(Held::Broadcast(wire(&message)));
                    }
                }
                Output::NeedPayload {
                    round, parent_id, ..
                } => {
                    self.due = Some(PayloadDue {
                        round,
                        parent_id,
                        asked_at: Instant::now(),
                    });
                }
                Output::Committed(c) => committed.push(c),
                Output::Halt { reason } => {
                    // The executor could not commit what the chain committed
                    // (its store failed): stop the node; a restart recovers.
                    return Err(NodeError::Consensus(format!("replica halted: {reason}")));
                }
                Output::NewEpoch(set) => {
                    // Messages of the old epoch go to the old peers.
                    self.release(held, notify)?;
                    info!(
                        epoch = set.epoch,
                        validators = set.validators.len(),
                        "new epoch"
                    );
                    // The network file again: nodes added to it since start
                    // (validators this epoch names, learners) are dialled.
                    let peers = match self.ctx.peer_source.resolve_peers(&self.ctx.key) {
                        Ok(peers) => peers,
                        Err(e) => {
                            warn!(error = %e, "network file unreadable at the epoch change; keeping the peers of start");
                            self.ctx.peers.clone()
                        }
                    };
                    self.ctx.net.set_peers(peers);
                    *self
                        .ctx
                        .validators
                        .write()
                        .expect("validators lock poisoned") = set;
                }
            }
        }
        if !committed.is_empty() {
            let top = self.on_committed(std::mem::take(committed))?;
            self.announce(top, notify);
        }
        #[cfg(test)]
        if self.broken == Some(crash_points::Broken::AtQc) {
            // A receipt promised for the block of the highest QC, before
            // its child is certified (a 1-chain commit).
            let qc = self.replica.sync_info().high_qc;
            if let Some(meta) = self.blocks.get(&qc.certified_id()) {
                self.ctx.store.release_ledger(meta.height);
            }
        }
        Ok(())
    }

    fn update_progress(&mut self, round_before: u64) {
        let round = self.replica.round();
        if round > round_before {
            let m = &self.ctx.metrics;
            m.rounds.inc_by(round - round_before);
            m.round.set(round as i64);
            if self.timed_out_round.is_some_and(|t| t + 1 == round) {
                m.view_changes.inc();
            }
        }
        if self.due.as_ref().is_some_and(|d| d.round < round) {
            self.due = None;
        }
        let progress = Progress {
            round,
            epoch: self.replica.epoch(),
            leader: Some(self.replica.leader_of(round)),
        };
        self.ctx.progress.send_if_modified(|p| {
            let changed = *p != progress;
            *p = progress;
            changed
        });
    }

    /// Index committed blocks (not synced: [`Driver::release`] syncs before
    /// anyone is told); returns the height to announce.
    fn on_committed(&mut self, blocks: Vec<CommittedBlock>) -> Result<u64, NodeError> {
        let store = &self.ctx.store;
        let linked = match (self.unlogged.last(), blocks.first()) {
            (Some((_, info)), Some(first)) => first.block.parent_id() == info.block_id,
            _ => false,
        };
        if linked {
            let qc = blocks
                .last()
                .expect("non-empty commit batch")
                .commit_qc
                .clone();
            let earlier: Vec<CommittedBlock> = std::mem::take(&mut self.unlogged)
                .into_iter()
                .map(|(block, info)| CommittedBlock {
                    block,
                    info,
                    commit_qc: qc.clone(),
                })
                .collect();
            info!(
                from = earlier[0].info.height,
                to = earlier[earlier.len() - 1].info.height,
                "committed log completed after a crash"
            );
            store.put_committed_blocks(&earlier)?;
        }
        store.put_committed_blocks(&blocks)?;
        let last = blocks.last().expect("non-empty commit batch");
        let top = last.info.height;
        let cert = last.certificate();
        let certified = last.certified_info().map(|i| i.height);
        let infos: Vec<_> = blocks.iter().map(|c| c.info.clone()).collect();
        store.commit_ledger(&infos, certified.filter(|h| *h <= top).map(|_| &cert))?;
        let mut ids = Vec::new();
        for c in &blocks {
            if let Some(record) = store.height_record(c.info.height)? {
                ids.extend(record.tx_ids);
            }
        }
        {
            let mut pool = self.ctx.mempool.lock().expect("mempool lock poisoned");
            pool.remove_committed(&ids);
            self.ctx.metrics.mempool_size.set(pool.len() as i64);
        }
        let above = self.pending_on_disk.split_off(&(top + 1));
        let done: Vec<Digest> = std::mem::replace(&mut self.pending_on_disk, above)
            .into_values()
            .flatten()
            .collect();
        if let Err(e) = store.delete_pending_blocks(&done) {
            warn!(error = %e, "pruning committed blocks failed");
        }
        // Keep the last two committed blocks: `child_needed` looks at them.
        self.blocks.retain(|_, m| m.height + 2 > top);
        self.ctx
            .metrics
            .committed(blocks.iter().map(|c| c.info.timestamp_ms), top);
        debug!(
            height = top,
            blocks = blocks.len(),
            txs = ids.len(),
            "committed"
        );
        Ok(top)
    }
}

/// Run `f` (a blocking fsync) letting the other tasks of this worker run
/// meanwhile on the multi-threaded runtime; elsewhere (tests on one thread,
/// no runtime) just run it.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Why a leader should propose a block on a parent ([`Driver::child_needed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// An uncommitted block carries transactions: propose at once.
    Commit,
    /// Only the certificate of a committed block would ride along: wait up
    /// to `consensus.commit_linger_ms` for transactions first.
    Certificate,
    /// Nothing: an idle chain's half round timeout.
    Nothing,
}

/// A message held back until the records it depends on are durable.
enum Held {
    Send(PublicKey, Vec<u8>),
    Broadcast(Vec<u8>),
}

/// A message's kind and round, for the logs.
fn message_kind(message: &Message) -> (&'static str, u64) {
    match message {
        Message::Proposal(p) => ("proposal", p.block.round),
        Message::Vote(v) => ("vote", v.vote_data.round),
        Message::Timeout(t) => ("timeout", t.round),
        Message::SyncInfo(_) => ("sync_info", 0),
        Message::BlockRequest(_) => ("block_request", 0),
        Message::BlockResponse(_) => ("block_response", 0),
        Message::CommitRequest(_) => ("commit_request", 0),
        Message::CommitResponse(_) => ("commit_response", 0),
    }
}

fn wire(message: &Message) -> Vec<u8> {
    encode(&Wire::Consensus(message.encode()))
}

/// Log a fatal driver error (the node stops).
pub(crate) fn report(result: Result<(), NodeError>) {
    if let Err(e) = result {
        error!(error = %e, "consensus driver failed; the node stops participating");
    }
}

#[cfg(test)]
mod crash_points;
