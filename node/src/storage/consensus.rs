//! Consensus records: uncommitted blocks (by id, for restart) and the
//! committed log (by height, with the QC that committed each block).
//!
//! Uncommitted blocks live in [`Cf::Blocks`] under their 32-byte id (a
//! handful at any time: they are pruned as they commit); the committed log in
//! [`Cf::Log`] under the height (u64 big-endian).

use palisade_consensus::hotstuff::{Block, CommittedBlock, SafetyState};
use palisade_crypto::{decode, encode, Digest};

use super::{corrupt, Batch, Cf, NodeStore};
use crate::error::StorageError;

const SAFETY: &str = "safety";

fn log_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

impl NodeStore {
    /// Overwrite the safety state; durable once [`NodeStore::sync`] returns,
    /// which the driver calls before the vote or timeout leaves.
    pub fn put_safety_state(&self, state: &SafetyState) -> Result<(), StorageError> {
        self.put_safety(SAFETY, &encode(state))
    }

    /// The persisted safety state.
    pub fn safety_state(&self) -> Result<Option<SafetyState>, StorageError> {
        match self.safety(SAFETY)? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("safety", e))?)),
        }
    }

    /// Store an uncommitted block; durable once [`NodeStore::sync`] returns
    /// (before the vote for it leaves).
    pub fn put_pending_block(&self, block: &Block) -> Result<(), StorageError> {
        let mut batch = Batch::new();
        batch.put(Cf::Blocks, block.id().0, encode(block));
        self.write_deferred(batch)
    }

    /// A stored block by id (uncommitted, or committed but not yet pruned).
    pub fn pending_block(&self, id: &Digest) -> Result<Option<Block>, StorageError> {
        match self.block(id)? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("blocks", e))?)),
        }
    }

    /// Every stored uncommitted block.
    pub fn pending_blocks(&self) -> Result<Vec<Block>, StorageError> {
        let mut out = Vec::new();
        let mut start = Vec::new();
        loop {
            let page = self.kv().scan(Cf::Blocks, &start, 256)?;
            let Some((last, _)) = page.last() else { break };
            let mut next = last.clone();
            next.push(0);
            for (_, v) in &page {
                out.push(decode(v).map_err(|e| corrupt("blocks", e))?);
            }
            if page.len() < 256 {
                break;
            }
            start = next;
        }
        Ok(out)
    }

    /// Delete the stored uncommitted blocks `ids` (committed or abandoned).
    pub fn delete_pending_blocks(&self, ids: &[Digest]) -> Result<(), StorageError> {
        let mut batch = Batch::new();
        for id in ids {
            batch.delete(Cf::Blocks, id.0.to_vec());
        }
        if !batch.is_empty() {
            self.kv().write(batch, false)?;
        }
        Ok(())
    }

    /// Append committed blocks to the committed log (not synced: the sync
    /// after the ledger write covers it).
    pub fn put_committed_blocks(&self, blocks: &[CommittedBlock]) -> Result<(), StorageError> {
        let mut batch = Batch::new();
        for c in blocks {
            batch.put(Cf::Log, log_key(c.info.height), encode(c));
        }
        self.write_deferred(batch)
    }

    /// The committed log entry at `height`.
    pub fn committed_block(&self, height: u64) -> Result<Option<CommittedBlock>, StorageError> {
        match self.kv().get(Cf::Log, &log_key(height))? {
            None => Ok(None),
            Some(b) => Ok(Some(decode(&b).map_err(|e| corrupt("blocks", e))?)),
        }
    }
}
