//! Swarm simulation (after TigerBeetle's VOPR and FoundationDB's simulation):
//! each seed draws its own mix of faults and workload, runs the real core
//! over the hash-chain executor, and every invariant of the [`Checker`] is
//! checked, plus re-execution of every committed block.
//!
//! What a seed may draw, within the Byzantine budget f = (n-1)/3:
//! - n in {4, 5, 7}; up to f Byzantine keys, each a twin (two instances,
//!   one key: equivocation from unmodified code) or a liar (its proposals
//!   carry a false state root, re-signed);
//! - Twins round partitions: for n = 4 with one twin, a scenario sampled
//!   from the enumerated space (80 partition x leader choices per round over
//!   8 rounds, late messages in some rounds, votes to the next leader;
//!   [`twins_gen`](super::twins_gen)); otherwise random per-round groups;
//! - loss, duplication, delay/reordering, bit flips in flight and slow
//!   messages (held back past a round timeout); time partitions;
//! - crashes (of a leader or a fixed node) with restart from disk, and
//!   wiped disks (amnesia, counted as Byzantine);
//! - an epoch change at a random height; 0-8 transactions per block;
//! - a quarter of the seeds heal the network and must then make progress.
//!
//! A seed replays exactly: `palisade-testnet sim swarm --from S --seeds 1`.
//! `sim schedule [NAME]` runs the named fork schedules ([`schedules`]).

use std::fmt::Write as _;
use std::time::Instant;

use palisade_consensus::hotstuff::{ConsensusError, Mutation};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::schedules;
use super::twins_gen::TwinsScenario;
use super::{Crash, NetFaults, RoundPartition, SimConfig, SimReport, Simulation, TimePartition};

/// What one seed runs.
#[derive(Debug, Clone)]
pub struct SwarmPlan {
    /// The simulation.
    pub config: SimConfig,
    /// Height that ends epoch 0, if any.
    pub epoch_end: Option<u64>,
    /// Transactions per block.
    pub txs: usize,
    /// The Twins scenario, when the plan is an enumerated one.
    pub twins_scenario: Option<TwinsScenario>,
}

impl SwarmPlan {
    /// One line naming what was drawn.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "n={} twins={:?} liars={:?} dur={}ms heal={:?} drop={}% dup={}% delay={}-{}ms flip={}% slow={}% round-parts={} time-parts={} crashes={} wipes={} epoch_end={:?} txs={}",
            c.validators,
            c.twins,
            c.liars,
            c.duration_ms,
            c.heal_at_ms,
            c.faults.drop_percent,
            c.faults.duplicate_percent,
            c.faults.min_delay_ms,
            c.faults.max_delay_ms,
            c.faults.corrupt_percent,
            c.faults.slow_percent,
            c.round_partitions.len(),
            c.time_partitions.len(),
            c.crashes.len(),
            c.crashes.iter().filter(|c| c.lose_state).count(),
            self.epoch_end,
            self.txs,
        );
        if let Some(t) = &self.twins_scenario {
            let _ = write!(s, " twins-scenario: {}", t.describe());
        }
        s
    }

    /// Run it.
    pub fn run(&self) -> Result<SimReport, ConsensusError> {
        let sim = Simulation::hash_chain_with_epoch(self.config.clone(), self.txs, self.epoch_end)?;
        Ok(sim.run())
    }
}

/// Rounds covered by Twins partitions (the first rounds, where a 2-chain
/// fork needs its schedule; later rounds run connected). The named fork
/// schedules ([`schedules`]) need 6-7.
const TWINS_ROUNDS: u64 = 8;

/// Percent of Twins scenario rounds with a late set.
const TWINS_LATE_PERCENT: u32 = 30;

