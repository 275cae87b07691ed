//! Simulator scenarios of issue 3, each over many seeds. `SIM_SEEDS=K` runs
//! K seeds per scenario instead of the default, `SIM_SEED=N` replays one; a
//! failure prints its seed and the replay command.
//!
//! Figures (commits/s, rounds/s, throughput ratio) are virtual-time and
//! printed with `--no-capture`.

// The scenarios report their virtual-time figures on stderr.
#![allow(clippy::print_stderr)]

#[path = "sim/byzantine.rs"]
mod byzantine;
#[path = "sim/registry.rs"]
mod registry;
#[path = "sim/twins.rs"]
mod twins;

use palisade_consensus::hotstuff::SimExecutor;
use palisade_testnet::sim::{
    for_each_seed, Crash, NetFaults, SimConfig, SimPayloads, SimReport, Simulation, TimePartition,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub(crate) type Sim = Simulation<SimExecutor, SimPayloads>;

/// A simulation over the hash-chain executor; `epoch_end` ends epoch 0 at that height.
pub(crate) fn simulation_with_epoch(config: SimConfig, epoch_end: Option<u64>) -> Sim {
    Simulation::hash_chain_with_epoch(config, 4, epoch_end).expect("simulation starts")
}

pub(crate) fn simulation(config: SimConfig) -> Sim {
    Simulation::hash_chain(config, 4).expect("simulation starts")
}

pub(crate) fn safe(r: &SimReport) -> Result<(), String> {
    if r.violations.is_empty() {
        Ok(())
    } else {
        Err(format!("violations: {:?}", r.violations))
    }
}

pub(crate) fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

#[test]
fn healthy_4_and_7() {
    for_each_seed("healthy_4_and_7", 6, |seed| {
        for n in [4, 7] {
            let mut c = SimConfig::new(seed, n);
            c.duration_ms = 10_000;
            let r = simulation(c).run();
            safe(&r)?;
            eprintln!(
                "healthy n={n} seed={seed}: height {} rounds {} -> {:.1} commits/s, {:.1} rounds/s",
                r.height,
                r.max_round,
                r.commits_per_s(),
                r.rounds_per_s()
            );
            // 5-20 ms links: a round takes two message delays.
            ensure(r.commits_per_s() >= 20.0, || {
                format!("only {:.1} commits/s", r.commits_per_s())
            })?;
            let behind = r.heights.iter().map(|h| r.height - h).max().unwrap_or(0);
            ensure(behind <= 3, || {
                format!(
                    "an honest replica is {behind} blocks behind: {:?}",
                    r.heights
                )
            })?;
        }
        Ok(())
    });
}

/// Two runs of `n` validators to `end_ms`: healthy, and with the last
/// validator crashed at `crash_at_ms` for good.
fn healthy_and_crashed(seed: u64, n: usize, end_ms: u64, crash_at_ms: u64) -> (Sim, Sim) {
    let mut healthy = SimConfig::new(seed, n);
    healthy.duration_ms = end_ms;
    let mut crashed = healthy.clone();
    crashed.crashes.push(Crash {
        node: n - 1,
        leader: false,
        at_ms: crash_at_ms,
        restart_at_ms: None,
        lose_state: false,
    });
    let mut base = simulation(healthy);
    base.run_until(end_ms);
    let mut sim = simulation(crashed);
    sim.run_until(end_ms);
    (base, sim)
}

#[test]
fn one_of_four_crashed_keeps_80_percent_throughput() {
    // Reputation looks 20 committed blocks back with a lag of 3 rounds; by
    // 5 s the crashed validator is out of every window.
    const WARMUP_MS: u64 = 5_000;
    const END_MS: u64 = 20_000;
    for_each_seed(
        "one_of_four_crashed_keeps_80_percent_throughput",
        3,
        |seed| {
            for n in [4, 7] {
                let (mut base, mut sim) = healthy_and_crashed(seed, n, END_MS, 0);
                let base_report = base.report();
                let report = sim.report();
                safe(&report)?;
                let a = base
                    .checker()
                    .commits_between(base.genesis().timestamp_ms + WARMUP_MS, u64::MAX);
                let b = sim
                    .checker()
                    .commits_between(sim.genesis().timestamp_ms + WARMUP_MS, u64::MAX);
                let ratio = b as f64 / a.max(1) as f64;
                let window_s = (END_MS - WARMUP_MS) as f64 / 1000.0;
                eprintln!(
                "n={n} seed={seed}: healthy {:.1} commits/s {:.1} rounds/s; 1 crashed {:.1} commits/s {:.1} rounds/s; after warm-up {:.1} vs {:.1} commits/s = {:.0}%",
                base_report.commits_per_s(),
                base_report.rounds_per_s(),
                report.commits_per_s(),
                report.rounds_per_s(),
                a as f64 / window_s,
                b as f64 / window_s,
                ratio * 100.0
            );
                ensure(ratio >= 0.8, || {
                    format!(
                        "n={n}: crashed run commits {b} vs healthy {a} after warm-up ({:.0}%)",
                        ratio * 100.0
                    )
                })?;
            }
            Ok(())
        },
    );
}

#[test]
fn leader_crash_restart_and_wiped_node_rejoin() {
    for_each_seed("leader_crash_restart_and_wiped_node_rejoin", 8, |seed| {
        let mut c = SimConfig::new(seed, 4);
        c.duration_ms = 20_000;
        c.crashes.push(Crash {
            node: 0,
            leader: true,
            at_ms: 3_003,
            restart_at_ms: Some(6_000),
            lose_state: false,
        });
        c.crashes.push(Crash {
            node: 0,
            leader: true,
            at_ms: 10_007,
            restart_at_ms: Some(12_000),
            lose_state: true,
        });
        let mut sim = simulation(c);
        sim.run_until(20_000);
        let first = sim
            .crashed_instance(0)
            .ok_or("first crash did not happen")?;
        let second = sim
            .crashed_instance(1)
            .ok_or("second crash did not happen")?;
        let r = sim.report();
        safe(&r)?;
        for node in [first, second] {
            let replica = sim.replica(node).ok_or("crashed replica did not restart")?;
            let behind = r.height - replica.committed().height;
            ensure(behind <= 5, || {
                format!(
                    "instance {node} is {behind} blocks behind after its restart ({:?})",
                    r.heights
                )
            })?;
        }
        ensure(r.height >= 200, || {
            format!("only {} blocks committed", r.height)
        })?;
        Ok(())
    });
}

/// Random time partitions before `heal_ms`: a split, an isolated node, a ring-ish cut.
fn random_time_partitions(rng: &mut ChaCha8Rng, n: usize, heal_ms: u64) -> Vec<TimePartition> {
    let mut out = Vec::new();
    let mut t = 1_000;
    while t < heal_ms {
        let len = rng.gen_range(500..3_000);
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.gen_range(0..=i));
        }
        let cut = rng.gen_range(1..n);
        out.push(TimePartition {
            from_ms: t,
            to_ms: (t + len).min(heal_ms),
            groups: vec![order[..cut].to_vec(), order[cut..].to_vec()],
        });
        t += len + rng.gen_range(500..2_000);
    }
    out
}

