//! Where simulated leaders get their payloads.

use palisade_crypto::{hash_encoded, Domain};

/// Supplies a leader's payload when its replica asks for one.
pub trait PayloadSource {
    /// The payload instance `node` proposes in `round`.
    fn payload(&mut self, node: usize, round: u64) -> Vec<u8>;
}

/// `txs` distinct 32-byte transaction ids per block (the format
/// [`palisade_consensus::hotstuff::SimExecutor`] executes).
#[derive(Debug, Clone)]
pub struct SimPayloads {
    /// Transactions per block.
    pub txs: usize,
    counter: u64,
}

impl SimPayloads {
    /// `txs` transactions per block.
    pub fn new(txs: usize) -> Self {
        SimPayloads { txs, counter: 0 }
    }
}

impl PayloadSource for SimPayloads {
    fn payload(&mut self, node: usize, round: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.txs * 32);
        for _ in 0..self.txs {
            self.counter += 1;
            out.extend_from_slice(
                &hash_encoded(Domain::Transaction, &(node as u64, round, self.counter)).0,
            );
        }
        out
    }
}