/// Draw the plan of `seed`.
pub fn draw(seed: u64) -> SwarmPlan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5A4D_5741_524D);
    let n = *[4, 4, 4, 4, 4, 4, 4, 5, 7, 7]
        .choose(&mut rng)
        .expect("non-empty");
    let f = (n - 1) / 3;
    let mut config = SimConfig::new(seed, n);
    // Byzantine keys: twins, liars, wiped disks, in any mix up to f.
    let byzantine = if rng.gen_bool(0.8) {
        f
    } else {
        rng.gen_range(0..=f)
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let mut wiped = Vec::new();
    for &v in order.iter().take(byzantine) {
        match rng.gen_range(0..10) {
            0..=5 => config.twins.push(v),
            6..=7 => config.liars.push(v),
            _ => wiped.push(v),
        }
    }
    let liveness = rng.gen_bool(0.25);
    let heal = rng.gen_range(1_000..4_000);
    if liveness {
        config.heal_at_ms = Some(heal);
        config.liveness_bound_ms = 12_000;
        config.duration_ms = heal + config.liveness_bound_ms + 200;
    } else {
        config.heal_at_ms = rng.gen_bool(0.5).then_some(heal);
        config.duration_ms = rng.gen_range(2_000..5_000);
    }
    if rng.gen_bool(0.6) {
        config.faults = NetFaults {
            drop_percent: rng.gen_range(0..=30),
            duplicate_percent: rng.gen_range(0..=20),
            min_delay_ms: 1,
            max_delay_ms: rng.gen_range(15..250),
            corrupt_percent: if rng.gen_bool(0.3) {
                rng.gen_range(1..=3)
            } else {
                0
            },
            slow_percent: if rng.gen_bool(0.4) {
                rng.gen_range(1..=15)
            } else {
                0
            },
        };
    }
    let instances = n + config.twins.len();
    let mut twins_scenario = None;
    if !config.twins.is_empty() && rng.gen_bool(0.85) {
        if instances == 5 {
            twins_scenario = Some(twins_plan(&mut config, &mut rng));
        } else {
            config.round_partitions = random_round_partitions(&mut rng, instances, TWINS_ROUNDS);
        }
    } else if rng.gen_bool(0.3) {
        config.time_partitions =
            random_time_partitions(&mut rng, n, config.heal_at_ms.unwrap_or(config.duration_ms));
    }
    // Crashes with a restart from disk are benign; a wiped disk is amnesia.
    for _ in 0..rng.gen_range(0..=2) {
        let at_ms = rng.gen_range(200..config.duration_ms.max(400));
        config.crashes.push(Crash {
            node: rng.gen_range(0..instances),
            leader: rng.gen_bool(0.5),
            at_ms,
            restart_at_ms: Some(at_ms + rng.gen_range(100..1_500)),
            lose_state: false,
        });
    }
    for v in wiped {
        let at_ms = rng.gen_range(200..config.duration_ms.max(400));
        config.crashes.push(Crash {
            node: v,
            leader: false,
            at_ms,
            restart_at_ms: Some(at_ms + rng.gen_range(0..500)),
            lose_state: true,
        });
    }
    // A benign crash that hit a Byzantine key's instance, or a leader, is
    // fine for safety; liveness seeds keep benign crashes before the heal.
    if let Some(h) = config.heal_at_ms {
        for c in config.crashes.iter_mut().filter(|c| !c.lose_state) {
            if c.restart_at_ms.is_some_and(|r| r >= h) {
                c.at_ms = c.at_ms.min(h.saturating_sub(600));
                c.restart_at_ms = Some(c.at_ms + 300);
            }
        }
    }
    let epoch_end = rng.gen_bool(0.2).then(|| rng.gen_range(3..40));
    SwarmPlan {
        config,
        epoch_end,
        txs: rng.gen_range(0..=8),
        twins_scenario,
    }
}

/// The plan of an enumerated Twins scenario for n = 4 with one twin: 8
/// rounds sampled by `seed` from the 80^8 (partition, leader) space, late
/// sets in some rounds, 0-10% of other messages slowed past a round timeout
/// and no other fault.
pub fn draw_twins(seed: u64) -> SwarmPlan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7714_5EED);
    let mut config = SimConfig::new(seed, 4);
    config.twins = vec![rng.gen_range(0..4)];
    // A scenario round without a quorum in the leader's group can leave
    // part of a group a round behind for ever (partitions are by round), so
    // the network heals after a while and the run goes on healthy.
    let heal = rng.gen_range(2_500..4_000);
    config.heal_at_ms = Some(heal);
    config.duration_ms = heal + 1_500;
    // One seed in four: a scenario like a named fork schedule (relabelled,
    // its late delay and later rounds drawn); the rest sampled uniformly.
    let scenario = if rng.gen_range(0..4) == 0 {
        let named = schedules::all();
        let base = &named[rng.gen_range(0..named.len())].scenario;
        let (twin, scenario) =
            TwinsScenario::near(base, TWINS_ROUNDS, TWINS_LATE_PERCENT, &mut rng);
        config.twins = vec![twin];
        scenario.apply(&mut config);
        scenario
    } else {
        twins_plan(&mut config, &mut rng)
    };
    // Some messages outside the scenario's late sets are slow too.
    config.faults.slow_percent = rng.gen_range(0..=10);
    SwarmPlan {
        config,
        epoch_end: None,
        txs: 2,
        twins_scenario: Some(scenario),
    }
}

