//! `palisade-testnet bench`: figures a user choosing between Palisade and
//! etcd would trust, measured side by side in one run on one machine.
//!
//! - [`palisade`]: the [`workload`] shape against a running testnet
//!   (signed registrations from many identities, verified receipts,
//!   verified lookups, a verified watch), with CPU, I/O and disk per node
//!   from `/proc` and `du` ([`procfs`]); optionally 1 of 4 validators killed.
//! - [`etcd`]: the same shape against a fresh 3-member etcd cluster on
//!   127.0.0.1 through its v3 JSON gateway, with the same HTTP client.
//! - [`scale`] (`bench scale`): the state machine in-process at 10k, 100k
//!   and 1M instances.
//! - [`sim`] (`bench sim`): our side of the hotstuff_rs comparison in the
//!   deterministic simulator (commits per virtual second, 1 of 4 down).
//! - [`report`]: one table with Palisade/etcd ratios.
//!
//! Every loop is bounded in time and in operations ([`stats::closed_loop`]);
//! everything listens on and talks to 127.0.0.1 only. The hotstuff_rs
//! baseline is a separate binary behind the `baseline-hotstuff-rs` feature
//! (`src/bin/hotstuff_baseline.rs`), so CI never builds it.

pub mod etcd;
pub mod fleet;
pub mod palisade;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod scale;
pub mod sim;
pub mod stats;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

use workload::Shape;

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

/// `palisade-testnet bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// `scale`: the in-process scaling run instead of the cluster comparison.
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// Directory of a running testnet (`palisade-testnet up --detach --dir DIR`).
    #[arg(long, default_value = "testnet-data")]
    pub dir: PathBuf,
    /// Seconds of the loaded write phase and of the read phase.
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
    /// Seconds of the single-writer phase.
    #[arg(long, default_value_t = 5)]
    pub single_duration: u64,
    /// Seconds of the idle phase (idle CPU).
    #[arg(long, default_value_t = 5)]
    pub idle: u64,
    /// Concurrent readers.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Concurrent writers, each its own identity.
    #[arg(long, default_value_t = 32)]
    pub writers: usize,
    /// Bound on operations per phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_ops: u64,
    /// Instances of the service the readers look up.
    #[arg(long, default_value_t = 10)]
    pub read_instances: usize,
    /// Skip the Palisade side (e.g. to measure etcd alone).
    #[arg(long)]
    pub skip_palisade: bool,
    /// Skip the etcd side.
    #[arg(long)]
    pub skip_etcd: bool,
    /// The etcd binary (default /usr/bin/etcd, then PATH).
    #[arg(long)]
    pub etcd_bin: Option<PathBuf>,
    /// Also kill the last validator, measure blocks/s and writes/s with it
    /// down, and restart it.
    #[arg(long)]
    pub fault: bool,
    /// Seconds of each blocks/s window of the fault phase (two windows
    /// follow the kill before the loaded writes: the transition and the
    /// steady state; before the reputation fix, stalls lasted 10-40 s).
    #[arg(long, default_value_t = 20)]
    pub fault_window: u64,
}

/// Other bench runs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchWhat {
    /// The state machine in-process: memory per instance, proof size, block
    /// execution time and lookup latency at each size.
    Scale {
        /// Sizes, ascending, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<u64>,
    },
    /// A fleet kept alive by off-consensus heartbeats on a running testnet
    /// (`up --leases attested`): expiries, lookup p99, heartbeat CPU, disk.
    Fleet(fleet::FleetArgs),
    /// The consensus core in the deterministic simulator, healthy and with
    /// 1 of 4 validators crashed.
    Sim {
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Virtual seconds per run.
        #[arg(long, default_value_t = 60)]
        virtual_secs: u64,
    },
}

/// Progress lines go to stderr so that stdout holds only the report.
#[allow(clippy::print_stderr)]
fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

