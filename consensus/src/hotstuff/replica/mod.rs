//! The replica: one validator's consensus state machine, sans-IO.
//!
//! Inputs are [`Replica::handle_message`], [`Replica::handle_timeout`] and
//! [`Replica::handle_payload`]; each appends [`Output`]s that the shell takes
//! with [`Replica::take_outputs`] and must carry out **in order** (see the
//! module docs of [`crate::hotstuff`] for the persistence contract).

mod certs;
mod commit;
mod proposal;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{BlockInfo, CommitCertificate, Digest, PublicKey, SecretKey, ValidatorSet};
use tracing::debug;

use super::{
    block_tree::BlockTree, leader::LeaderElection, pacemaker::Pacemaker, Block, Config,
    ConsensusError, Message, Proposal, QuorumCert, SafetyState, SignatureVerifier, StrictVerifier,
    SyncInfo, TimeoutCert,
};
use crate::executor::Executor;
use certs::{TimeoutCollector, VoteCollector};

/// Proposals and votes of the next epoch kept until this replica gets there.
const NEXT_EPOCH_MESSAGES: usize = 32;

/// Something the shell must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Durably store (overwrite) the safety state. It must be on disk before
    /// any later `Send`/`Broadcast` output leaves the node.
    PersistSafety(SafetyState),
    /// Store an uncommitted block (restart recovery). Durable before any later send.
    PersistBlock(Block),
    /// Send to one validator.
    Send {
        /// Recipient (a validator key).
        to: PublicKey,
        /// The message.
        message: Message,
    },
    /// Send to every validator of the current epoch but this node.
    Broadcast(Message),
    /// This replica leads `round`: hand a payload to [`Replica::handle_payload`].
    NeedPayload {
        /// The round to propose in.
        round: u64,
        /// Block the proposal will extend.
        parent_id: Digest,
        /// Height of the proposed block.
        height: u64,
    },
    /// A block committed (heights strictly increase across outputs).
    Committed(CommittedBlock),
    /// A committed block ended the epoch; these validators run the next one.
    NewEpoch(ValidatorSet),
    /// The executor failed to commit a block the chain committed (e.g. its
    /// store failed). The replica stops: going on would vote and serve on
    /// state that is not what the chain committed. The shell stops the node;
    /// a restart recovers from what was persisted and re-executes the rest.
    Halt {
        /// Why.
        reason: String,
    },
}

/// A committed block with the QC that committed it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommittedBlock {
    /// The block.
    pub block: Block,
    /// Its client-visible info.
    pub info: BlockInfo,
    /// A QC whose ledger info commits this block or a descendant (2-chain rule).
    pub commit_qc: QuorumCert,
}

impl CommittedBlock {
    /// The commit certificate: it commits [`CommittedBlock::certified_info`],
    /// which is `info` or a descendant chained back to it by `parent_info`.
    pub fn certificate(&self) -> CommitCertificate {
        CommitCertificate {
            ledger_info: self.commit_qc.ledger_info.clone(),
            signatures: self.commit_qc.signatures.clone(),
        }
    }

    /// The block the certificate names.
    pub fn certified_info(&self) -> Option<&BlockInfo> {
        self.commit_qc.commit_info()
    }
}

/// What a restarting replica was given back by its storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The last persisted safety state.
    pub safety: SafetyState,
    /// The committed root: genesis info, or the last committed block's info.
    pub root: BlockInfo,
    /// The QC certifying the root, if stored (else an unsigned local root certificate is used).
    pub root_qc: Option<QuorumCert>,
    /// Validators of the current epoch (the root's, or the next set if the root ended its epoch).
    pub validators: ValidatorSet,
    /// Recently committed blocks, oldest first, ending at the root (may be empty).
    pub committed: Vec<CommittedBlock>,
    /// Persisted uncommitted blocks, any order; those not extending the root are ignored.
    pub blocks: Vec<Block>,
}