/// Draw a Twins scenario for `config` (n = 4, one twin) and apply it: per
/// round a partition and leader of the enumerated space, a late set in
/// [`TWINS_LATE_PERCENT`] of the rounds, votes to the next leader.
fn twins_plan(config: &mut SimConfig, rng: &mut ChaCha8Rng) -> TwinsScenario {
    let twin = config.twins[0];
    let late_ms = rng.gen_range(600..2_000);
    let scenario = TwinsScenario::sample(twin, TWINS_ROUNDS, TWINS_LATE_PERCENT, late_ms, rng);
    scenario.apply(config);
    scenario
}

fn random_round_partitions(
    rng: &mut ChaCha8Rng,
    instances: usize,
    rounds: u64,
) -> Vec<RoundPartition> {
    (1..=rounds)
        .map(|round| {
            let groups_n = rng.gen_range(1..=3);
            let mut groups = vec![Vec::new(); groups_n];
            for i in 0..instances {
                groups[rng.gen_range(0..groups_n)].push(i);
            }
            RoundPartition::new(round, round, groups)
        })
        .collect()
}

fn random_time_partitions(rng: &mut ChaCha8Rng, n: usize, until_ms: u64) -> Vec<TimePartition> {
    let mut out = Vec::new();
    let mut t = rng.gen_range(100..800);
    while t < until_ms {
        let len = rng.gen_range(200..1_500);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        let cut = rng.gen_range(1..n);
        out.push(TimePartition {
            from_ms: t,
            to_ms: (t + len).min(until_ms),
            groups: vec![order[..cut].to_vec(), order[cut..].to_vec()],
        });
        t += len + rng.gen_range(200..1_000);
    }
    out
}

/// A failing seed.
#[derive(Debug, Clone)]
pub struct SwarmFailure {
    /// The seed.
    pub seed: u64,
    /// What was drawn.
    pub plan: String,
    /// What broke.
    pub reason: String,
}

impl SwarmFailure {
    /// The command that replays this seed (with the mutation, if one is on).
    pub fn replay(&self, twins_only: bool) -> String {
        let names: Vec<&str> = Mutation::selected().iter().map(|m| m.name()).collect();
        let mutation = if names.is_empty() {
            String::new()
        } else {
            format!("PALISADE_MUTATION={} ", names.join(","))
        };
        let twins = if twins_only { " --twins" } else { "" };
        format!(
            "replay: {mutation}palisade-testnet sim swarm{twins} --from {} --seeds 1",
            self.seed
        )
    }
}

/// What a batch of seeds gave.
#[derive(Debug, Clone, Default)]
pub struct SwarmSummary {
    /// Seeds run.
    pub seeds: u64,
    /// Failing seeds, in order.
    pub failures: Vec<SwarmFailure>,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Virtual seconds simulated.
    pub virtual_secs: f64,
    /// Blocks committed (highest honest height, summed over seeds).
    pub blocks: u64,
}

impl SwarmSummary {
    /// Seed-runs per wall-clock second.
    pub fn seeds_per_s(&self) -> f64 {
        self.seeds as f64 / self.secs.max(1e-9)
    }

    /// The closing line.
    pub fn line(&self) -> String {
        format!(
            "swarm: {} seeds in {:.1} s ({:.1} seeds/s, {:.0} virtual s, {} blocks), {} failing",
            self.seeds,
            self.secs,
            self.seeds_per_s(),
            self.virtual_secs,
            self.blocks,
            self.failures.len()
        )
    }
}

/// Run one seed's plan; `Err` names what broke.
pub fn run_plan(plan: &SwarmPlan) -> Result<SimReport, String> {
    let report = plan.run().map_err(|e| format!("did not start: {e}"))?;
    if report.violations.is_empty() {
        Ok(report)
    } else {
        Err(format!("violations: {:?}", report.violations))
    }
}

/// Run seeds `from..from + count` (swarm plans, or enumerated Twins plans
/// when `twins_only`), stopping after `max_failures` failing seeds.
/// `on_seed` sees every seed's outcome (progress, printing).
pub fn run_swarm(
    from: u64,
    count: u64,
    twins_only: bool,
    max_failures: usize,
    mut on_seed: impl FnMut(u64, &Result<SimReport, SwarmFailure>),
) -> SwarmSummary {
    let start = Instant::now();
    let mut summary = SwarmSummary::default();
    for seed in from..from.saturating_add(count) {
        let plan = if twins_only {
            draw_twins(seed)
        } else {
            draw(seed)
        };
        let outcome = run_plan(&plan).map_err(|reason| SwarmFailure {
            seed,
            plan: plan.describe(),
            reason,
        });
        summary.seeds += 1;
        match &outcome {
            Ok(r) => {
                summary.virtual_secs += r.virtual_ms as f64 / 1000.0;
                summary.blocks += r.height;
            }
            Err(failure) => summary.failures.push(failure.clone()),
        }
        on_seed(seed, &outcome);
        if summary.failures.len() >= max_failures {
            break;
        }
    }
    summary.secs = start.elapsed().as_secs_f64();
    summary
}

