//! Safety and liveness checkers over what honest instances commit.
//!
//! - Agreement: no two honest instances commit different blocks at one height.
//! - Equal state: honest instances agree on the state root at every height.
//! - Liveness after healing: some honest instance commits a new height
//!   within `liveness_bound_ms` of the heal.

use std::collections::BTreeMap;

use palisade_crypto::{BlockInfo, Digest};

/// A broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Two honest instances committed different blocks at one height.
    ConflictingCommit {
        /// The height.
        height: u64,
        /// First instance and its block.
        first: (usize, Digest),
        /// Second instance and its block.
        second: (usize, Digest),
    },
    /// Same block id, different state roots (non-deterministic execution).
    StateRootMismatch {
        /// The height.
        height: u64,
        /// Instances that disagree.
        nodes: (usize, usize),
    },
    /// Heights committed out of order by one instance.
    HeightGap {
        /// The instance.
        node: usize,
        /// Height expected.
        expected: u64,
        /// Height committed.
        got: u64,
    },
    /// An honest instance committed a block whose certified root is not
    /// what executing it gives (re-executed on a reference executor).
    WrongExecution {
        /// The height.
        height: u64,
        /// `state_root` or `tx_root`, or `execution` when it failed.
        field: &'static str,
    },
    /// No new commit within the bound after the network healed.
    NoProgressAfterHeal {
        /// When the network healed (ms).
        healed_at_ms: u64,
        /// The bound (ms).
        bound_ms: u64,
    },
}

/// Records honest commits and checks them as they come.
#[derive(Debug, Clone, Default)]
pub struct Checker {
    honest: Vec<bool>,
    by_height: BTreeMap<u64, (usize, Digest, Digest)>,
    first_commit_ms: BTreeMap<u64, u64>,
    last_height: Vec<u64>,
    violations: Vec<Violation>,
}

impl Checker {
    /// `honest[i]` says whether instance i counts.
    pub fn new(honest: Vec<bool>) -> Self {
        Checker {
            last_height: vec![0; honest.len()],
            honest,
            ..Checker::default()
        }
    }

    /// Instance `node` committed `info` at `now`.
    pub fn on_commit(&mut self, node: usize, now: u64, info: &BlockInfo) {
        if !self.honest[node] {
            return;
        }
        let expected = self.last_height[node] + 1;
        if info.height != expected {
            self.violations.push(Violation::HeightGap {
                node,
                expected,
                got: info.height,
            });
        }
        self.last_height[node] = info.height;
        match self.by_height.get(&info.height) {
            None => {
                self.by_height
                    .insert(info.height, (node, info.block_id, info.state_root));
                self.first_commit_ms.insert(info.height, now);
            }
            Some((other, id, root)) => {
                if *id != info.block_id {
                    self.violations.push(Violation::ConflictingCommit {
                        height: info.height,
                        first: (*other, *id),
                        second: (node, info.block_id),
                    });
                } else if *root != info.state_root {
                    self.violations.push(Violation::StateRootMismatch {
                        height: info.height,
                        nodes: (*other, node),
                    });
                }
            }
        }
    }

    /// Does instance `node` count as honest?
    pub fn is_honest(&self, node: usize) -> bool {
        self.honest[node]
    }

    /// Record a violation found outside the checker (e.g. by re-execution).
    pub fn push(&mut self, violation: Violation) {
        self.violations.push(violation);
    }

    /// An instance restarted with no state: its heights start again from 1.
    pub fn reset_node(&mut self, node: usize) {
        self.last_height[node] = 0;
    }

    /// Check liveness after a heal at `healed_at_ms`, the run having lasted to `end_ms`.
    pub fn check_heal(&mut self, healed_at_ms: u64, bound_ms: u64, end_ms: u64) {
        if end_ms < healed_at_ms + bound_ms {
            return; // the run ended before the bound: nothing to say
        }
        let resumed = self
            .first_commit_ms
            .values()
            .any(|t| *t > healed_at_ms && *t <= healed_at_ms + bound_ms);
        if !resumed {
            self.violations.push(Violation::NoProgressAfterHeal {
                healed_at_ms,
                bound_ms,
            });
        }
    }

    /// Everything broken so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Highest height committed by any honest instance.
    pub fn height(&self) -> u64 {
        self.by_height.keys().next_back().copied().unwrap_or(0)
    }

    /// Heights first committed in `[from_ms, to_ms)`.
    pub fn commits_between(&self, from_ms: u64, to_ms: u64) -> u64 {
        self.first_commit_ms
            .values()
            .filter(|t| **t >= from_ms && **t < to_ms)
            .count() as u64
    }

    /// When a height was first committed by an honest instance.
    pub fn first_commit_ms(&self, height: u64) -> Option<u64> {
        self.first_commit_ms.get(&height).copied()
    }
}
