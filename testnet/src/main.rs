//! `palisade-testnet`: a local testnet of real `palisade-node` processes, and
//! fault injection against it.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI prints

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use palisade_testnet::cluster::{self, Testnet, UpOptions};

#[derive(Parser)]
#[command(
    name = "palisade-testnet",
    version,
    about = "Local Palisade testnets and fault injection"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Target {
    /// Testnet directory.
    #[arg(long, default_value = "testnet-data")]
    dir: PathBuf,
    /// Node index, from 0.
    #[arg(long)]
    node: usize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WanAction {
    Cut,
    Heal,
}

#[derive(Subcommand)]
enum Command {
    /// Generate and start a testnet, run the demo, and stay in the foreground
    /// (Ctrl-C stops every node) unless --detach.
    Up {
        /// Testnet directory (created).
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// Number of validators.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Return once the testnet is healthy, leaving the nodes running.
        #[arg(long)]
        detach: bool,
        /// Extra processes sharing the keys of validators 0..K (equivocation from unmodified code).
        #[arg(long, default_value_t = 0)]
        twins: usize,
        /// `I:MODE`: node I lies in that way (repeatable). Modes: forge-lookups,
        /// replay-watch, cut-watch, stall-watch, lie-accounts, claim-outcomes,
        /// pending-forever (palisade-node's `ByzantineMode` says what each does).
        #[arg(long, value_name = "I:MODE")]
        byzantine: Vec<String>,
        /// The palisade-node binary (default: next to this one).
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Base round timeout in milliseconds.
        #[arg(long, default_value_t = 1000)]
        round_timeout_ms: u64,
        /// Datacenter name; the chain id becomes `palisade-NAME` (default:
        /// datacenter `local`, chain `palisade-local`).
        #[arg(long, value_name = "NAME")]
        datacenter: Option<String>,
        /// How leases run out: `block-time` (Heartbeat transactions renew) or
        /// `attested` (off-consensus heartbeats to every node, expiry on a
        /// quorum of validators' silence reports).
        #[arg(long, default_value = "block-time", value_parser = ["block-time", "attested"])]
        leases: String,
        /// Committed heights each node keeps (`[storage] retain_heights`;
        /// 0 = archive). A node further behind than the window (or wiped)
        /// catches up from a certified snapshot.
        #[arg(long, default_value_t = 0)]
        retain_heights: u64,
    },
    /// Make testnet --dir import testnet --to (another datacenter) through a
    /// TCP delay proxy per remote node; restarts --dir's nodes.
    Link {
        /// The importing testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// The imported testnet.
        #[arg(long)]
        to: PathBuf,
        /// Held in each direction by the proxies.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        delay_ms: u64,
    },
    /// Cut or heal the link from --dir to --to.
    Wan {
        /// The importing testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// The imported testnet.
        #[arg(long)]
        to: PathBuf,
        /// `cut` or `heal`.
        action: WanAction,
    },
    /// Cross-DC figures on two linked running testnets: lag p50/p99,
    /// bytes per registration, heartbeat and idle second, partition detection.
    DcBench {
        /// The importing testnet.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// The imported testnet.
        #[arg(long)]
        to: PathBuf,
        /// Registrations and heartbeats measured.
        #[arg(long, default_value_t = 50)]
        samples: usize,
        /// Idle seconds measured.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
        /// Partition trials.
        #[arg(long, default_value_t = 3)]
        cuts: usize,
        /// Also cut the link this many seconds while registering in B, and
        /// time the catch-up after the heal (0: skip).
        #[arg(long, default_value_t = 0)]
        catch_up_secs: u64,
    },
    /// One link proxy (started by `link`).
    #[command(hide = true)]
    LinkProxy {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        upstream: String,
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        #[arg(long)]
        cut_flag: PathBuf,
        #[arg(long)]
        stats_file: PathBuf,
    },
    /// Stop every process of the testnet.
    Down {
        /// Testnet directory.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
    /// Per node: pid, height, round, peers.
    Status {
        /// Testnet directory.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
    /// SIGKILL a node.
    Kill(Target),
    /// Start a node again from its data directory.
    Restart(Target),
    /// SIGSTOP a node.
    Pause(Target),
    /// SIGCONT a node.
    Resume(Target),
    /// Partition the nodes, e.g. `0,1/2,3`.
    Partition {
        /// Testnet directory.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
        /// Groups of node indices separated by '/'.
        groups: String,
    },
    /// Run the fault-injection suite on real processes and print a table.
    Faults {
        /// A scenario name, `all`, or `ci` (the bounded subset CI runs).
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Seed for identities and victim choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where scenario testnets are created.
        #[arg(long, default_value = "testnet-faults")]
        dir: PathBuf,
        /// The palisade-node binary (default: next to this one).
        #[arg(long)]
        node_bin: Option<PathBuf>,
        /// Concurrent load writers per scenario.
        #[arg(long, default_value_t = 2)]
        writers: usize,
    },
    /// Benchmarks: a running testnet side by side with a 3-member etcd, or
    /// `bench scale` (the state machine in-process).
    Bench(palisade_testnet::bench::BenchArgs),
    /// The deterministic simulator: `sim swarm --seeds N [--from S]`.
    #[command(subcommand)]
    Sim(palisade_testnet::sim::swarm::SimCommand),
    /// Lift every partition.
    Heal {
        /// Testnet directory.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
    /// Add a node to a running testnet: it starts as a learner, catches up,
    /// and becomes a validator at the next epoch (the authority's
    /// ChangeValidators); network.json lists it.
    AddNode {
        /// Testnet directory.
        #[arg(long, default_value = "testnet-data")]
        dir: PathBuf,
    },
    /// Remove a validator from a running testnet at the next epoch, then stop
    /// it and drop it from network.json.
    RemoveNode(Target),
}

fn default_node_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let candidate = exe.with_file_name("palisade-node");
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!(
        "palisade-node not found next to {} — build it first (`cargo build --release -p palisade-node`) or pass --node-bin",
        exe.display()
    )
}

/// `I:MODE` pairs; the mode names are the node config's, checked by the node
/// itself when it starts (one list of modes, in `palisade-node`).
fn parse_byzantine(specs: &[String], nodes: usize) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    for spec in specs {
        let (i, what) = spec.split_once(':').with_context(|| {
            format!("--byzantine {spec:?}: expected I:MODE, e.g. 3:forge-lookups")
        })?;
        let i: usize = i
            .parse()
            .with_context(|| format!("--byzantine {spec:?}: {i:?} is not a node index"))?;
        if i >= nodes {
            bail!("--byzantine {spec:?}: node {i} does not exist (0..{nodes})");
        }
        if what.is_empty() || !what.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            bail!(
                "--byzantine {spec:?}: {what:?} is not a mode name (lowercase words joined by '-')"
            );
        }
        out.push((i, what.to_string()));
    }
    Ok(out)
}

fn up(opts: UpOptions, detach: bool) -> Result<()> {
    let mut net = cluster::generate(&opts)?;
    eprintln!(
        "generated {} validators{} in {}",
        opts.nodes,
        if opts.twins > 0 {
            format!(" and {} twins", opts.twins)
        } else {
            String::new()
        },
        opts.dir.display()
    );
    net.start_all()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    let result = bring_up(&net, &opts);
    if let Err(e) = result {
        eprintln!("testnet did not come up: {e:#}; stopping it");
        net.down()?;
        return Err(e);
    }
    print_summary(&net, &opts.dir);
    if detach {
        return Ok(());
    }
    eprintln!("running in the foreground; Ctrl-C stops every node");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = net.down()?;
    eprintln!("stopped {} processes", stopped.len());
    Ok(())
}

fn bring_up(net: &Testnet, opts: &UpOptions) -> Result<()> {
    let bar = indicatif::ProgressBar::new(3);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:20}] {pos}/{len} blocks")
            .expect("valid template"),
    );
    bar.set_message("waiting for the first commits");
    bar.enable_steady_tick(Duration::from_millis(120));
    let quorum = opts.nodes - (opts.nodes - 1) / 3;
    cluster::wait_for_height(net, 3, quorum, Duration::from_secs(60), |h| {
        bar.set_position(h.min(3))
    })?;
    bar.finish_with_message("committing");
    eprintln!("demo: enrolling an identity, registering demo/echo/echo-1 with a signed request");
    let found = palisade_testnet::demo::run(net.layout()).context("demo")?;
    println!(
        "demo: verified lookup of {} at height {} (state root {}, certified by epoch {} validators):",
        found.name(),
        found.height,
        found.state_root,
        found.epoch
    );
    for i in found.instances() {
        let eps: Vec<String> = i
            .endpoints
            .iter()
            .map(|e| format!("{}:{}", e.host, e.port))
            .collect();
        println!("  {} {} health {:?}", i.instance, eps.join(","), i.health);
    }
    Ok(())
}

