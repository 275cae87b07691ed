//! Deterministic simulator of the consensus core (FoundationDB/TigerBeetle
//! style; Twins after Bano et al. 2020 and aptos `consensus/src/twins`).
//!
//! A [`Simulation`] runs N validator instances, each an unmodified
//! [`palisade_consensus::hotstuff::Replica`], over an in-memory network with a
//! virtual clock and one seeded RNG: messages are dropped, delayed, duplicated
//! and reordered ([`NetFaults`]), partitioned by round as in Twins
//! ([`RoundPartition`]) or by time ([`TimePartition`]); instances crash and
//! restart from what they persisted, or lose their disk ([`Crash`]). A twin
//! is a second instance sharing a validator's key, so equivocating proposals
//! and double votes arise from ordinary code. The [`Checker`] watches honest
//! instances: one block per height, equal state roots, progress after the
//! network heals; every committed block is re-executed on a reference
//! executor. [`for_each_seed`] runs a scenario over seeds and prints a
//! one-line replay command for a failing one. [`swarm`] draws a different
//! mix of faults per seed, with Twins scenarios enumerated and sampled
//! ([`twins_gen`]); with the `mutation` feature, `PALISADE_MUTATION` disables
//! one safety rule of the core to check the swarm catches it.
//!
//! The simulator is generic over the [`palisade_consensus::executor::Executor`]
//! (tests use [`palisade_consensus::hotstuff::SimExecutor`]) and the
//! [`PayloadSource`]. Replicas share a [`SharedVerdicts`] cache, so each
//! signature is verified once per run; forged ones are always checked for real.
//!
//! Liveness bound: after `heal_at_ms`, some honest instance must commit a new
//! block within [`SimConfig::liveness_bound_ms`] (15 s by default: many
//! round timeouts at the 0.9 s backoff cap, plus catching up, with margin).
//!
//! ```
//! use palisade_testnet::sim::{SimConfig, Simulation};
//!
//! let mut config = SimConfig::new(7, 4); // seed 7, 4 validators
//! config.duration_ms = 2_000;
//! // The hash-chain test executor, 4 transactions per block; any
//! // `Executor` works through `Simulation::new`.
//! let report = Simulation::hash_chain(config, 4)?.run();
//! assert!(report.violations.is_empty());
//! assert!(report.height > 20, "{} blocks in 2 virtual seconds", report.height);
//! # Ok::<(), palisade_consensus::hotstuff::ConsensusError>(())
//! ```

mod checker;
mod config;
mod network;
mod node;
mod payload;
mod runner;
pub mod schedules;
mod seeds;
pub mod swarm;
pub mod twins_gen;
mod verdicts;

pub use checker::{Checker, Violation};
pub use config::{Crash, Link, NetFaults, RoundPartition, SimConfig, TimePartition};
pub use network::WireStats;
pub use node::Disk;
pub use payload::{PayloadSource, SimPayloads};
pub use runner::{sim_genesis, SimReport, Simulation};
pub use seeds::for_each_seed;
pub use verdicts::SharedVerdicts;