/// One validator's consensus core.
#[derive(Debug)]
pub struct Replica<E: Executor> {
    config: Config,
    key: SecretKey,
    me: PublicKey,
    validators: ValidatorSet,
    executor: E,
    safety: SafetyState,
    tree: BlockTree,
    pacemaker: Pacemaker,
    leaders: LeaderElection,
    votes: VoteCollector,
    timeouts: TimeoutCollector,
    high_tc: Option<TimeoutCert>,
    proposed_round: u64,
    payload_requested: u64,
    /// The first proposal (id) seen per recent (epoch, round), to catch a
    /// leader proposing twice.
    proposals_seen: BTreeMap<(u64, u64), Digest>,
    pending_proposals: HashMap<Digest, Vec<(PublicKey, Proposal)>>,
    pending_qcs: HashMap<Digest, (PublicKey, QuorumCert)>,
    next_epoch: Vec<(PublicKey, Message)>,
    block_requests: HashSet<Digest>,
    commit_request: Option<(PublicKey, u64)>,
    sync_sent: HashMap<PublicKey, u64>,
    verified: HashSet<Digest>,
    verifier: Arc<dyn SignatureVerifier>,
    outputs: Vec<Output>,
    now: u64,
    halted: Option<String>,
}

impl<E: Executor> Replica<E> {
    /// A replica at genesis: `genesis` is the root block info (its `block_id`
    /// must be the executor's committed block), `validators` the genesis set.
    pub fn genesis(
        config: Config,
        key: SecretKey,
        executor: E,
        genesis: BlockInfo,
        validators: ValidatorSet,
        now: u64,
    ) -> Result<Self, ConsensusError> {
        let recovery = Recovery {
            safety: SafetyState::new(validators.epoch),
            root: genesis,
            root_qc: None,
            validators,
            committed: Vec::new(),
            blocks: Vec::new(),
        };
        Self::recover(config, key, executor, recovery, now)
    }

    /// A replica restarted from persisted state. Persisted blocks are
    /// re-executed; the executor must be at the committed root.
    pub fn recover(
        config: Config,
        key: SecretKey,
        executor: E,
        recovery: Recovery,
        now: u64,
    ) -> Result<Self, ConsensusError> {
        let Recovery {
            safety,
            root,
            root_qc,
            validators,
            committed,
            blocks,
        } = recovery;
        validators.validate()?;
        let (exec_id, exec_root) = executor.committed();
        if exec_id != root.block_id || exec_root != root.state_root {
            return Err(ConsensusError::ExecutorMismatch {
                executor: exec_id,
                root: root.block_id,
            });
        }
        let epoch = validators.epoch;
        let epoch_starts_here = root.height == 0 || root.next_validators.is_some();
        let root_qc = match root_qc {
            Some(qc) if !epoch_starts_here && qc.certified_id() == root.block_id => {
                qc.verify(&config.chain_id, config.genesis_hash, &validators)?;
                qc
            }
            _ if epoch_starts_here => {
                QuorumCert::root(&config.chain_id, config.genesis_hash, epoch, &root, 0)
            }
            _ => QuorumCert::root(
                &config.chain_id,
                config.genesis_hash,
                epoch,
                &root,
                root.round,
            ),
        };
        let safety = if safety.epoch == epoch {
            safety
        } else if safety.epoch < epoch {
            SafetyState::new(epoch)
        } else {
            return Err(ConsensusError::InvalidRecovery(
                "safety state is of a later epoch than the validators",
            ));
        };
        // The proposal of the round after the record may have left before
        // the crash, its block and this replica's vote for it lost
        // (`SafetyState::no_proposal_after_restart_up_to`): never propose up
        // to there again (at most that one round lost per restart).
        let proposed_round = safety.no_proposal_after_restart_up_to();
        let me = key.public();
        let mut replica = Replica {
            tree: BlockTree::new(root, root_qc, config.retain_committed),
            pacemaker: Pacemaker::new(&config),
            leaders: LeaderElection::new(config.reputation_window, config.reputation_lag),
            votes: VoteCollector::default(),
            timeouts: TimeoutCollector::default(),
            high_tc: None,
            proposed_round,
            payload_requested: 0,
            proposals_seen: BTreeMap::new(),
            pending_proposals: HashMap::new(),
            pending_qcs: HashMap::new(),
            next_epoch: Vec::new(),
            block_requests: HashSet::new(),
            commit_request: None,
            sync_sent: HashMap::new(),
            verified: HashSet::new(),
            verifier: Arc::new(StrictVerifier),
            outputs: Vec::new(),
            halted: None,
            config,
            key,
            me,
            validators,
            executor,
            safety,
            now,
        };
        replica.tree.restore_committed(&committed);
        // The QC that committed the root, kept with the committed log: without
        // it a restarted replica shows peers only the root's own QC, and a
        // peer that never saw the commit QC stays a commit behind, electing
        // other leaders from its shorter history, for good (swarm seed 323593).
        if let Some(last) = committed.last() {
            let qc = &last.commit_qc;
            if last.info == *replica.tree.root_info()
                && qc.epoch() == epoch
                && replica.verify_qc(qc).is_ok()
            {
                replica.tree.restore_high_commit(qc.clone());
            }
        }
        for c in committed.iter().filter(|c| c.block.epoch == epoch) {
            replica.record_commit(&c.block);
        }
        let mut blocks = blocks;
        blocks.sort_by_key(|b| b.height);
        for block in blocks {
            let id = block.id();
            if block.epoch == epoch && replica.tree.parent_view(&block.parent_id()).is_some() {
                // A stored block that no longer executes is dropped; peers resend what matters.
                if let Err(e) = replica.insert_block(block, id, false) {
                    debug!(%id, error = %e, "dropping a persisted block");
                }
            }
        }
        // The QC and TC kept with the safety record, if they still verify,
        // show lagging peers why this replica is in its round (sync info).
        if let Some(qc) = replica.safety.high_qc.clone() {
            let usable = qc.epoch() == epoch
                && replica.tree.contains(&qc.certified_id())
                && replica.verify_qc(&qc).is_ok();
            if usable {
                let me = replica.me;
                replica.process_qc(me, qc);
            } else {
                replica.safety.high_qc = None;
            }
        }
        if let Some(tc) = replica.safety.high_tc.clone() {
            if tc.epoch == epoch && replica.verify_tc(&tc).is_ok() {
                replica.high_tc = Some(tc);
            } else {
                replica.safety.high_tc = None;
            }
        }
        // Resume in the round last voted or timed out in if that is later:
        // the QC that led there is not persisted, and below it every
        // timeout would be refused as going backwards (no TC could form).
        let record = replica
            .safety
            .last_voted_round
            .max(replica.safety.highest_timeout_round);
        let by_tc = replica.high_tc.as_ref().map_or(0, |tc| tc.round + 1);
        let start = (replica.tree.high_qc().round() + 1).max(record).max(by_tc);
        replica.enter_round(start);
        replica.pacemaker.rearm(now, replica.tree.root_round());
        Ok(replica)
    }

