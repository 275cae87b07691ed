//! Block payloads and transaction receipts.
//!
//! A payload is the canonical borsh encoding of `Vec<SignedTransaction>`,
//! at most `max_block_bytes` long with at most `max_block_txs` entries. A
//! payload that breaks those bounds or does not decode makes the whole block
//! invalid (voters refuse it). Inside a valid payload every transaction gets a
//! receipt, applied or rejected, in payload order; the block's transaction
//! root is `receipt_root` over all their `(id, outcome code)` pairs, rejected
//! ones included, so a client can prove that its transaction was in the block
//! and what became of it, under the block's commit certificate. Only the code
//! ([`TxOutcome::code`]) is hashed; the text ([`TxOutcome::describe`]) is for
//! people and may change between builds.

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_crypto::{
    decode_capped, encode, receipt_root, Digest, SignedTransaction, TxInclusionProof,
    OUTCOME_APPLIED,
};

use super::error::TxRejection;
use super::genesis::Params;

/// What happened to a transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum TxOutcome {
    /// Applied atomically.
    Applied,
    /// Rejected; it changed nothing.
    Rejected(TxRejection),
}

impl TxOutcome {
    /// The outcome's stable code, what the block's transaction root binds to
    /// the transaction's id: [`OUTCOME_APPLIED`] or [`TxRejection::code`].
    pub fn code(&self) -> u16 {
        match self {
            TxOutcome::Applied => OUTCOME_APPLIED,
            TxOutcome::Rejected(r) => r.code(),
        }
    }

    /// "applied" or `"rejected: <reason>"`: the API's `outcome` text, for
    /// people; it is hashed nowhere.
    pub fn describe(&self) -> String {
        match self {
            TxOutcome::Applied => "applied".to_string(),
            TxOutcome::Rejected(r) => format!("rejected: {r}"),
        }
    }
}

/// One transaction's receipt.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxReceipt {
    /// Transaction id.
    pub tx_id: Digest,
    /// Height of its block.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// Verdict.
    pub outcome: TxOutcome,
}

/// The receipts of one block, with what is needed to prove inclusion.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockReceipts {
    /// Height of the block.
    pub height: u64,
    /// Its transaction root.
    pub tx_root: Digest,
    /// One receipt per transaction, in payload order.
    pub receipts: Vec<TxReceipt>,
}

impl BlockReceipts {
    /// The ids of the block's transactions, in order.
    pub fn tx_ids(&self) -> Vec<Digest> {
        self.receipts.iter().map(|r| r.tx_id).collect()
    }

    /// The proof that receipt `index`'s transaction is in the block (against
    /// [`BlockReceipts::tx_root`]). Built on demand: building every proof of
    /// a block eagerly would cost a tree per transaction.
    pub fn inclusion_proof(&self, index: usize) -> Option<TxInclusionProof> {
        (index < self.receipts.len())
            .then(|| TxInclusionProof::build_receipt(&self.leaves(), index))
    }

    /// `(tx id, outcome code)` per receipt: the leaves of the block's
    /// transaction root ([`palisade_crypto::receipt_root`]).
    pub fn leaves(&self) -> Vec<(Digest, u16)> {
        self.receipts
            .iter()
            .map(|r| (r.tx_id, r.outcome.code()))
            .collect()
    }

    /// The receipt of `tx_id`, if the block holds it.
    pub fn find(&self, tx_id: &Digest) -> Option<&TxReceipt> {
        self.receipts.iter().find(|r| &r.tx_id == tx_id)
    }

    pub(crate) fn new(height: u64, receipts: Vec<TxReceipt>) -> Self {
        let mut block = BlockReceipts {
            height,
            tx_root: Digest::ZERO,
            receipts,
        };
        block.tx_root = receipt_root(&block.leaves());
        block
    }
}

/// Encode transactions as a block payload.
pub fn encode_payload(txs: &[SignedTransaction]) -> Vec<u8> {
    encode(txs)
}

/// Decode a block payload under the genesis bounds.
pub fn decode_payload(bytes: &[u8], params: &Params) -> Result<Vec<SignedTransaction>, String> {
    let txs: Vec<SignedTransaction> = decode_capped(bytes, params.max_block_bytes as usize)
        .map_err(|e| format!("payload: {e}"))?;
    if txs.len() > params.max_block_txs as usize {
        return Err(format!(
            "{} transactions, a block holds at most {}",
            txs.len(),
            params.max_block_txs
        ));
    }
    Ok(txs)
}
