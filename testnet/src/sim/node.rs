//! One simulated instance: a replica plus the storage a real node would keep.
//!
//! The "disk" holds exactly what the shell contract says to persist: the
//! safety record, uncommitted blocks, the committed log and the current
//! validator set. A restart rebuilds the executor by replaying the committed
//! log into a fresh one (so any [`Executor`] works) and calls
//! [`Replica::recover`]; a wiped node starts again at genesis.

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_consensus::executor::{ExecutionContext, Executor};
use palisade_consensus::hotstuff::{
    Block, CommittedBlock, ConsensusError, Recovery, Replica, SafetyState, SignatureVerifier,
};
use palisade_crypto::{BlockInfo, Digest, SecretKey, ValidatorSet};

/// How many committed blocks a restart hands back (reputation, sync window).
const RECOVERED_COMMITTED: usize = 1024;

/// What a simulated node keeps on disk.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The safety record.
    pub safety: SafetyState,
    /// Uncommitted blocks by id.
    pub blocks: BTreeMap<Digest, Block>,
    /// The committed log.
    pub committed: Vec<CommittedBlock>,
    /// Validators of the current epoch.
    pub validators: ValidatorSet,
}

impl Disk {
    fn empty(validators: &ValidatorSet) -> Self {
        Disk {
            safety: SafetyState::new(validators.epoch),
            blocks: BTreeMap::new(),
            committed: Vec::new(),
            validators: validators.clone(),
        }
    }
}

/// An instance: key, replica (absent while crashed), disk.
#[derive(Debug)]
pub(crate) struct SimNode<E: Executor> {
    pub(crate) key: SecretKey,
    pub(crate) replica: Option<Replica<E>>,
    pub(crate) disk: Disk,
    pub(crate) timer_at: Option<u64>,
}

/// Everything needed to (re)start a replica.
pub(crate) struct Boot<'a, E> {
    pub(crate) config: &'a palisade_consensus::hotstuff::Config,
    pub(crate) genesis: &'a BlockInfo,
    pub(crate) validators: &'a ValidatorSet,
    pub(crate) make_executor: &'a dyn Fn() -> E,
    pub(crate) verifier: Arc<dyn SignatureVerifier>,
    pub(crate) now: u64,
}

impl<E: Executor> SimNode<E> {
    pub(crate) fn start(key: SecretKey, boot: &Boot<'_, E>) -> Result<Self, ConsensusError> {
        let replica = Replica::genesis(
            boot.config.clone(),
            key.clone(),
            (boot.make_executor)(),
            boot.genesis.clone(),
            boot.validators.clone(),
            boot.now,
        )?
        .with_verifier(boot.verifier.clone());
        Ok(SimNode {
            key,
            replica: Some(replica),
            disk: Disk::empty(boot.validators),
            timer_at: None,
        })
    }

    pub(crate) fn crash(&mut self) {
        self.replica = None;
        self.timer_at = None;
    }

    /// Restart from the disk, or from nothing if `wipe`.
    pub(crate) fn restart(&mut self, boot: &Boot<'_, E>, wipe: bool) -> Result<(), ConsensusError> {
        if wipe {
            *self = SimNode::start(self.key.clone(), boot)?;
            return Ok(());
        }
        let mut executor = (boot.make_executor)();
        for c in &self.disk.committed {
            let ctx = ExecutionContext {
                parent_id: c.block.parent_id(),
                block_id: c.info.block_id,
                height: c.info.height,
                epoch: c.block.epoch,
                timestamp_ms: c.info.timestamp_ms,
            };
            executor.execute(&ctx, &c.block.payload)?;
            executor.commit(&c.info.block_id)?;
        }
        let root = self
            .disk
            .committed
            .last()
            .map(|c| c.info.clone())
            .unwrap_or_else(|| boot.genesis.clone());
        let skip = self
            .disk
            .committed
            .len()
            .saturating_sub(RECOVERED_COMMITTED);
        let recovery = Recovery {
            safety: self.disk.safety.clone(),
            root,
            root_qc: None,
            validators: self.disk.validators.clone(),
            committed: self.disk.committed[skip..].to_vec(),
            blocks: self.disk.blocks.values().cloned().collect(),
        };
        let replica = Replica::recover(
            boot.config.clone(),
            self.key.clone(),
            executor,
            recovery,
            boot.now,
        )?
        .with_verifier(boot.verifier.clone());
        self.replica = Some(replica);
        self.timer_at = None;
        Ok(())
    }
}