#[test]
fn lossy_network_safe_and_live_after_healing() {
    const HEAL_MS: u64 = 10_000;
    for_each_seed("lossy_network_safe_and_live_after_healing", 12, |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x10557);
        let n = if seed % 2 == 0 { 4 } else { 7 };
        let mut c = SimConfig::new(seed, n);
        c.duration_ms = 26_000;
        c.liveness_bound_ms = 15_000;
        c.faults = NetFaults {
            drop_percent: rng.gen_range(10..=30),
            duplicate_percent: rng.gen_range(5..=20),
            min_delay_ms: 1,
            max_delay_ms: rng.gen_range(50..300),
            corrupt_percent: 0,
            slow_percent: 0,
        };
        c.time_partitions = random_time_partitions(&mut rng, n, HEAL_MS);
        c.heal_at_ms = Some(HEAL_MS);
        let r = simulation(c).run();
        safe(&r)?;
        eprintln!(
            "lossy n={n} seed={seed}: height {} rounds {} wire {:?}",
            r.height,
            r.max_round,
            (r.wire.sent, r.wire.dropped, r.wire.duplicated)
        );
        Ok(())
    });
}

/// Longest wait (virtual ms) between consecutive first commits in `[from_ms, to_ms)`.
fn longest_stall(sim: &Sim, from_ms: u64, to_ms: u64) -> u64 {
    let r = sim.checker();
    let times: Vec<u64> = (1..=r.height())
        .filter_map(|h| r.first_commit_ms(h))
        .filter(|t| *t >= from_ms && *t < to_ms)
        .collect();
    let mut last = from_ms;
    let mut worst = 0;
    for t in times.into_iter().chain([to_ms]) {
        worst = worst.max(t.saturating_sub(last));
        last = t;
    }
    worst
}

#[test]
fn validator_crashing_mid_run_is_excluded_quickly() {
    // A validator that led and voted for 5 s (so it is reputed active)
    // crashes; reputation must stop choosing it after its first skipped
    // rounds, not after it has out-failed its whole record. Measured here
    // (seed 0, n=4, 10 s after the crash): the old rule "more failures than
    // proposals", x1.5 backoff and votes to the next leader only: 30% of
    // healthy commits, a 6.2 s stall; recency rule: 36%; with x1.2 backoff
    // and a lag of 3: 60%, 3.1 s; with votes broadcast: 88%, 0.36 s.
    // `RUST_LOG=palisade_consensus=debug` shows the rounds.
    const CRASH_MS: u64 = 5_000;
    const END_MS: u64 = 15_000;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    for_each_seed(
        "validator_crashing_mid_run_is_excluded_quickly",
        4,
        |seed| {
            for n in [4, 7] {
                let (base, mut sim) = healthy_and_crashed(seed, n, END_MS, CRASH_MS);
                safe(&sim.report())?;
                let t0 = sim.genesis().timestamp_ms;
                let (from, to) = (t0 + CRASH_MS, t0 + END_MS);
                let a = base.checker().commits_between(from, to);
                let b = sim.checker().commits_between(from, to);
                let stall = longest_stall(&sim, from, to);
                let ratio = b as f64 / a.max(1) as f64;
                let timeouts = sim.report().errors.clone();
                eprintln!(
                "n={n} seed={seed}: after the crash {b} vs healthy {a} commits in 10 s = {:.0}%, longest stall {stall} ms ({timeouts:?})",
                ratio * 100.0
            );
                ensure(ratio >= 0.8, || {
                    format!(
                    "n={n}: {b} vs {a} commits in the 10 s after the crash ({:.0}%), longest stall {stall} ms",
                    ratio * 100.0
                )
                })?;
            }
            Ok(())
        },
    );
}
