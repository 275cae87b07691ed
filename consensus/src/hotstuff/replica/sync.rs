//! Block sync: fetching what a verified certificate refers to.
//!
//! - A QC for an unknown block: ask its sender for the block and its
//!   ancestors ([`BlockRequest`]); the answer is checked by hashes alone
//!   (the first block has the certified id, each next one is the previous
//!   one's parent), then every block is validated and re-executed on top of a
//!   known parent before it is stored.
//! - Further behind than one batch, or a message of a later epoch: ask for
//!   committed blocks from our height ([`CommitRequest`]); the answer must
//!   extend our committed root, chain by ids, and end in a block committed by
//!   a QC of our epoch; each block is re-executed and must reproduce its
//!   roots, then the chain is committed. A response never crosses an epoch
//!   boundary, so the set that verifies it is always known.
//!
//! Responses nobody asked for are refused ([`ConsensusError::UnsolicitedResponse`]).

use palisade_crypto::{Digest, PublicKey};

use super::{Output, Replica};
use crate::executor::Executor;
use crate::hotstuff::{
    BlockRequest, BlockResponse, CommitRequest, CommitResponse, ConsensusError, Message,
    MAX_MESSAGE_BYTES,
};

impl<E: Executor> Replica<E> {
    pub(super) fn request_block(&mut self, from: PublicKey, id: Digest) {
        if from == self.me || !self.block_requests.insert(id) {
            return;
        }
        self.emit(Output::Send {
            to: from,
            message: Message::BlockRequest(BlockRequest {
                block_id: id,
                max_blocks: self.config.sync_batch,
            }),
        });
    }

    pub(super) fn request_commits(&mut self, from: PublicKey) {
        if from == self.me || self.commit_request.is_some() {
            return;
        }
        let from_height = self.tree.committed_height() + 1;
        self.commit_request = Some((from, from_height));
        self.emit(Output::Send {
            to: from,
            message: Message::CommitRequest(CommitRequest {
                epoch: self.validators.epoch,
                from_height,
            }),
        });
    }

    pub(super) fn on_block_request(
        &mut self,
        from: PublicKey,
        r: BlockRequest,
    ) -> Result<(), ConsensusError> {
        let max = r.max_blocks.clamp(1, self.config.sync_batch.max(1)) as usize;
        let mut blocks = self.tree.chain_back(&r.block_id, max);
        let mut bytes = 0usize;
        let budget = MAX_MESSAGE_BYTES / 2;
        blocks.retain(|b| {
            bytes += b.payload.len() + 1024;
            bytes <= budget
        });
        self.emit(Output::Send {
            to: from,
            message: Message::BlockResponse(BlockResponse {
                block_id: r.block_id,
                blocks,
            }),
        });
        Ok(())
    }

    pub(super) fn on_block_response(
        &mut self,
        from: PublicKey,
        r: BlockResponse,
    ) -> Result<(), ConsensusError> {
        if !self.block_requests.remove(&r.block_id) {
            return Err(ConsensusError::UnsolicitedResponse(from));
        }
        let Some(first) = r.blocks.first() else {
            return Ok(()); // the peer does not have it (any more)
        };
        if first.id() != r.block_id {
            return Err(ConsensusError::BadSyncResponse(
                "first block is not the one asked for",
            ));
        }
        if r.blocks.windows(2).any(|w| w[1].id() != w[0].parent_id()) {
            return Err(ConsensusError::BadSyncResponse("blocks do not chain"));
        }
        // Blocks committed meanwhile (or before the epoch began) are not needed.
        let committed = self.tree.committed_height();
        let wanted: Vec<_> = r.blocks.iter().filter(|b| b.height > committed).collect();
        if wanted.iter().any(|b| b.epoch != self.validators.epoch) {
            return Err(ConsensusError::BadSyncResponse("blocks of another epoch"));
        }
        let Some(last) = wanted.last() else {
            return Ok(());
        };
        let connects = wanted
            .iter()
            .position(|b| self.tree.parent_view(&b.parent_id()).is_some());
        let Some(oldest) = connects else {
            if last.height <= self.tree.committed_height() + 1 {
                return Err(ConsensusError::BadSyncResponse(
                    "chain does not extend the committed root",
                ));
            }
            // Further behind than a batch: catch up by committed blocks.
            self.request_commits(from);
            return Ok(());
        };
        for block in wanted[..=oldest].iter().rev() {
            let id = block.id();
            if !self.tree.contains(&id) {
                self.insert_block((*block).clone(), id, false)?;
            }
        }
        Ok(())
    }

    pub(super) fn on_commit_request(
        &mut self,
        from: PublicKey,
        r: CommitRequest,
    ) -> Result<(), ConsensusError> {
        let max = self.config.sync_batch.max(1) as usize;
        if let Some((blocks, commit_qc)) = self.tree.committed_from(r.from_height, max) {
            self.emit(Output::Send {
                to: from,
                message: Message::CommitResponse(CommitResponse { blocks, commit_qc }),
            });
        }
        Ok(())
    }

    pub(super) fn on_commit_response(
        &mut self,
        from: PublicKey,
        r: CommitResponse,
    ) -> Result<(), ConsensusError> {
        match self.commit_request {
            Some((to, _)) if to == from => self.commit_request = None,
            _ => return Err(ConsensusError::UnsolicitedResponse(from)),
        }
        let root = self.tree.root_info().clone();
        if r.blocks.is_empty() {
            return Err(ConsensusError::BadSyncResponse("no blocks"));
        }
        // Committed meanwhile by other means: only the rest is new.
        let skip = r
            .blocks
            .iter()
            .take_while(|b| b.height <= root.height)
            .count();
        if skip == r.blocks.len() {
            return Ok(());
        }
        let first = &r.blocks[skip];
        if first.parent_id() != root.block_id || first.height != root.height + 1 {
            return Err(ConsensusError::BadSyncResponse(
                "blocks do not extend the committed root",
            ));
        }
        let blocks = &r.blocks[skip..];
        if blocks.windows(2).any(|w| w[1].parent_id() != w[0].id()) {
            return Err(ConsensusError::BadSyncResponse("blocks do not chain"));
        }
        if let Some(b) = blocks.iter().find(|b| b.epoch != self.validators.epoch) {
            return Err(ConsensusError::WrongEpoch {
                got: b.epoch,
                current: self.validators.epoch,
            });
        }
        self.verify_qc(&r.commit_qc)?;
        let last = blocks.last().expect("non-empty");
        let last_info = last.info();
        if r.commit_qc.commit_info() != Some(&last_info) {
            return Err(ConsensusError::BadSyncResponse(
                "certificate commits another block",
            ));
        }
        for block in blocks {
            let id = block.id();
            if !self.tree.contains(&id) {
                self.insert_block(block.clone(), id, false)?;
            }
        }
        let full = blocks.len() >= self.config.sync_batch as usize;
        let epoch = self.validators.epoch;
        self.commit_to(&last_info, &r.commit_qc);
        if full || self.validators.epoch != epoch {
            self.request_commits(from);
        }
        // Fetch again what waited on blocks above the old root.
        let waiting: Vec<(Digest, PublicKey)> = self
            .pending_qcs
            .iter()
            .map(|(id, (f, _))| (*id, *f))
            .collect();
        for (id, peer) in waiting {
            self.request_block(peer, id);
        }
        Ok(())
    }
}