/// Run what `args` asks and return the report (markdown).
pub fn run(args: &BenchArgs) -> Result<String, BenchError> {
    if let Some(BenchWhat::Sim { seed, virtual_secs }) = &args.what {
        return Ok(sim::render(
            &sim::run(*seed, *virtual_secs).map_err(BenchError)?,
        ));
    }
    if let Some(BenchWhat::Fleet(fleet_args)) = &args.what {
        let r = fleet::run(fleet_args).map_err(BenchError)?;
        let ms = |v: Option<f64>| v.unwrap_or(f64::NAN);
        return Ok(format!(
            "setup {:.0} s; {} stopped instances; {} verified lookups, p50 {:.1} ms; {:.1} blocks/s; WAL {:.0} MiB of the disk per node\n\
             lookup split: client p50 {:.1} / p90 {:.1} / p99 {:.1} / max {:.1} ms; verification alone ({} sampled) p50 {:.2} / p99 {:.2} ms; nodes serving ({} answers) p50 <= {:.1} / p99 <= {:.1} ms\n\
             waiting for a core: lookup threads {:.2} ms per lookup (ran {:.2} ms); nodes' tokio workers {:.2} ms per ms run ({:.2} ms per time scheduled in)\n{}\n",
            r.setup_secs,
            r.stopped,
            r.lookups.len(),
            ms(r.lookups.p50()),
            r.blocks_per_s,
            r.wal_mib,
            ms(r.lookups.p50()),
            ms(r.lookups.percentile_ms(90.0)),
            ms(r.lookups.p99()),
            ms(r.lookups.percentile_ms(100.0)),
            r.verify.len(),
            ms(r.verify.p50()),
            ms(r.verify.p99()),
            r.served.count(),
            ms(r.served.quantile_ms(0.5)),
            ms(r.served.quantile_ms(0.99)),
            r.client_sched.wait_ns as f64 / 1e6 / r.lookups.len().max(1) as f64,
            r.client_sched.run_ns as f64 / 1e6 / r.lookups.len().max(1) as f64,
            r.workers_sched.wait_ns as f64 / r.workers_sched.run_ns.max(1) as f64,
            r.workers_sched.wait_ns as f64 / 1e6 / r.workers_sched.slices.max(1) as f64,
            r.line()
        ));
    }
    if let Some(BenchWhat::Scale { sizes }) = &args.what {
        let mut sizes = sizes.clone();
        sizes.sort_unstable();
        let points = scale::run(&sizes, |p| {
            // The whole row, so that a run stopped early keeps its figures.
            progress(&format!(
                "{} instances built in {:.1} s\n{}",
                p.instances,
                p.build.as_secs_f64(),
                scale::table(std::slice::from_ref(p))
            ))
        })
        .map_err(BenchError)?;
        return Ok(scale::table(&points));
    }
    let shape = Shape {
        writers: args.writers.max(1),
        clients: args.clients.max(1),
        duration: Duration::from_secs(args.duration),
        single_duration: Duration::from_secs(args.single_duration),
        idle_duration: Duration::from_secs(args.idle),
        max_ops: args.max_ops,
        read_instances: args.read_instances.max(1),
    };
    let mut notes = Vec::new();
    let palisade = if args.skip_palisade {
        None
    } else {
        progress(&format!("Palisade testnet in {}", args.dir.display()));
        let opts = palisade::PalisadeOptions {
            fault: args.fault,
            fault_window: Duration::from_secs(args.fault_window),
        };
        Some(palisade::run(&args.dir, &shape, &opts).map_err(BenchError)?)
    };
    let value_bytes = palisade.as_ref().map_or_else(
        || palisade::registration_bytes("palisade-local"),
        |p| p.value_bytes,
    );
    let etcd = if args.skip_etcd {
        None
    } else {
        let bin = match &args.etcd_bin {
            Some(b) => Ok(b.clone()),
            None => etcd::find_etcd(),
        };
        match bin {
            Ok(bin) => {
                progress(&format!("etcd cluster from {}", bin.display()));
                Some(etcd::run(&bin, &shape, value_bytes).map_err(BenchError)?)
            }
            Err(why) => {
                progress(&why);
                notes.push(why);
                None
            }
        }
    };
    notes.push(
        "syscall bytes (/proc/PID/io rchar/wchar) count socket and file reads/writes together: an upper bound on bytes on the wire".into(),
    );
    let systems: Vec<&workload::SystemResult> = palisade.iter().chain(etcd.iter()).collect();
    let figures = crate::cluster::absolute(&args.dir).join("bench");
    match plot::write(&systems, &figures) {
        Ok((csv, svg)) => notes.push(format!(
            "every operation (system, phase, completion ms, latency µs): {}; loaded writes over time: {}",
            csv.display(),
            svg.display()
        )),
        Err(e) => notes.push(format!("figures not written: {e}")),
    }
    Ok(report::render(
        &shape,
        palisade.as_ref(),
        etcd.as_ref(),
        &notes,
    ))
}
