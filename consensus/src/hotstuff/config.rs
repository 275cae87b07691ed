//! Tunables of the core. Every duration is in milliseconds of the shell's
//! clock (the `now` it passes in); sub-second timeouts are fine.

/// Replica configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Chain id signed into every ledger info, timeout and proposal.
    pub chain_id: String,
    /// Hash of the genesis document, signed into every ledger info (and so
    /// every certificate) with the chain id; a certificate naming another
    /// genesis is refused. [`Config::new`] leaves it zero: shells running a
    /// real genesis set it.
    pub genesis_hash: palisade_crypto::Digest,
    /// Round timeout while the chain commits (ms).
    pub base_timeout_ms: u64,
    /// Growth of the timeout per round without commit, in percent (150 = x1.5).
    pub backoff_percent: u64,
    /// Cap on the backoff exponent.
    pub max_backoff_exponent: u32,
    /// How far ahead of `now` a block timestamp may be (ms).
    pub max_clock_drift_ms: u64,
    /// Largest payload accepted in a block.
    pub max_payload_bytes: usize,
    /// Committed blocks the leader reputation looks at.
    pub reputation_window: usize,
    /// Rounds between a round and the newest committed round its leader
    /// choice may depend on (so replicas that commit a little later agree).
    pub reputation_lag: u64,
    /// Blocks per sync response.
    pub sync_batch: u32,
    /// Committed blocks kept in memory to answer sync requests.
    pub retain_committed: usize,
    /// Send votes to every validator (each forms the QC and commits on its
    /// own) instead of only to the next leader (Jolteon's linear happy path).
    /// With votes only at the next leader, a crashed leader of round r also
    /// loses round r-1 (its votes go nowhere): two timeouts per crashed
    /// leader instead of one. For the 4-10 validators of a registry
    /// datacenter the quadratic vote traffic is a few KB per round.
    pub broadcast_votes: bool,
    /// Twins scenarios (tests only): the leader of round r in `1..=len` is
    /// validator `leader_schedule[r - 1]` (index into the set, modulo its
    /// size) instead of the election's choice; later rounds use the election.
    #[cfg(any(test, feature = "testing"))]
    pub leader_schedule: Vec<usize>,
}

impl Config {
    /// Defaults for `chain_id`: 1 s base timeout growing x1.2 per round
    /// without commit (at most x3, as Aptos: with one crashed validator,
    /// several rounds in a row can fail with the network healthy, and x1.5
    /// stretched that to 20 s), 1 s drift, 1 MiB payloads, reputation over
    /// the last 20 committed blocks at least 3 rounds old, votes broadcast.
    pub fn new(chain_id: impl Into<String>) -> Self {
        Config {
            chain_id: chain_id.into(),
            genesis_hash: palisade_crypto::Digest::ZERO,
            base_timeout_ms: 1_000,
            backoff_percent: 120,
            max_backoff_exponent: 6,
            max_clock_drift_ms: 1_000,
            max_payload_bytes: 1 << 20,
            reputation_window: 20,
            reputation_lag: 3,
            sync_batch: 64,
            retain_committed: 1_024,
            broadcast_votes: true,
            #[cfg(any(test, feature = "testing"))]
            leader_schedule: Vec::new(),
        }
    }
}