/// `palisade-testnet sim ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Run a named fork schedule (all of them without NAME): each must stay
    /// safe with every safety rule in place, and fork with the rule it
    /// names disabled (`PALISADE_MUTATION`, `mutation` builds only).
    Schedule {
        /// `tc-high-qc-fork` or `timeout-fork`.
        name: Option<String>,
    },
    /// Run swarm seeds: each draws its own faults; prints seeds/s and the
    /// replay line of every failing seed; exits non-zero if any failed.
    Swarm {
        /// Seeds to run.
        #[arg(long, default_value_t = 1_000)]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only enumerated Twins scenarios (n = 4, one twin).
        #[arg(long)]
        twins: bool,
        /// Stop after this many failing seeds.
        #[arg(long, default_value_t = 1)]
        max_failures: usize,
        /// Print a progress line every this many seeds (0: never).
        #[arg(long, default_value_t = 1_000)]
        progress: u64,
    },
}

/// Run a `sim` command, handing each output line to `out`; `Ok(false)` when
/// a seed failed.
pub fn cli(command: &SimCommand, mut out: impl FnMut(&str)) -> bool {
    // The only place a mutation is armed: the core never reads the
    // environment, so a node never obeys PALISADE_MUTATION.
    if let Ok(names) = std::env::var("PALISADE_MUTATION") {
        match Mutation::parse_list(&names) {
            Err(e) => {
                out(&format!("PALISADE_MUTATION: {e}"));
                return false;
            }
            #[cfg(feature = "mutation")]
            Ok(rules) => {
                Mutation::arm(&rules);
            }
            #[cfg(not(feature = "mutation"))]
            Ok(rules) => {
                if !rules.is_empty() {
                    out("PALISADE_MUTATION ignored: built without the mutation feature");
                }
            }
        }
    }
    for m in Mutation::selected() {
        out(&format!("mutation: {} disabled", m.name()));
    }
    let (seeds, from, twins, max_failures, progress) = match command {
        SimCommand::Schedule { name } => return run_schedules(name.as_deref(), out),
        SimCommand::Swarm {
            seeds,
            from,
            twins,
            max_failures,
            progress,
        } => (seeds, from, twins, max_failures, progress),
    };
    let start = Instant::now();
    let summary = run_swarm(*from, *seeds, *twins, (*max_failures).max(1), |seed, o| {
        if let Err(f) = o {
            out(&format!(
                "seed {seed} FAILED: {}\n  plan: {}\n  {}",
                f.reason,
                f.plan,
                f.replay(*twins)
            ));
        }
        let done = seed - from + 1;
        if *progress > 0 && done % progress == 0 {
            let secs = start.elapsed().as_secs_f64();
            out(&format!(
                "  {done} seeds, {:.1} s, {:.1} seeds/s",
                secs,
                done as f64 / secs.max(1e-9)
            ));
        }
    });
    out(&summary.line());
    summary.failures.is_empty()
}

/// Run the named schedules (or the one called `name`); `false` when one
/// found a violation or `name` names none.
fn run_schedules(name: Option<&str>, mut out: impl FnMut(&str)) -> bool {
    let chosen: Vec<_> = schedules::all()
        .into_iter()
        .filter(|s| name.is_none_or(|n| n == s.name))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = schedules::all().iter().map(|s| s.name).collect();
        out(&format!(
            "no schedule named {:?}; known: {}",
            name.unwrap_or(""),
            names.join(", ")
        ));
        return false;
    }
    let mut ok = true;
    for s in chosen {
        let plan = SwarmPlan {
            config: s.config(),
            epoch_end: None,
            txs: 2,
            twins_scenario: Some(s.scenario.clone()),
        };
        match run_plan(&plan) {
            Ok(r) => out(&format!(
                "schedule {}: safe (height {}, catches {} when disabled)",
                s.name, r.height, s.catches
            )),
            Err(reason) => {
                ok = false;
                out(&format!("schedule {} FAILED: {reason}", s.name));
            }
        }
    }
    ok
}
