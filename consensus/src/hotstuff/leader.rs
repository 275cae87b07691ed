//! Leader election: weighted rotation with reputation from committed history
//! (after Aptos `LeaderReputation`, "ProposerAndVoter").
//!
//! The leader of round r is drawn, with a deterministic mix of `(epoch, r)`,
//! from the validators weighted by `power x reputation`. Reputation looks at
//! the last `reputation_window` committed blocks whose round is at most
//! `r - reputation_lag`. A validator is *active* (weight x1000) when it shows
//! a sign of life there (it proposed a committed block, or signed a committed
//! block's parent QC) *later* than its last failure there (it led a round
//! that a committed block skipped); the others keep weight x1.
//!
//! Recency, not a count, decides: a validator that proposed many blocks and
//! then crashed is demoted by its first recorded failure, so it costs one or
//! two timeouts, not one per block it proposed while healthy (that was the
//! earlier rule, "more failures than proposals", and a validator killed after
//! minutes of service stalled a real 4-node cluster for 10-40 s). An honest
//! leader whose round failed through no fault of its own (its votes went to a
//! crashed next leader) is active again with its next vote in a committed QC.
//! Everything is a function of committed data and the round, so all honest
//! replicas that committed the same prefix agree on every leader.

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
    /// Round of the parent QC (the round `voters` voted in).
    pub(crate) voted_round: u64,
    /// Rounds skipped before this block, with their leaders.
    pub(crate) failed: Vec<(u64, PublicKey)>,
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
                let proposed = window
                    .iter()
                    .filter(|r| r.proposer == v.key)
                    .map(|r| r.round);
                let voted = window
                    .iter()
                    .filter(|r| r.voters.contains(&v.key))
                    .map(|r| r.voted_round);
                let last_alive = proposed.chain(voted).max();
                let last_failed = window
                    .iter()
                    .flat_map(|r| r.failed.iter())
                    .filter(|(_, k)| *k == v.key)
                    .map(|(round, _)| *round)
                    .max();
                let active = window.is_empty()
                    || match (last_alive, last_failed) {
                        (Some(alive), Some(failed)) => alive > failed,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
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

    /// A committed block of `round` on a QC of `round - 1`, all of `voters` signing.
    fn block(round: u64, proposer: PublicKey, voters: &[PublicKey]) -> CommitRecord {
        CommitRecord {
            round,
            proposer,
            voters: voters.to_vec(),
            voted_round: round - 1,
            failed: Vec::new(),
        }
    }

    #[test]
    fn a_validator_absent_from_committed_history_is_rarely_chosen() {
        let s = set(4);
        let crashed = s.validators[3].key;
        let alive: Vec<_> = s.validators[..3].iter().map(|v| v.key).collect();
        let mut l = LeaderElection::new(10, 4);
        for round in 1..=30 {
            l.record(block(round, alive[round as usize % 3], &alive));
        }
        let chosen = (35..1035).filter(|r| l.leader(&s, *r) == crashed).count();
        assert!(chosen < 20, "crashed validator led {chosen} of 1000 rounds");
        // The choice only depends on records at least `lag` rounds old.
        let mut later = l.clone();
        later.record(block(31, crashed, &[crashed]));
        assert_eq!(l.leader(&s, 34), later.leader(&s, 34));
    }

    #[test]
    fn a_leader_whose_round_was_skipped_is_demoted_at_once() {
        let s = set(4);
        let keys: Vec<_> = s.validators.iter().map(|v| v.key).collect();
        let mut l = LeaderElection::new(10, 2);
        l.record(block(1, keys[0], &keys));
        let before = l.weights(&s, 10);
        assert!(before.iter().all(|w| *w == ACTIVE_WEIGHT));
        // Block of round 3 extends the QC of round 1: round 2's leader failed.
        l.record(CommitRecord {
            round: 3,
            proposer: keys[1],
            voters: keys.clone(),
            voted_round: 1,
            failed: vec![(2, keys[3])],
        });
        let after = l.weights(&s, 10);
        assert_eq!(after[3], INACTIVE_WEIGHT);
        assert_eq!(after[0], ACTIVE_WEIGHT);
    }

    #[test]
    fn a_long_serving_validator_that_crashes_is_demoted_by_its_first_failure() {
        // keys[3] proposed a quarter of 20 committed blocks, then crashed:
        // the next committed block skips its round. The old rule (demote
        // only when failures outnumber proposals) kept it active for five
        // more failures, each a round timeout.
        let s = set(4);
        let keys: Vec<_> = s.validators.iter().map(|v| v.key).collect();
        let mut l = LeaderElection::new(20, 2);
        for round in 1..=20 {
            l.record(block(round, keys[round as usize % 4], &keys));
        }
        let alive = &keys[..3];
        l.record(CommitRecord {
            round: 22,
            proposer: keys[0],
            voters: alive.to_vec(),
            voted_round: 20,
            failed: vec![(21, keys[3])],
        });
        let w = l.weights(&s, 24);
        assert_eq!(w[3], INACTIVE_WEIGHT, "{w:?}");
        assert!(w[..3].iter().all(|x| *x == ACTIVE_WEIGHT), "{w:?}");
        // Before the lag has passed, the failure is not yet visible.
        assert_eq!(l.weights(&s, 23)[3], ACTIVE_WEIGHT);
    }

    #[test]
    fn an_honest_leader_failed_by_the_next_one_is_active_again_after_voting() {
        // Round 21's block never got a QC because round 22's leader (keys[3])
        // had crashed and the votes went to it; both are recorded as failed.
        let s = set(4);
        let keys: Vec<_> = s.validators.iter().map(|v| v.key).collect();
        let alive = &keys[..3];
        let mut l = LeaderElection::new(20, 1);
        for round in 1..=20 {
            l.record(block(round, keys[round as usize % 4], &keys));
        }
        l.record(CommitRecord {
            round: 23,
            proposer: keys[0],
            voters: alive.to_vec(),
            voted_round: 20,
            failed: vec![(22, keys[3]), (21, keys[1])],
        });
        assert_eq!(l.weights(&s, 24)[1], INACTIVE_WEIGHT);
        // keys[1] signs the QC of round 23 carried by the next committed block.
        l.record(block(24, keys[2], alive));
        let w = l.weights(&s, 25);
        assert_eq!(w[1], ACTIVE_WEIGHT, "{w:?}");
        assert_eq!(w[3], INACTIVE_WEIGHT, "{w:?}");
    }
}
