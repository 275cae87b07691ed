//! Offline check of an equivocation evidence file written by a node whose
//! link to another datacenter froze (DESIGN.md "Datacenters",
//! Equivocation): with only that datacenter's network.json, anyone can
//! confirm that its validators certified two different blocks at one
//! height, or a block whose certified chain does not reach a block they
//! certified before.

use palisade_crypto::dc::EquivocationEvidence;
use palisade_crypto::{BlockInfo, NetworkFile};

use crate::{ClientError, TrustedChain};

/// What a valid evidence file proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Equivocation {
    /// Two certified blocks at one height.
    SameHeight {
        /// The height.
        height: u64,
        /// The two block ids.
        blocks: (palisade_crypto::Digest, palisade_crypto::Digest),
    },
    /// Two different certified ends of one epoch (each names the next
    /// validator set): the epoch's keys signed a fork of the trust chain.
    TwoEpochEnds {
        /// The epoch.
        epoch: u64,
        /// Heights of the two ends.
        heights: (u64, u64),
    },
    /// A certified block whose parent chain does not reach an earlier
    /// certified block.
    BrokenChain {
        /// Height of the earlier certified block.
        first: u64,
        /// Height of the later one.
        second: u64,
    },
}

fn bad(reason: impl Into<String>) -> ClientError {
    ClientError::Invalid(format!("not evidence of equivocation: {}", reason.into()))
}

/// Check `evidence` against `network`'s genesis validators (following the
/// epoch changes it carries).
pub fn verify_evidence(
    network: &NetworkFile,
    evidence: &EquivocationEvidence,
) -> Result<Equivocation, ClientError> {
    if evidence.chain_id != network.chain_id {
        return Err(ClientError::WrongChain {
            got: evidence.chain_id.clone(),
            expected: network.chain_id.clone(),
        });
    }
    let mut trust = TrustedChain::from_network(network)?;
    trust.follow(&evidence.epoch_changes)?;
    let first = trust.verify(&evidence.first)?.block().clone();
    let second = trust.verify(&evidence.second)?.block().clone();
    let epoch = evidence.first.ledger_info.epoch;
    if epoch == evidence.second.ledger_info.epoch
        && first.next_validators.is_some()
        && second.next_validators.is_some()
        && first != second
    {
        return Ok(Equivocation::TwoEpochEnds {
            epoch,
            heights: (first.height, second.height),
        });
    }
    if first.height == second.height {
        if first == second {
            return Err(bad("both certificates are for the same block"));
        }
        return Ok(Equivocation::SameHeight {
            height: first.height,
            blocks: (first.block_id, second.block_id),
        });
    }
    let (low, high) = if first.height < second.height {
        (&first, &second)
    } else {
        (&second, &first)
    };
    let chain: &[BlockInfo] = &evidence.chain;
    if chain.len() as u64 != high.height - low.height || chain.last() != Some(high) {
        return Err(bad(
            "the chain does not run from above the earlier block to the later one",
        ));
    }
    for w in chain.windows(2) {
        if w[1].parent_info != w[0].hash() || w[1].height != w[0].height + 1 {
            return Err(bad(format!(
                "the chain is broken at height {}",
                w[1].height
            )));
        }
    }
    if chain[0].parent_info == low.hash() {
        return Err(bad("the chain reaches the earlier block: no conflict"));
    }
    Ok(Equivocation::BrokenChain {
        first: low.height,
        second: high.height,
    })
}
