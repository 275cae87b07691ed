//! What the simulated network lets through, and what it saw.
//!
//! Partitions: a message sent by an instance in round r crosses a
//! [`RoundPartition`] covering r only inside a group (Twins); a
//! [`TimePartition`] applies by virtual time. The wire also watches for
//! Byzantine behaviour the twins produce: two different proposals, or two
//! different votes, under one key in one round.

use std::collections::HashMap;

use palisade_consensus::hotstuff::Message;
use palisade_crypto::{Digest, PublicKey};

use super::{RoundPartition, TimePartition};

/// May `from` reach `to` for a message sent in `round` at `elapsed_ms`,
/// and how much later than the network's own delay? `None`: dropped.
pub(crate) fn reach(
    rounds: &[RoundPartition],
    times: &[TimePartition],
    from: usize,
    to: usize,
    round: u64,
    elapsed_ms: u64,
) -> Option<u64> {
    let same_group =
        |groups: &[Vec<usize>]| groups.iter().any(|g| g.contains(&from) && g.contains(&to));
    let mut late = 0;
    for p in rounds
        .iter()
        .filter(|p| p.from_round <= round && round <= p.to_round)
    {
        match p.links.iter().find(|l| l.from == from && l.to == to) {
            Some(link) => late = late.max(link.late_ms?),
            None if same_group(&p.groups) => {}
            None => return None,
        }
    }
    times
        .iter()
        .filter(|p| p.from_ms <= elapsed_ms && elapsed_ms < p.to_ms)
        .all(|p| same_group(&p.groups))
        .then_some(late)
}

/// Counters of the wire.
#[derive(Debug, Clone, Default)]
pub struct WireStats {
    /// Copies of messages handed to the network (one per recipient).
    pub sent: u64,
    /// Copies dropped (loss or partition).
    pub dropped: u64,
    /// Copies delivered twice.
    pub duplicated: u64,
    /// Copies with a bit flipped in flight.
    pub corrupted: u64,
    /// Rounds in which one key proposed two different blocks.
    pub equivocations: u64,
    /// Rounds in which one key voted for two different blocks.
    pub double_votes: u64,
    proposals: HashMap<(PublicKey, u64), Digest>,
    votes: HashMap<(PublicKey, u64), Digest>,
}

impl WireStats {
    /// Note a message leaving `sender`.
    pub(crate) fn observe(&mut self, sender: PublicKey, message: &Message) {
        let (seen, counter, key, id) = match message {
            Message::Proposal(p) => (
                &mut self.proposals,
                &mut self.equivocations,
                (sender, p.block.round),
                p.block.id(),
            ),
            Message::Vote(v) => (
                &mut self.votes,
                &mut self.double_votes,
                (sender, v.vote_data.round),
                v.vote_data.block_id,
            ),
            _ => return,
        };
        match seen.get(&key) {
            Some(prev) if *prev != id => {
                *counter += 1;
                seen.insert(key, id);
            }
            Some(_) => {}
            None => {
                seen.insert(key, id);
            }
        }
    }
}
