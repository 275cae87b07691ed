//! A block's transaction root: rs_merkle over the block's transactions.
//!
//! Two leaf forms share the tree shape: [`tx_root`] (leaves `hash(TxLeaf,
//! id)`: ids only, for executors without outcomes) and [`receipt_root`], the
//! registry's, whose leaves `hash(ReceiptLeaf, borsh((id, code as u16)))` bind
//! each transaction's outcome code ([`OUTCOME_APPLIED`], or the stable number
//! of a rejection reason from the state machine's code table), so a commit
//! certificate covers what became of every transaction and a client verifies
//! the outcome it reports ([`TxInclusionProof::verify_receipt`]). Only the
//! code is hashed, never human text: the text of a reason (which quotes user
//! data through `Debug`/`Display`) may differ between builds, and validators
//! built with different toolchains must agree on every root.
//! Inner nodes are `hash(TxNode, left || right)`
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

/// The outcome code of an applied transaction; every other code names a
/// rejection reason.
pub const OUTCOME_APPLIED: u16 = 0;

/// A receipt leaf: a transaction id and its outcome code.
fn receipt_leaf(id: &Digest, code: u16) -> [u8; 32] {
    hash_encoded(Domain::ReceiptLeaf, &(id, code)).0
}

fn receipt_leaves(receipts: &[(Digest, u16)]) -> Vec<[u8; 32]> {
    receipts
        .iter()
        .map(|(id, code)| receipt_leaf(id, *code))
        .collect()
}

fn root_of(leaves: &[[u8; 32]]) -> Digest {
    if leaves.is_empty() {
        return bind(0, Digest::ZERO);
    }
    let tree = MerkleTree::<TxNodeHasher>::from_leaves(leaves);
    bind(
        leaves.len() as u64,
        Digest(tree.root().expect("non-empty tree has a root")),
    )
}

/// The transaction root of a block whose receipts are `(id, outcome code)`,
/// in order (the empty block's root equals `tx_root(&[])`).
pub fn receipt_root(receipts: &[(Digest, u16)]) -> Digest {
    root_of(&receipt_leaves(receipts))
}

fn bind(count: u64, merkle_root: Digest) -> Digest {
    hash_encoded(Domain::TxNode, &(count, merkle_root))
}

/// The transaction root of a block whose transaction ids are `ids`, in order.
pub fn tx_root(ids: &[Digest]) -> Digest {
    root_of(&leaves(ids))
}

/// A Merkle tree over a block's leaves, built once to prove many of them.
struct TreeOf {
    tree: MerkleTree<TxNodeHasher>,
    total: usize,
}

impl TreeOf {
    fn new(leaves: &[[u8; 32]]) -> Self {
        TreeOf {
            tree: MerkleTree::<TxNodeHasher>::from_leaves(leaves),
            total: leaves.len(),
        }
    }

    fn proof(&self, index: usize) -> TxInclusionProof {
        assert!(index < self.total, "index {index} out of {}", self.total);
        let proof = self.tree.proof(&[index]);
        TxInclusionProof {
            index: index as u32,
            total: self.total as u32,
            hashes: proof.proof_hashes().iter().map(|h| Digest(*h)).collect(),
        }
    }
}

/// A block's receipt tree ([`receipt_root`]), built once so that the
/// receipts of many of its transactions are proven without rebuilding it.
pub struct ReceiptTree(TreeOf);

impl std::fmt::Debug for ReceiptTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceiptTree({} receipts)", self.0.total)
    }
}

impl ReceiptTree {
    /// The tree of a block whose receipts are `(id, outcome code)`, in order.
    pub fn new(receipts: &[(Digest, u16)]) -> Self {
        ReceiptTree(TreeOf::new(&receipt_leaves(receipts)))
    }

    /// The proof for receipt `index`, as [`TxInclusionProof::build_receipt`]
    /// gives it. Panics if `index` is out of range.
    pub fn proof(&self, index: usize) -> TxInclusionProof {
        self.0.proof(index)
    }
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
    /// Build the proof for `ids[index]` (a [`tx_root`]). Panics if `index`
    /// is out of range.
    pub fn build(ids: &[Digest], index: usize) -> Self {
        Self::build_over(&leaves(ids), index)
    }

    /// Build the proof for `receipts[index]` (a [`receipt_root`]). Panics if
    /// `index` is out of range.
    pub fn build_receipt(receipts: &[(Digest, u16)], index: usize) -> Self {
        Self::build_over(&receipt_leaves(receipts), index)
    }

    fn build_over(leaves: &[[u8; 32]], index: usize) -> Self {
        TreeOf::new(leaves).proof(index)
    }

    /// Check that `id` is at `self.index` of a block whose [`tx_root`] is `root`.
    pub fn verify(&self, root: &Digest, id: &Digest) -> Result<(), ProofError> {
        self.verify_leaf(root, hash(Domain::TxLeaf, &id.0).0)
    }

    /// Check that `id`, with exactly outcome `code`, is at `self.index` of a
    /// block whose [`receipt_root`] is `root`: the certificate over the block
    /// then covers the outcome.
    pub fn verify_receipt(&self, root: &Digest, id: &Digest, code: u16) -> Result<(), ProofError> {
        self.verify_leaf(root, receipt_leaf(id, code))
    }

    fn verify_leaf(&self, root: &Digest, leaf: [u8; 32]) -> Result<(), ProofError> {
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
        let merkle_root = proof
            .root(&[self.index as usize], &[leaf], self.total as usize)
            .map_err(|e| mismatch(&e.to_string()))?;
        if bind(self.total as u64, Digest(merkle_root)) != *root {
            return Err(mismatch("transaction is not in the block"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_tree_built_once_gives_the_same_proofs() {
        for n in [1usize, 2, 5, 8, 13] {
            let receipts: Vec<(Digest, u16)> = (0..n)
                .map(|i| (hash(Domain::Message, &[i as u8]), i as u16))
                .collect();
            let root = receipt_root(&receipts);
            let tree = ReceiptTree::new(&receipts);
            for (i, (id, outcome)) in receipts.iter().enumerate() {
                let proof = tree.proof(i);
                assert_eq!(proof, TxInclusionProof::build_receipt(&receipts, i));
                proof.verify_receipt(&root, id, *outcome).unwrap();
            }
        }
    }
}
