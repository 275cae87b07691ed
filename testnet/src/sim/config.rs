//! What a simulated run looks like: size, faults, schedule.

use palisade_consensus::hotstuff::Config;

/// Message-level faults, applied to every message until the network heals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetFaults {
    /// Percent of messages dropped.
    pub drop_percent: u32,
    /// Percent of messages delivered twice.
    pub duplicate_percent: u32,
    /// Smallest delivery delay (ms).
    pub min_delay_ms: u64,
    /// Largest delivery delay (ms); random delays reorder messages.
    pub max_delay_ms: u64,
    /// Percent of messages with one random bit flipped in flight (a
    /// Byzantine network: every such message must be refused, never panic).
    pub corrupt_percent: u32,
    /// Percent of messages held back 300-1,500 ms (a slow link or leader):
    /// longer than a round timeout, so they arrive after their receiver timed out.
    pub slow_percent: u32,
}

impl NetFaults {
    /// A healthy network: 8-12 ms one way (10 ms +-20% jitter), nothing lost.
    pub fn healthy() -> Self {
        NetFaults {
            drop_percent: 0,
            duplicate_percent: 0,
            min_delay_ms: 8,
            max_delay_ms: 12,
            corrupt_percent: 0,
            slow_percent: 0,
        }
    }
}

/// Twins-style partition for a range of rounds: a message sent by an
/// instance in round r in `rounds` reaches only instances of its group,
/// except where a [`Link`] says otherwise for one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundPartition {
    /// First round (inclusive).
    pub from_round: u64,
    /// Last round (inclusive).
    pub to_round: u64,
    /// Groups of instance indices; instances in no group are isolated.
    pub groups: Vec<Vec<usize>>,
    /// Directed exceptions to the groups, in these rounds.
    pub links: Vec<Link>,
}

impl RoundPartition {
    /// Groups for rounds `from_round..=to_round`, no exceptions.
    pub fn new(from_round: u64, to_round: u64, groups: Vec<Vec<usize>>) -> Self {
        RoundPartition {
            from_round,
            to_round,
            groups,
            links: Vec::new(),
        }
    }
}

/// One direction of one pair of instances, overriding the groups of a
/// [`RoundPartition`]: what `from` sends to `to` is dropped (`late_ms:
/// None`) or delivered `late_ms` later than the network's own delay. A late
/// link is how a schedule says "this proposal arrives after its receiver
/// timed out" (messages between two instances stay in order: each copy gets
/// the same extra delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Sending instance.
    pub from: usize,
    /// Receiving instance.
    pub to: usize,
    /// Extra delay (ms), or `None`: dropped.
    pub late_ms: Option<u64>,
}

/// A partition by virtual time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimePartition {
    /// Start (ms, inclusive).
    pub from_ms: u64,
    /// End (ms, exclusive).
    pub to_ms: u64,
    /// Groups of instance indices.
    pub groups: Vec<Vec<usize>>,
}

/// A crash of one instance, possibly followed by a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crash {
    /// Instance index (ignored when `leader` is set).
    pub node: usize,
    /// Crash whichever instance leads the current round at `at_ms` (a leader
    /// crash mid-round) instead of `node`.
    pub leader: bool,
    /// When it stops (ms).
    pub at_ms: u64,
    /// When it comes back, if ever.
    pub restart_at_ms: Option<u64>,
    /// Restart with nothing persisted (a wiped disk) instead of its persisted state.
    pub lose_state: bool,
}

/// A simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of everything random (keys, delays, losses).
    pub seed: u64,
    /// Validators (each one instance, plus a second for each twin).
    pub validators: usize,
    /// Validator indices that run two instances with one key (Twins).
    pub twins: Vec<usize>,
    /// Validator indices whose proposals leave with a false state root,
    /// re-signed with their key (a Byzantine leader lying about execution).
    pub liars: Vec<usize>,
    /// Virtual duration (ms).
    pub duration_ms: u64,
    /// Message faults until `heal_at_ms`.
    pub faults: NetFaults,
    /// Round-indexed partitions (until `heal_at_ms`).
    pub round_partitions: Vec<RoundPartition>,
    /// Time-indexed partitions (until `heal_at_ms`).
    pub time_partitions: Vec<TimePartition>,
    /// From then on: no loss, no duplication, no partition.
    pub heal_at_ms: Option<u64>,
    /// Crashes and restarts.
    pub crashes: Vec<Crash>,
    /// The consensus configuration of every replica.
    pub consensus: Config,
    /// After healing, honest replicas must commit a new block within this (ms).
    pub liveness_bound_ms: u64,
}

impl SimConfig {
    /// A healthy run of `validators` replicas for 20 virtual seconds, with
    /// 300 ms base timeouts (the core's default backoff: x1.2 per round
    /// without commit, at most x3).
    pub fn new(seed: u64, validators: usize) -> Self {
        let mut consensus = Config::new("sim-chain");
        consensus.base_timeout_ms = 300;
        consensus.max_clock_drift_ms = 500;
        SimConfig {
            seed,
            validators,
            twins: Vec::new(),
            liars: Vec::new(),
            duration_ms: 20_000,
            faults: NetFaults::healthy(),
            round_partitions: Vec::new(),
            time_partitions: Vec::new(),
            heal_at_ms: None,
            crashes: Vec::new(),
            consensus,
            liveness_bound_ms: 15_000,
        }
    }
}
