//! Pacemaker: the current round and its timer (Jolteon §4, DiemBFT v4 §4.2).
//!
//! A replica enters round r+1 on a QC or a TC of round r. Each round has a
//! deadline; the duration grows exponentially with the number of rounds since
//! the last commit (`base * backoff^k`, k capped), so timeouts stay short while
//! the chain commits and stretch when the network needs longer to heal. When a
//! deadline passes the replica times out and re-arms the timer, so a timeout is
//! re-broadcast until the round is left.

use super::Config;

/// Round and deadline.
#[derive(Debug, Clone)]
pub(crate) struct Pacemaker {
    round: u64,
    deadline_ms: u64,
    base_ms: u64,
    backoff_percent: u64,
    max_exponent: u32,
}

impl Pacemaker {
    pub(crate) fn new(config: &Config) -> Self {
        Pacemaker {
            round: 0,
            deadline_ms: 0,
            base_ms: config.base_timeout_ms.max(1),
            backoff_percent: config.backoff_percent.max(100),
            max_exponent: config.max_backoff_exponent,
        }
    }

    pub(crate) fn round(&self) -> u64 {
        self.round
    }

    pub(crate) fn deadline(&self) -> u64 {
        self.deadline_ms
    }

    /// Timeout of `round` when the highest committed round is `committed_round`.
    pub(crate) fn duration(&self, round: u64, committed_round: u64) -> u64 {
        // In the happy path round r commits round r - 2 (2-chain); one failed
        // round (which also orphans the block before it) keeps the base timeout.
        let behind = round.saturating_sub(committed_round.saturating_add(3));
        let exponent = behind.min(u64::from(self.max_exponent));
        let mut ms = self.base_ms;
        for _ in 0..exponent {
            ms = ms.saturating_mul(self.backoff_percent) / 100;
        }
        ms
    }

    /// Enter `round` (only forward). Returns whether the round changed.
    pub(crate) fn enter(&mut self, round: u64, now: u64, committed_round: u64) -> bool {
        if round <= self.round {
            return false;
        }
        self.round = round;
        self.deadline_ms = now.saturating_add(self.duration(round, committed_round));
        true
    }

    /// Back to round 0 (a new epoch starts its rounds afresh).
    pub(crate) fn reset(&mut self) {
        self.round = 0;
    }

    /// Start the timer again (after a local timeout, or at start).
    pub(crate) fn rearm(&mut self, now: u64, committed_round: u64) {
        self.deadline_ms = now.saturating_add(self.duration(self.round, committed_round));
    }

    pub(crate) fn expired(&self, now: u64) -> bool {
        now >= self.deadline_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_second_timeouts_back_off_exponentially_and_cap() {
        let mut config = Config::new("t");
        config.base_timeout_ms = 200;
        config.backoff_percent = 200;
        config.max_backoff_exponent = 3;
        let mut p = Pacemaker::new(&config);
        assert_eq!(p.duration(12, 10), 200);
        assert_eq!(p.duration(13, 10), 200);
        assert_eq!(p.duration(14, 10), 400);
        assert_eq!(p.duration(15, 10), 800);
        assert_eq!(p.duration(16, 10), 1600);
        assert_eq!(p.duration(40, 10), 1600);
        assert!(p.enter(3, 1_000, 1));
        assert_eq!(p.deadline(), 1_200);
        assert!(!p.enter(2, 5_000, 1), "rounds never go back");
        assert!(!p.expired(1_199));
        assert!(p.expired(1_200));
        // Three rounds past the last commit: the timeout starts growing.
        assert!(p.enter(6, 1_000, 1));
        assert_eq!(p.deadline(), 1_800);
    }
}
