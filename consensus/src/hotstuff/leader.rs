//! Leader election: weighted rotation with reputation from committed history
//! (after Aptos `LeaderReputation`, "ProposerAndVoter").
//!
//! The leader of round r is drawn, with a deterministic mix of `(epoch, r)`,
//! from the validators weighted by `power x reputation`. Reputation looks at
//! the last `reputation_window` committed blocks whose round is at most
//! `r - reputation_lag`: a validator that proposed a committed block or signed
//! a committed block's parent QC there is *active* (weight x1000), unless it
//! led more skipped rounds (rounds a committed block jumped over) than it
//! proposed committed blocks there; the others keep weight x1. So a validator
//! that crashes stops being chosen (and costing a timeout) after the first
//! commit that skips its round, yet can come back by voting and proposing. Everything is a function of committed data and the round, so all
//! honest replicas that committed the same prefix agree on every leader.

use std::collections::VecDeque;

use palisade_crypto::{PublicKey, ValidatorSet};

const ACTIVE_WEIGHT: u64 = 1_000;
const INACTIVE_WEIGHT: u64 = 1;

/// What a committed block says about who was alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitRecord {
    pub(crate) round: u64,
    pub(crate) proposer: PublicKey,
    pub(crate) voters: Vec<PublicKey>,
    /// Leaders of the rounds skipped before this block.
    pub(crate) failed: Vec<PublicKey>,
}

/// Reputation over committed history.
#[derive(Debug, Clone)]
pub(crate) struct LeaderElection {
    history: VecDeque<CommitRecord>,
    window: usize,
    lag: u64,
}

impl LeaderElection {
    pub(crate) fn new(window: usize, lag: u64) -> Self {
        LeaderElection {
            history: VecDeque::new(),
            window: window.max(1),
            lag,
        }
    }

    /// Forget the history (new epoch: a new set, new rounds).
    pub(crate) fn reset(&mut self) {
        self.history.clear();
    }

    /// Record a committed block (in commit order).
    pub(crate) fn record(&mut self, record: CommitRecord) {
        self.history.push_back(record);
        // Keep enough for the lag: the window ends up to `lag` rounds back.
        let keep = self.window + self.lag as usize + 1;
        while self.history.len() > keep {
            self.history.pop_front();
        }
    }

    /// Weight of each member of `set` (in set order) for choosing round `round`'s leader.
    pub(crate) fn weights(&self, set: &ValidatorSet, round: u64) -> Vec<u64> {
        let window: Vec<&CommitRecord> = self
            .history
            .iter()
            .filter(|r| r.round.saturating_add(self.lag) <= round)
            .rev()
            .take(self.window)
            .collect();
        set.validators
            .iter()
            .map(|v| {
                let proposed = window.iter().filter(|r| r.proposer == v.key).count();
                let failed: usize = window
                    .iter()
                    .map(|r| r.failed.iter().filter(|k| **k == v.key).count())
                    .sum();
                let active = window.is_empty()
                    || (failed <= proposed
                        && window
                            .iter()
                            .any(|r| r.proposer == v.key || r.voters.contains(&v.key)));
                v.power
                    * if active {
                        ACTIVE_WEIGHT
                    } else {
                        INACTIVE_WEIGHT
                    }
            })
            .collect()
    }

    /// The leader of `round`.
    pub(crate) fn leader(&self, set: &ValidatorSet, round: u64) -> PublicKey {
        let weights = self.weights(set, round);
        let total: u64 = weights.iter().sum();
        let mut pick = mix(set.epoch, round) % total.max(1);
        for (v, w) in set.validators.iter().zip(weights) {
            if pick < w {
                return v.key;
            }
            pick -= w;
        }
        set.validators[0].key
    }
}

/// splitmix64 of `(epoch, round)`: a fixed, well-spread sequence (not a secret).
fn mix(epoch: u64, round: u64) -> u64 {
    let mut z = epoch
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(round)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use palisade_crypto::{SecretKey, Validator};

    use super::*;

    fn set(n: u8) -> ValidatorSet {
        ValidatorSet {
            epoch: 0,
            validators: (0..n)
                .map(|i| Validator {
                    key: SecretKey::from_seed([i + 1; 32]).public(),
                    power: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn without_history_every_validator_leads_some_rounds() {
        let s = set(4);
        let l = LeaderElection::new(10, 4);
        for v in &s.validators {
            assert!((1..200).any(|r| l.leader(&s, r) == v.key));
        }
    }

    #[test]
    fn a_validator_absent_from_committed_history_is_rarely_chosen() {
        let s = set(4);
        let crashed = s.validators[3].key;
        let alive: Vec<_> = s.validators[..3].iter().map(|v| v.key).collect();
        let mut l = LeaderElection::new(10, 4);
        for round in 1..=30 {
            l.record(CommitRecord {
                round,
                proposer: alive[round as usize % 3],
                voters: alive.clone(),
                failed: Vec::new(),
            });
        }
        let chosen = (35..1035).filter(|r| l.leader(&s, *r) == crashed).count();
        assert!(chosen < 20, "crashed validator led {chosen} of 1000 rounds");
        // The choice only depends on records at least `lag` rounds old.
        let mut later = l.clone();
        later.record(CommitRecord {
            round: 31,
            proposer: crashed,
            voters: vec![crashed],
            failed: Vec::new(),
        });
        assert_eq!(l.leader(&s, 34), later.leader(&s, 34));
    }

    #[test]
    fn a_leader_whose_round_was_skipped_is_demoted_at_once() {
        let s = set(4);
        let keys: Vec<_> = s.validators.iter().map(|v| v.key).collect();
        let mut l = LeaderElection::new(10, 2);
        l.record(CommitRecord {
            round: 1,
            proposer: keys[0],
            voters: keys.clone(),
            failed: Vec::new(),
        });
        let before = l.weights(&s, 10);
        assert!(before.iter().all(|w| *w == ACTIVE_WEIGHT));
        // Block of round 3 extends the QC of round 1: round 2's leader failed.
        l.record(CommitRecord {
            round: 3,
            proposer: keys[1],
            voters: keys.clone(),
            failed: vec![keys[3]],
        });
        let after = l.weights(&s, 10);
        assert_eq!(after[3], INACTIVE_WEIGHT);
        assert_eq!(after[0], ACTIVE_WEIGHT);
    }
}