    /// Check signatures through `verifier` from now on (default: [`StrictVerifier`]).
    pub fn with_verifier(mut self, verifier: Arc<dyn SignatureVerifier>) -> Self {
        self.verifier = verifier;
        self
    }

    /// Take the outputs produced so far, oldest first.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Handle a message from the authenticated peer `from` at time `now` (ms).
    pub fn handle_message(
        &mut self,
        now: u64,
        from: PublicKey,
        message: Message,
    ) -> Result<(), ConsensusError> {
        self.check_running()?;
        self.now = self.now.max(now);
        match message {
            Message::Proposal(p) => self.on_proposal(from, p),
            Message::Vote(v) => self.on_vote(from, v),
            Message::Timeout(t) => self.on_timeout(from, t),
            Message::SyncInfo(s) => self.on_sync_info(from, s),
            Message::BlockRequest(r) => self.on_block_request(from, r),
            Message::BlockResponse(r) => self.on_block_response(from, r),
            Message::CommitRequest(r) => self.on_commit_request(from, r),
            Message::CommitResponse(r) => self.on_commit_response(from, r),
        }
    }

    /// Decode wire bytes (size cap first) and handle them.
    pub fn handle_bytes(
        &mut self,
        now: u64,
        from: PublicKey,
        bytes: &[u8],
    ) -> Result<(), ConsensusError> {
        let message = Message::decode(bytes)?;
        self.handle_message(now, from, message)
    }

    /// The clock moved to `now`: if the round's deadline passed, time out.
    pub fn handle_timeout(&mut self, now: u64) -> Result<(), ConsensusError> {
        self.check_running()?;
        self.now = self.now.max(now);
        if !self.pacemaker.expired(self.now) {
            return Ok(());
        }
        // Outstanding fetches may have been lost with the round: allow new ones.
        self.block_requests.clear();
        self.commit_request = None;
        self.sync_sent.clear();
        self.pacemaker.rearm(self.now, self.tree.root_round());
        self.local_timeout()
    }

    /// The payload for `round`, asked for by [`Output::NeedPayload`].
    pub fn handle_payload(
        &mut self,
        now: u64,
        round: u64,
        payload: Vec<u8>,
    ) -> Result<(), ConsensusError> {
        self.check_running()?;
        self.now = self.now.max(now);
        self.propose(round, payload)
    }

    /// Why the replica halted, if it did ([`Output::Halt`]).
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    fn check_running(&self) -> Result<(), ConsensusError> {
        match &self.halted {
            Some(reason) => Err(ConsensusError::Halted(reason.clone())),
            None => Ok(()),
        }
    }