fn print_summary(net: &Testnet, dir: &Path) {
    println!("\nnodes:");
    for n in &net.record().nodes {
        println!(
            "  node{} pid {} api {} p2p {}{}",
            n.index,
            n.pid.map(|p| p.to_string()).unwrap_or("-".into()),
            n.api_url,
            n.p2p_addr,
            n.twin_of
                .map(|o| format!(" (twin of node{o})"))
                .unwrap_or_default()
        );
    }
    println!("\n{}", try_commands(dir));
}

/// The commands `up` suggests, ready to paste from the directory `up` ran
/// in (`dir` as the user gave it), with `palisade` and `palisade-testnet`
/// found on PATH: the line that puts them there names the folder they were
/// built in.
fn try_commands(dir: &Path) -> String {
    let d = dir.display();
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf));
    let path_line = match &bin_dir {
        Some(b) if b.join("palisade").exists() => format!(
            "# palisade and palisade-testnet are in {0}; put them on PATH first:\n  export PATH=\"{0}:$PATH\"",
            b.display()
        ),
        Some(b) => format!(
            "# palisade is not built yet: `cargo build --release -p palisade-client`, then:\n  export PATH=\"{}:$PATH\"",
            b.display()
        ),
        None => "# put palisade and palisade-testnet on PATH first".to_string(),
    };
    format!(
        "try (from this directory):\n  {path_line}\n  palisade enroll --network {d}/network.json --key {d}/keys/authority.key --identity $(palisade keys gen --out svc.key) --namespace prod\n  palisade register --network {d}/network.json --key svc.key --namespace prod --service api --instance api-1 --endpoint 127.0.0.1:8080 --ttl 60\n  palisade lookup --network {d}/network.json prod/api\n  palisade-testnet status --dir {d}\n  palisade-testnet kill --dir {d} --node 1\n  palisade-testnet restart --dir {d} --node 1\n  palisade-testnet down --dir {d}"
    )
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up {
            dir,
            nodes,
            detach,
            twins,
            byzantine,
            node_bin,
            round_timeout_ms,
            datacenter,
            leases,
            retain_heights,
        } => {
            let node_binary = match node_bin {
                Some(p) => cluster::absolute(&p),
                None => default_node_binary()?,
            };
            let mut opts = UpOptions::new(&dir, &node_binary);
            opts.nodes = nodes;
            opts.twins = twins;
            opts.byzantine = parse_byzantine(&byzantine, nodes)?;
            opts.round_timeout_ms = round_timeout_ms;
            opts.retain_heights = retain_heights;
            if let Some(name) = datacenter {
                if name.is_empty()
                    || name.len() > 63
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    bail!("--datacenter {name:?}: use 1-63 lowercase letters, digits and '-'");
                }
                opts.chain_id = format!("palisade-{name}");
                opts.datacenter = name;
            }
            opts.lease_mode = match leases.as_str() {
                "attested" => palisade_consensus::state::LeaseMode::Attested,
                _ => palisade_consensus::state::LeaseMode::BlockTime,
            };
            up(opts, detach)
        }
        Command::Link { dir, to, delay_ms } => {
            let me = std::env::current_exe().context("locating this executable")?;
            let link_dir = palisade_testnet::link::link(&dir, &to, delay_ms, &me)?;
            println!(
                "{} imports {} through delay proxies ({delay_ms} ms each way); files in {}",
                dir.display(),
                to.display(),
                link_dir.display()
            );
            Ok(())
        }
        Command::Wan { dir, to, action } => {
            let cut = matches!(action, WanAction::Cut);
            palisade_testnet::link::wan(&dir, &to, cut)?;
            println!(
                "link {} -> {} {}",
                dir.display(),
                to.display(),
                if cut { "cut" } else { "healed" }
            );
            Ok(())
        }
        Command::DcBench {
            dir,
            to,
            samples,
            idle_secs,
            cuts,
            catch_up_secs,
        } => {
            let delay = std::fs::read_to_string(
                palisade_testnet::link::link_dir(
                    &dir,
                    &palisade_testnet::link::network_of(&to)?.datacenter,
                )
                .join("proxies.json"),
            )
            .ok()
            .and_then(|t| serde_json::from_str::<palisade_testnet::link::ProxyRecord>(&t).ok())
            .map_or(0, |r| r.delay_ms);
            let figures = palisade_testnet::link::bench::run(
                &dir,
                &to,
                samples,
                idle_secs,
                cuts,
                catch_up_secs,
            )
            .map_err(anyhow::Error::msg)?;
            println!("| one-way delay ms | samples | registration lag p50 / p99 ms | heartbeat lag p50 / p99 ms | bytes per registration | bytes per heartbeat | idle bytes/s | partition detected after s |");
            println!("|---|---|---|---|---|---|---|---|");
            println!("{}", figures.row(delay));
            if let Some((made, ms, per_record)) = figures.catch_up {
                println!(
                    "catch-up: {made} registrations during a {catch_up_secs} s cut visible through A {ms:.0} ms after the heal; {per_record:.0} link bytes per registration in that net delta"
                );
            }
            Ok(())
        }
        Command::LinkProxy {
            listen,
            upstream,
            delay_ms,
            cut_flag,
            stats_file,
        } => {
            palisade_testnet::link::proxy::run(palisade_testnet::link::proxy::ProxyConfig {
                listen,
                upstream,
                delay: Duration::from_millis(delay_ms),
                cut_flag,
                stats_file,
            })?;
            Ok(())
        }
        Command::Down { dir } => {
            palisade_testnet::link::stop_proxies(&dir)?;
            let stopped = Testnet::open(&dir)?.down()?;
            println!("stopped {} processes", stopped.len());
            Ok(())
        }
        Command::Status { dir } => {
            use std::io::Write;
            let net = Testnet::open(&dir)?;
            let mut out = String::new();
            out += &format!(
                "{:<6} {:>8} {:>8} {:>8} {:>6} {:>6}  leader\n",
                "node", "pid", "height", "round", "epoch", "peers"
            );
            for s in net.status() {
                let pid = s
                    .node
                    .pid
                    .filter(|_| s.running)
                    .map(|p| p.to_string())
                    .unwrap_or("-".into());
                out += &match s.status {
                    Ok(st) => format!(
                        "node{:<2} {:>8} {:>8} {:>8} {:>6} {:>6}  {}\n",
                        s.node.index,
                        pid,
                        st.height,
                        st.round,
                        st.epoch,
                        st.peers,
                        &st.leader[..st.leader.len().min(8)]
                    ),
                    Err(e) => format!("node{:<2} {:>8}  {e}\n", s.node.index, pid),
                };
            }
            // A closed pipe (`status | head`) is not an error worth a panic.
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            Ok(())
        }
        Command::Kill(t) => {
            let pid = Testnet::open(&t.dir)?.kill(t.node)?;
            println!("killed node{} (pid {pid}) with SIGKILL", t.node);
            Ok(())
        }
        Command::Restart(t) => {
            let pid = Testnet::open(&t.dir)?.restart(t.node)?;
            println!("restarted node{} as pid {pid}", t.node);
            Ok(())
        }
        Command::Pause(t) => {
            let pid = Testnet::open(&t.dir)?.pause(t.node)?;
            println!("paused node{} (pid {pid}) with SIGSTOP", t.node);
            Ok(())
        }
        Command::Resume(t) => {
            let pid = Testnet::open(&t.dir)?.resume(t.node)?;
            println!("resumed node{} (pid {pid}) with SIGCONT", t.node);
            Ok(())
        }
        Command::Partition { dir, groups } => {
            Testnet::open(&dir)?.partition(&groups)?;
            println!("partitioned {groups}");
            Ok(())
        }
        Command::Faults {
            scenario,
            seed,
            dir,
            node_bin,
            writers,
        } => {
            use palisade_testnet::faults;
            let node_binary = match node_bin {
                Some(p) => p,
                None => default_node_binary()?,
            };
            let all = faults::scenarios();
            let chosen: Vec<_> = all
                .iter()
                .filter(|s| match scenario.as_str() {
                    "all" => true,
                    "ci" => faults::CI_SUBSET.contains(&s.name),
                    name => s.name == name,
                })
                .collect();
            if chosen.is_empty() {
                let names: Vec<_> = all.iter().map(|s| s.name).collect();
                bail!(
                    "no scenario {scenario:?}; known: all, ci, {}",
                    names.join(", ")
                );
            }
            let base_dir = cluster::absolute(&dir);
            // Histories are audited when palisade-audit was built beside the node.
            let audit_binary =
                Some(node_binary.with_file_name("palisade-audit")).filter(|p| p.is_file());
            if audit_binary.is_none() {
                println!(
                    "note: no palisade-audit beside {}: histories are not audited \
                     (cargo build --release -p palisade-audits)",
                    node_binary.display()
                );
            }
            let opts = faults::SuiteOptions {
                base_dir: base_dir.clone(),
                node_binary,
                seed,
                writers,
                audit_binary,
            };
            let mut outcomes = Vec::new();
            // A bar on a terminal; plain lines in logs.
            let bar = indicatif::ProgressBar::new(chosen.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{bar:20}] {pos}/{len} scenarios, {elapsed}  {msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            for s in chosen {
                if bar.is_hidden() {
                    eprintln!("running {} ...", s.name);
                }
                bar.set_message(s.name);
                outcomes.push(faults::run_scenario(s, &opts));
                bar.inc(1);
            }
            bar.finish_and_clear();
            print!("{}", faults::table(&outcomes));
            println!(
                "logs: {} (clients and harness), {}/SCENARIO-SEED/nodeI/node.log (nodes)",
                base_dir.join("faults.log").display(),
                base_dir.display()
            );
            let failed = outcomes.iter().filter(|o| !o.violations.is_empty()).count();
            if failed > 0 {
                bail!("{failed} of {} scenarios had violations", outcomes.len());
            }
            Ok(())
        }
        Command::Bench(args) => {
            print!("{}", palisade_testnet::bench::run(&args)?);
            Ok(())
        }
        Command::Sim(command) => {
            if !palisade_testnet::sim::swarm::cli(&command, |line| println!("{line}")) {
                bail!("the simulator found a violation");
            }
            Ok(())
        }
        Command::Heal { dir } => {
            Testnet::open(&dir)?.heal()?;
            println!("healed");
            Ok(())
        }
        Command::AddNode { dir } => {
            let mut net = Testnet::open(&dir)?;
            let index = net.add_node()?;
            let epoch = net.node_status(index)?.epoch;
            println!(
                "added node{index} ({}): a validator from epoch {epoch}, {} validators",
                net.record().nodes[index].api_url,
                net.members().len()
            );
            Ok(())
        }
        Command::RemoveNode(t) => {
            let mut net = Testnet::open(&t.dir)?;
            net.remove_node(t.node)?;
            println!(
                "removed node{} from the validators and stopped it; {} validators",
                t.node,
                net.members().len()
            );
            Ok(())
        }
    }
}

/// Logs go to stderr (coloured only on a terminal), except for `faults`,
/// whose table is the output: its clients' retry warnings and the harness's
/// own logs go to `DIR/faults.log`, which the table names.
fn init_tracing(cli: &Cli) -> Result<()> {
    use std::io::IsTerminal;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"))
    };
    if let Command::Faults { dir, .. } = &cli.command {
        let dir = cluster::absolute(dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("faults.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_tracing(&cli) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
