//! A block's transaction root: rs_merkle over the block's transaction ids.
//!
//! Leaves are `hash(TxLeaf, id)`, inner nodes `hash(TxNode, left || right)`
//! (rs_merkle promotes an odd last node unchanged), and the root binds the
//! count: `hash(TxNode, borsh((count as u64, merkle_root)))`, 40 bytes, which no
//! 64-byte inner node input can equal. The empty block's root uses
//! `merkle_root = Digest::ZERO`.

use borsh::{BorshDeserialize, BorshSerialize};
use rs_merkle::{MerkleProof, MerkleTree};

use crate::{hash, hash_encoded, Digest, Domain, ProofError};

#[derive(Clone)]
struct TxNodeHasher;

impl rs_merkle::Hasher for TxNodeHasher {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        hash(Domain::TxNode, data).0
    }
}

fn leaves(ids: &[Digest]) -> Vec<[u8; 32]> {
    ids.iter().map(|id| hash(Domain::TxLeaf, &id.0).0).collect()
}

fn bind(count: u64, merkle_root: Digest) -> Digest {
    hash_encoded(Domain::TxNode, &(count, merkle_root))
}

/// The transaction root of a block whose transaction ids are `ids`, in order.
pub fn tx_root(ids: &[Digest]) -> Digest {
    if ids.is_empty() {
        return bind(0, Digest::ZERO);
    }
    let tree = MerkleTree::<TxNodeHasher>::from_leaves(&leaves(ids));
    bind(
        ids.len() as u64,
        Digest(tree.root().expect("non-empty tree has a root")),
    )
}

/// Proof that a transaction id is at `index` among `total` in a block.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxInclusionProof {
    /// Position of the transaction in the block.
    pub index: u32,
    /// Number of transactions in the block.
    pub total: u32,
    /// rs_merkle proof hashes.
    pub hashes: Vec<Digest>,
}

impl TxInclusionProof {
    /// Build the proof for `ids[index]`. Panics if `index` is out of range.
    pub fn build(ids: &[Digest], index: usize) -> Self {
        assert!(index < ids.len(), "index {index} out of {} ids", ids.len());
        let tree = MerkleTree::<TxNodeHasher>::from_leaves(&leaves(ids));
        let proof = tree.proof(&[index]);
        TxInclusionProof {
            index: index as u32,
            total: ids.len() as u32,
            hashes: proof.proof_hashes().iter().map(|h| Digest(*h)).collect(),
        }
    }

    /// Check that `id` is at `self.index` of a block whose root is `root`.
    pub fn verify(&self, root: &Digest, id: &Digest) -> Result<(), ProofError> {
        let mismatch = |reason: &str| ProofError::Mismatch {
            root: *root,
            reason: reason.to_string(),
        };
        if self.index >= self.total {
            return Err(mismatch("index beyond the block's transaction count"));
        }
        if self.hashes.len() > 64 {
            return Err(mismatch("too many proof hashes"));
        }
        let proof = MerkleProof::<TxNodeHasher>::new(self.hashes.iter().map(|h| h.0).collect());
        let leaf = hash(Domain::TxLeaf, &id.0).0;
        let merkle_root = proof
            .root(&[self.index as usize], &[leaf], self.total as usize)
            .map_err(|e| mismatch(&e.to_string()))?;
        if bind(self.total as u64, Digest(merkle_root)) != *root {
            return Err(mismatch("transaction is not in the block"));
        }
        Ok(())
    }
}