    /// Stop for good: no output after this one.
    pub(super) fn halt(&mut self, reason: String) {
        tracing::error!(me = %self.me.short(), %reason, "replica halted");
        self.outputs.push(Output::Halt {
            reason: reason.clone(),
        });
        self.halted = Some(reason);
    }

    /// When [`Replica::handle_timeout`] should next be called (ms).
    pub fn next_deadline(&self) -> u64 {
        self.pacemaker.deadline()
    }

    /// This replica's key.
    pub fn public_key(&self) -> PublicKey {
        self.me
    }
    /// Current round.
    pub fn round(&self) -> u64 {
        self.pacemaker.round()
    }
    /// Current epoch.
    pub fn epoch(&self) -> u64 {
        self.validators.epoch
    }
    /// Validators of the current epoch.
    pub fn validators(&self) -> &ValidatorSet {
        &self.validators
    }
    /// The last committed block's info.
    pub fn committed(&self) -> &BlockInfo {
        self.tree.root_info()
    }
    /// The safety state (as last emitted for persistence).
    pub fn safety(&self) -> &SafetyState {
        &self.safety
    }
    /// Highest QC.
    pub fn high_qc(&self) -> &QuorumCert {
        self.tree.high_qc()
    }
    /// The executor (e.g. to read committed state).
    pub fn executor(&self) -> &E {
        &self.executor
    }
    /// The leader of `round` as this replica computes it.
    pub fn leader_of(&self, round: u64) -> PublicKey {
        #[cfg(any(test, feature = "testing"))]
        if let Some(&i) = round
            .checked_sub(1)
            .and_then(|r| self.config.leader_schedule.get(r as usize))
        {
            return self.validators.validators[i % self.validators.validators.len()].key;
        }
        self.leaders.leader(&self.validators, round)
    }
    /// Certificates to hand a lagging peer.
    pub fn sync_info(&self) -> SyncInfo {
        SyncInfo {
            high_qc: self.tree.high_qc().clone(),
            high_commit: self.tree.high_commit().cloned(),
            high_tc: self
                .high_tc
                .clone()
                .filter(|tc| tc.round >= self.tree.high_qc().round()),
        }
    }
    /// Number of uncommitted blocks held.
    pub fn pending_blocks(&self) -> usize {
        self.tree.len()
    }

    fn sign(&self, digest: &Digest) -> palisade_crypto::Signature {
        let sig = self.key.sign_digest(digest);
        self.verifier.signed(&self.me, digest, &sig);
        sig
    }

    fn emit(&mut self, output: Output) {
        // A halted replica says nothing more, also in the rest of the call
        // that halted it (a vote after a failed commit must not leave).
        if self.halted.is_none() {
            self.outputs.push(output);
        }
    }

    fn persist_safety(&mut self) {
        // The TC that justified this round goes with the vote or timeout.
        let higher = match (&self.high_tc, &self.safety.high_tc) {
            (Some(tc), Some(kept)) => tc.round > kept.round,
            (Some(_), None) => true,
            _ => false,
        };
        if higher {
            self.safety.high_tc = self.high_tc.clone();
        }
        let high_qc = self.tree.high_qc();
        if !high_qc.is_root()
            && self
                .safety
                .high_qc
                .as_ref()
                .is_none_or(|kept| high_qc.round() > kept.round())
        {
            self.safety.high_qc = Some(high_qc.clone());
        }
        self.emit(Output::PersistSafety(self.safety.clone()));
    }

    fn is_member(&self, key: &PublicKey) -> bool {
        self.validators.power_of(key).is_some()
    }

    /// Keep a proposal or vote of the very next epoch: replicas that commit
    /// the epoch's last block first start the next epoch first, and what they
    /// send is needed as soon as this replica has caught up.
    fn keep_for_next_epoch(&mut self, from: PublicKey, epoch: u64, message: Message) {
        if epoch == self.validators.epoch + 1 && self.next_epoch.len() < NEXT_EPOCH_MESSAGES {
            self.next_epoch.push((from, message));
        }
    }

    fn check_epoch(&mut self, from: PublicKey, epoch: u64) -> Result<(), ConsensusError> {
        if epoch == self.validators.epoch {
            return Ok(());
        }
        if epoch > self.validators.epoch {
            // The sender is ahead: fetch the committed chain that ends our epoch.
            self.request_commits(from);
        }
        Err(ConsensusError::WrongEpoch {
            got: epoch,
            current: self.validators.epoch,
        })
    }
}
