//! `palisade-testnet bench fleet`: a fleet of instances kept alive by
//! off-consensus heartbeats (a testnet started with `--leases attested`).
//!
//! 1. Enroll `ceil(N / K)` identities (authority acts, in windows the
//!    mempool's per-signer bound admits) and start the heartbeat sender: every
//!    identity's signed heartbeat, every `interval`, to every node, in
//!    requests of up to 1,024 (spread over the interval).
//! 2. Register N instances (K per identity, 100 per service, TTL `ttl`).
//! 3. Steady phase of `duration`: a heartbeat-only window first (the nodes'
//!    CPU over it is the "heartbeat CPU"), then verified lookups of every
//!    service in rounds (lookup p99; an instance of a heartbeating identity
//!    missing from a verified answer is a spurious expiry). At a third of
//!    the phase the heartbeats of a sample of identities stop; each of their
//!    instances still present `ttl + 10 s` after its last heartbeat is a
//!    missed expiry (checked by a last round at the end).
//! 4. Disk per node at the end and its growth over the second half.
//!
//! Every loop is bounded by count and time; everything talks to 127.0.0.1.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_client::{
    enrollment, load_network_file, parse_endpoint, registration, verify_lookup, Client,
    ClientConfig, ClientError, Signer,
};
use palisade_crypto::api::MAX_HEARTBEATS_PER_REQUEST;
use palisade_crypto::{Role, SecretKey, SignedHeartbeat, TxBody};

use crate::bench::procfs::{disk_usage, SchedStat, Snapshot};
use crate::bench::stats::Latencies;
use crate::cluster::{alive, Testnet};

/// Instances per service.
const PER_SERVICE: u64 = 100;
/// Authority acts submitted before waiting for one (below the mempool's
/// per-signer bound of 256).
const ENROLL_WINDOW: usize = 200;
/// Registration threads.
const REGISTER_THREADS: usize = 8;
/// Lookup threads.
const LOOKUP_THREADS: usize = 2;
/// Slack after the TTL within which a stopped instance must be gone.
const EXPIRY_SLACK: Duration = Duration::from_secs(10);
/// The route whose serving time the nodes' `/metrics` histogram keeps.
const LOOKUP_ROUTE: &str = "/v1/services/{namespace}/{service}";
/// One lookup answer in this many is verified a second time, timed: the
/// client's verification share of a lookup.
const VERIFY_SAMPLE: u64 = 8;
/// Largest `/metrics` answer read (bytes).
const MAX_METRICS_BYTES: u64 = 4 << 20;

/// `bench fleet` parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Directory of a running testnet started with `--leases attested`.
    #[arg(long, default_value = "testnet-data")]
    pub dir: std::path::PathBuf,
    /// Instances.
    #[arg(long, default_value_t = 10_000)]
    pub instances: u64,
    /// Instances per identity (one heartbeat renews them all).
    #[arg(long, default_value_t = 10)]
    pub per_identity: u64,
    /// Heartbeat interval in seconds.
    #[arg(long, default_value_t = 10)]
    pub interval: u64,
    /// Lease TTL in seconds.
    #[arg(long, default_value_t = 30)]
    pub ttl: u64,
    /// Seconds of the steady phase.
    #[arg(long, default_value_t = 120)]
    pub duration: u64,
    /// Share of identities (per mille) whose heartbeats stop part-way.
    #[arg(long, default_value_t = 20)]
    pub stop_permille: u64,
}

/// What the fleet run measured.
#[derive(Debug, Clone)]
pub struct FleetResult {
    /// Instances present and heartbeating at the end.
    pub alive: u64,
    /// Instances of heartbeating identities found missing.
    pub spurious: u64,
    /// Stopped instances still present past TTL + slack.
    pub missed: u64,
    /// Stopped instances (the sample).
    pub stopped: u64,
    /// Verified lookups (client side: request, answer, verification).
    pub lookups: Latencies,
    /// A sample of the lookups' verification alone (client CPU).
    pub verify: Latencies,
    /// The nodes' own serving time of the lookups (their `/metrics`).
    pub served: ServerHistogram,
    /// The lookup threads' scheduler counters (run, waiting for a core).
    pub client_sched: SchedStat,
    /// The nodes' tokio workers' scheduler counters over the lookup phase.
    pub workers_sched: SchedStat,
    /// Nodes' CPU over the heartbeat-only window, in cores.
    pub heartbeat_cores: f64,
    /// Mean data directory size per node at the end, MiB.
    pub disk_mib: f64,
    /// Its growth over the second half of the steady phase, MiB.
    pub growth_mib: f64,
    /// Of the end size, RocksDB write-ahead log files (`*.log`), MiB.
    pub wal_mib: f64,
    /// Blocks committed during the steady phase, per second.
    pub blocks_per_s: f64,
    /// Seconds to enroll and register.
    pub setup_secs: f64,
}

impl FleetResult {
    /// The required last line.
    pub fn line(&self) -> String {
        format!(
            "fleet: {} instances alive, {} spurious expiries, {} missed expiries, lookup p99 {:.1} ms, heartbeat CPU {:.2} cores, disk per node {:.0} MiB (growth {:.1} MiB in the last half)",
            self.alive,
            self.spurious,
            self.missed,
            self.lookups.p99().unwrap_or(f64::NAN),
            self.heartbeat_cores,
            self.disk_mib,
            self.growth_mib
        )
    }
}

#[allow(clippy::print_stderr)]
fn progress(msg: &str) {
    eprintln!("bench fleet: {msg}");
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn identity_key(run: u64, i: u64) -> SecretKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&run.to_le_bytes());
    seed[8..16].copy_from_slice(&i.to_le_bytes());
    seed[16] = 0xf1;
    SecretKey::from_seed(seed)
}

/// (service, instance) of instance `i`.
fn names(i: u64) -> (String, String) {
    (format!("svc{:05}", i / PER_SERVICE), format!("i{i:07}"))
}

fn client(network: &palisade_crypto::NetworkFile) -> Result<Client, String> {
    Client::new(
        network.clone(),
        ClientConfig {
            request_timeout: Duration::from_secs(10),
            commit_timeout: Duration::from_secs(60),
            retries: 2,
            ..ClientConfig::default()
        },
    )
    .map_err(|e| e.to_string())
}

/// Submit, retrying while the node is busy (bounded).
fn submit_retrying(
    c: &Client,
    tx: &palisade_crypto::SignedTransaction,
    wait: bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = if wait {
            c.submit_and_wait(tx).map(|_| ())
        } else {
            c.submit(tx).map(|_| ())
        };
        match r {
            Ok(()) => return Ok(()),
            // Taken by an earlier attempt that timed out on our side.
            Err(ClientError::Api { code, .. })
                if code == "duplicate" || code == "sequence_taken" =>
            {
                return Ok(())
            }
            Err(e) if Instant::now() < deadline && e.is_unavailable() => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn enroll(c: &Client, authority: &Signer, ns: &str, keys: &[SecretKey]) -> Result<(), String> {
    let mut next = c
        .next_sequence(&authority.public())
        .map_err(|e| e.to_string())?;
    for window in keys.chunks(ENROLL_WINDOW) {
        for (j, key) in window.iter().enumerate() {
            let body = enrollment(key.public(), vec![ns.to_string()], Role::Service)
                .map_err(|e| e.to_string())?;
            let tx = authority.sign(c.chain_id(), &c.network().genesis_hash, next, body);
            next += 1;
            submit_retrying(c, &tx, j + 1 == window.len())?;
        }
    }
    Ok(())
}

fn register(
    c: &Client,
    ns: &str,
    keys: &[SecretKey],
    per_identity: u64,
    instances: u64,
    ttl: u64,
) -> Result<(), String> {
    let next_identity = AtomicU64::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..REGISTER_THREADS {
            s.spawn(|| loop {
                let id = next_identity.fetch_add(1, Ordering::Relaxed);
                if id as usize >= keys.len() || failed.lock().expect("lock").is_some() {
                    return;
                }
                let signer = Signer::new(keys[id as usize].clone());
                let first = id * per_identity;
                let last = (first + per_identity).min(instances);
                for (seq, i) in (first..last).enumerate() {
                    let (service, instance) = names(i);
                    let reg = registration(
                        ns,
                        &service,
                        &instance,
                        vec![parse_endpoint("127.0.0.1:8080").expect("valid endpoint")],
                        vec![],
                        ttl as u32,
                    )
                    .expect("valid registration");
                    let tx = signer.sign(
                        c.chain_id(),
                        &c.network().genesis_hash,
                        seq as u64,
                        TxBody::Register(reg),
                    );
                    if let Err(e) = submit_retrying(c, &tx, i + 1 == last) {
                        *failed.lock().expect("lock") =
                            Some(format!("registering {instance}: {e}"));
                        return;
                    }
                }
                if id % 500 == 499 {
                    progress(&format!("{} identities registered", id + 1));
                }
            });
        }
    });
    match failed.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Sends every live identity's heartbeat every `interval`, spread in slices
/// over it, until `stop`; identities in `stopped` fall silent.
struct Sender {
    keys: Vec<SecretKey>,
    interval: Duration,
    stopped: Mutex<HashSet<usize>>,
    /// Last heartbeat sent per identity (ms), for the expiry check.
    last_sent: Vec<AtomicU64>,
    refused: AtomicU64,
    sent: AtomicU64,
    /// Longest round over all identities (ms): above the TTL, the sender
    /// itself could not keep leases alive.
    slowest_round_ms: AtomicU64,
}

impl Sender {
    fn run(&self, c: &Client, stop: &AtomicBool, limit: Instant) {
        let slices = (self.interval.as_millis() as u64 / 500).max(1) as usize;
        let per_slice = self.keys.len().div_ceil(slices).max(1);
        let mut last = 0u64;
        'outer: while !stop.load(Ordering::Relaxed) && Instant::now() < limit {
            let round = Instant::now();
            for (s, chunk) in self.keys.chunks(per_slice).enumerate() {
                let slice_start = round + self.interval * s as u32 / slices as u32;
                while Instant::now() < slice_start {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let stopped = self.stopped.lock().expect("lock").clone();
                let now = now_ms();
                last = now.max(last + 1);
                let mut batch: Vec<SignedHeartbeat> = Vec::new();
                let mut ids = Vec::new();
                for (j, key) in chunk.iter().enumerate() {
                    let id = s * per_slice + j;
                    if stopped.contains(&id) {
                        continue;
                    }
                    batch.push(Signer::new(key.clone()).lease_heartbeat(c.chain_id(), last));
                    ids.push(id);
                }
                for (part, part_ids) in batch
                    .chunks(MAX_HEARTBEATS_PER_REQUEST)
                    .zip(ids.chunks(MAX_HEARTBEATS_PER_REQUEST))
                {
                    for (_, answer) in c.send_heartbeats(part) {
                        match answer {
                            Ok(r) => {
                                self.refused
                                    .fetch_add(r.refused.len() as u64, Ordering::Relaxed);
                            }
                            Err(e) => progress(&format!("heartbeat request failed: {e}")),
                        }
                    }
                    for id in part_ids {
                        self.last_sent[*id].store(last, Ordering::Relaxed);
                    }
                    self.sent.fetch_add(part.len() as u64, Ordering::Relaxed);
                }
            }
            self.slowest_round_ms
                .fetch_max(round.elapsed().as_millis() as u64, Ordering::Relaxed);
            while round.elapsed() < self.interval && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The nodes' serving-time histogram of [`LOOKUP_ROUTE`] (answers 200),
/// summed over nodes: cumulative counts per upper bound (seconds).
#[derive(Debug, Clone, Default)]
pub struct ServerHistogram {
    buckets: Vec<(f64, u64)>,
}

impl ServerHistogram {
    /// Read every node's `/metrics` (a node that does not answer adds nothing).
    fn scrape(urls: &[String]) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut sum = ServerHistogram::default();
        for url in urls {
            let body = agent
                .get(&format!("{url}/metrics"))
                .call()
                .and_then(|mut r| {
                    r.body_mut()
                        .with_config()
                        .limit(MAX_METRICS_BYTES)
                        .read_to_string()
                });
            match body {
                Ok(text) => sum.add(&Self::parse(&text)),
                Err(e) => progress(&format!("{url}/metrics: {e}")),
            }
        }
        sum
    }

    /// The lookup route's buckets in a Prometheus text answer.
    fn parse(text: &str) -> Self {
        let route = format!("route=\"{LOOKUP_ROUTE}\"");
        let mut buckets = Vec::new();
        for line in text.lines() {
            let name_end = line.find('{').unwrap_or(0);
            if !line[..name_end].ends_with("api_request_seconds_bucket") {
                continue;
            }
            let rest = &line[name_end + 1..];
            let Some((labels, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            if !labels.contains(&route) || !labels.contains("status=\"200\"") {
                continue;
            }
            let Some(le) = labels
                .split_once("le=\"")
                .and_then(|(_, v)| v.split_once('"'))
                .map(|(v, _)| v)
            else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                match le.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            };
            if let Ok(count) = value.trim().parse::<f64>() {
                buckets.push((le, count as u64));
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        ServerHistogram { buckets }
    }

    fn add(&mut self, other: &Self) {
        for &(le, n) in &other.buckets {
            match self.buckets.iter_mut().find(|(l, _)| *l == le) {
                Some((_, m)) => *m += n,
                None => self.buckets.push((le, n)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// What was added since `earlier`.
    fn since(&self, earlier: &Self) -> Self {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, n)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0, |(_, m)| *m);
                (le, n.saturating_sub(before))
            })
            .collect();
        ServerHistogram { buckets }
    }

    /// Lookups served.
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |(_, n)| *n)
    }

    /// Upper bound (ms) of the bucket holding quantile `q` (0..=1), `None`
    /// without samples; infinite when it lies above the last finite bound.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        self.buckets
            .iter()
            .find(|(_, n)| *n >= rank)
            .map(|(le, _)| le * 1000.0)
    }
}

/// One round of verified lookups of every service: the instances seen.
fn scan(
    c: &Client,
    ns: &str,
    services: u64,
    lookups: &Mutex<Latencies>,
    verify: &Mutex<Latencies>,
    sched: &Mutex<SchedStat>,
) -> Result<HashSet<String>, String> {
    let trust = c.trusted();
    let next = AtomicU64::new(0);
    let seen: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let lookup_loop = || loop {
        let j = next.fetch_add(1, Ordering::Relaxed);
        if j >= services {
            return;
        }
        let service = format!("svc{j:05}");
        let t = Instant::now();
        match c.lookup_fresh(ns, &service) {
            Ok((v, response)) => {
                lookups.lock().expect("lock").push(t.elapsed());
                if j % VERIFY_SAMPLE == 0 {
                    let t = Instant::now();
                    let again = verify_lookup(&trust, ns, &service, &response, now_ms(), None);
                    let took = t.elapsed();
                    if again.is_ok() {
                        verify.lock().expect("lock").push(took);
                    }
                }
                let mut seen = seen.lock().expect("lock");
                for i in v.instances() {
                    seen.insert(i.instance.clone());
                }
            }
            Err(e) => {
                *failed.lock().expect("lock") = Some(format!("lookup {service}: {e}"));
                return;
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..LOOKUP_THREADS {
            s.spawn(|| {
                let start = SchedStat::this_thread();
                lookup_loop();
                if let (Some(a), Some(b)) = (start, SchedStat::this_thread()) {
                    sched.lock().expect("lock").add(&b.since(&a));
                }
            });
        }
    });
    match failed.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(seen.into_inner().expect("lock")),
    }
}

/// Run the fleet against the testnet in `args.dir`.
pub fn run(args: &FleetArgs) -> Result<FleetResult, String> {
    if args.instances == 0 || args.per_identity == 0 || args.interval == 0 {
        return Err("instances, per-identity and interval must be positive".into());
    }
    if args.interval >= args.ttl {
        return Err("the heartbeat interval must be below the TTL".into());
    }
    let net = Testnet::open(&args.dir).map_err(|e| e.to_string())?;
    let layout = net.layout().clone();
    let network = load_network_file(&layout.network_file()).map_err(|e| e.to_string())?;
    let nodes: Vec<u32> = net
        .record()
        .nodes
        .iter()
        .filter(|n| n.twin_of.is_none())
        .filter_map(|n| n.pid.filter(|p| alive(*p)))
        .collect();
    let data_dirs: Vec<_> = (0..nodes.len())
        .map(|i| layout.node_dir(i).join("data"))
        .collect();
    let disk_mib = || {
        data_dirs.iter().map(|d| disk_usage(d)).sum::<u64>() as f64
            / data_dirs.len().max(1) as f64
            / (1024.0 * 1024.0)
    };
    let wal_mib = || {
        data_dirs.iter().map(|d| wal_bytes(d)).sum::<u64>() as f64
            / data_dirs.len().max(1) as f64
            / (1024.0 * 1024.0)
    };
    let height = || {
        net.status()
            .iter()
            .filter_map(|s| s.status.as_ref().ok().map(|st| st.height))
            .max()
            .unwrap_or(0)
    };
    let c = client(&network)?;
    let run_id = now_ms() / 1000 % 1_000_000;
    let ns = format!("fleet-{run_id:06}");
    let identities = args.instances.div_ceil(args.per_identity);
    let keys: Vec<SecretKey> = (0..identities).map(|i| identity_key(run_id, i)).collect();
    let authority = Signer::load(&layout.authority_key()).map_err(|e| e.to_string())?;

    // Off-consensus heartbeats only work on an attested chain: ask first.
    let probe = Signer::new(keys[0].clone()).lease_heartbeat(c.chain_id(), now_ms());
    if let Some((url, Err(e))) = c.send_heartbeats(&[probe]).into_iter().next() {
        return Err(format!(
            "{url} refused a heartbeat ({e}); start the testnet with `palisade-testnet up --leases attested`"
        ));
    }

    let setup = Instant::now();
    progress(&format!("enrolling {identities} identities in {ns}"));
    enroll(&c, &authority, &ns, &keys)?;
    let sender = Arc::new(Sender {
        keys: keys.clone(),
        interval: Duration::from_secs(args.interval),
        stopped: Mutex::new(HashSet::new()),
        last_sent: (0..identities).map(|_| AtomicU64::new(0)).collect(),
        refused: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        slowest_round_ms: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    // Bounded: setup (at most an hour) plus the steady phase and checks.
    let limit = Instant::now() + Duration::from_secs(3600 + args.duration + 2 * args.ttl + 60);
    let sender_thread = {
        let (sender, stop, c) = (sender.clone(), stop.clone(), client(&network)?);
        std::thread::spawn(move || sender.run(&c, &stop, limit))
    };
    progress(&format!("registering {} instances", args.instances));
    let registered = register(&c, &ns, &keys, args.per_identity, args.instances, args.ttl);
    let result = registered.and_then(|()| {
        let probes = Probes {
            disk_mib: &disk_mib,
            wal_mib: &wal_mib,
            height: &height,
        };
        steady(args, &c, &ns, &sender, &nodes, &probes, setup.elapsed())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = sender_thread.join();
    progress(&format!(
        "heartbeats sent {}, refused by nodes {}, slowest round over all identities {:.1} s",
        sender.sent.load(Ordering::Relaxed),
        sender.refused.load(Ordering::Relaxed),
        sender.slowest_round_ms.load(Ordering::Relaxed) as f64 / 1000.0
    ));
    result
}

/// What the steady phase reads about the nodes.
struct Probes<'a> {
    disk_mib: &'a dyn Fn() -> f64,
    wal_mib: &'a dyn Fn() -> f64,
    height: &'a dyn Fn() -> u64,
}

/// Bytes of RocksDB write-ahead log files (`*.log`) under `dir`.
fn wal_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            total += wal_bytes(&path);
        } else if path.extension().is_some_and(|x| x == "log") {
            total += e.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

fn steady(
    args: &FleetArgs,
    c: &Client,
    ns: &str,
    sender: &Sender,
    pids: &[u32],
    probes: &Probes<'_>,
    setup: Duration,
) -> Result<FleetResult, String> {
    let disk_mib = probes.disk_mib;
    let height0 = (probes.height)();
    let services = args.instances.div_ceil(PER_SERVICE);
    let identity_of = |instance: &str| -> Option<usize> {
        let i: u64 = instance.strip_prefix('i')?.parse().ok()?;
        Some((i / args.per_identity) as usize)
    };
    let started = Instant::now();
    let phase = Duration::from_secs(args.duration);
    progress(&format!(
        "registered in {:.0} s; steady phase of {} s",
        setup.as_secs_f64(),
        args.duration
    ));
    // Heartbeat-only window: the nodes' CPU over it.
    let window = (phase / 4).clamp(Duration::from_secs(5), Duration::from_secs(30));
    let cpu0 = Snapshot::take(pids);
    std::thread::sleep(window);
    let heartbeat_cores = cpu0.usage_since(pids).total_cores();
    progress(&format!(
        "heartbeat-only window: {heartbeat_cores:.2} cores"
    ));

    let lookups = Mutex::new(Latencies::new());
    let verify = Mutex::new(Latencies::new());
    let urls: Vec<String> = c
        .network()
        .nodes
        .iter()
        .map(|n| n.api_url.clone())
        .collect();
    let served0 = ServerHistogram::scrape(&urls);
    let client_sched = Mutex::new(SchedStat::default());
    let workers0 = SchedStat::threads_named(pids, "tokio-rt-worker");
    let mut spurious: HashSet<String> = HashSet::new();
    let mut ever_seen: HashSet<String> = HashSet::new();
    let mut stopped_at: Option<Instant> = None;
    let mut mid_disk: Option<f64> = None;
    let identities = sender.keys.len();
    let sample = ((identities as u64 * args.stop_permille).div_ceil(1000) as usize).max(1);
    while started.elapsed() < phase {
        if stopped_at.is_none() && started.elapsed() >= phase / 3 {
            let step = (identities / sample).max(1);
            let chosen: HashSet<usize> = (0..identities).step_by(step).take(sample).collect();
            *sender.stopped.lock().expect("lock") = chosen;
            stopped_at = Some(Instant::now());
            progress(&format!("stopped the heartbeats of {sample} identities"));
        }
        if mid_disk.is_none() && started.elapsed() >= phase / 2 {
            mid_disk = Some(disk_mib());
        }
        let seen = scan(c, ns, services, &lookups, &verify, &client_sched)?;
        let stopped = sender.stopped.lock().expect("lock").clone();
        for i in 0..args.instances {
            let (_, name) = names(i);
            let id = (i / args.per_identity) as usize;
            // Seen in a verified answer before, missing now, while its owner
            // kept sending heartbeats: a spurious expiry. (Never seen: its
            // registration did not commit, counted apart.)
            if !stopped.contains(&id) && !seen.contains(&name) && ever_seen.contains(&name) {
                spurious.insert(name);
            }
        }
        ever_seen.extend(seen);
    }
    let mid_disk = mid_disk.unwrap_or_else(disk_mib);
    // Wait until every stopped instance is due (last heartbeat + TTL + slack),
    // then look once more.
    let stopped = sender.stopped.lock().expect("lock").clone();
    let latest_stop_ms = stopped
        .iter()
        .map(|id| sender.last_sent[*id].load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let due_ms = latest_stop_ms + args.ttl * 1000 + EXPIRY_SLACK.as_millis() as u64;
    let wait = due_ms.saturating_sub(now_ms());
    if wait > 0 {
        progress(&format!(
            "waiting {:.0} s for the stopped leases",
            wait as f64 / 1000.0
        ));
        std::thread::sleep(Duration::from_millis(wait));
    }
    let end_disk = disk_mib();
    let blocks_per_s =
        ((probes.height)().saturating_sub(height0)) as f64 / started.elapsed().as_secs_f64();
    let wal_mib = (probes.wal_mib)();
    let seen = scan(c, ns, services, &lookups, &verify, &client_sched)?;
    let missed = seen
        .iter()
        .filter(|name| identity_of(name).is_some_and(|id| stopped.contains(&id)))
        .count() as u64;
    let stopped_instances = (0..args.instances)
        .filter(|i| stopped.contains(&((i / args.per_identity) as usize)))
        .count() as u64;
    let never_seen = (0..args.instances)
        .filter(|i| !ever_seen.contains(&names(*i).1) && !seen.contains(&names(*i).1))
        .count() as u64;
    if never_seen > 0 {
        progress(&format!(
            "{never_seen} instances never seen in a verified answer (registration not committed)"
        ));
    }
    let alive = seen
        .iter()
        .filter(|name| identity_of(name).is_some_and(|id| !stopped.contains(&id)))
        .count() as u64;
    Ok(FleetResult {
        alive,
        spurious: spurious.len() as u64,
        missed,
        stopped: stopped_instances,
        lookups: lookups.into_inner().expect("lock"),
        verify: verify.into_inner().expect("lock"),
        served: ServerHistogram::scrape(&urls).since(&served0),
        client_sched: client_sched.into_inner().expect("lock"),
        workers_sched: SchedStat::threads_named(pids, "tokio-rt-worker").since(&workers0),
        heartbeat_cores,
        disk_mib: end_disk,
        growth_mib: end_disk - mid_disk,
        wal_mib,
        blocks_per_s,
        setup_secs: setup.as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# TYPE palisade_api_request_seconds histogram
palisade_api_request_seconds_bucket{le="0.0001",route="/v1/epochs",status="200"} 7
palisade_api_request_seconds_bucket{le="0.001",route="/v1/services/{namespace}/{service}",status="200"} 90
palisade_api_request_seconds_bucket{le="0.01",route="/v1/services/{namespace}/{service}",status="200"} 99
palisade_api_request_seconds_bucket{le="+Inf",route="/v1/services/{namespace}/{service}",status="200"} 100
palisade_api_request_seconds_bucket{le="+Inf",route="/v1/services/{namespace}/{service}",status="400"} 50
"#;

    #[test]
    fn the_nodes_lookup_histogram_is_read_summed_and_differenced() {
        let one = ServerHistogram::parse(METRICS);
        assert_eq!(one.count(), 100, "only the lookup route's 200 answers");
        assert_eq!(one.quantile_ms(0.5), Some(1.0));
        assert_eq!(one.quantile_ms(0.99), Some(10.0));
        assert_eq!(one.quantile_ms(1.0), Some(f64::INFINITY));
        let mut two = one.clone();
        two.add(&one);
        assert_eq!(two.count(), 200);
        let later = ServerHistogram::parse(&METRICS.replace("} 100", "} 120"));
        let diff = later.since(&one);
        assert_eq!(diff.count(), 20);
        assert_eq!(diff.quantile_ms(0.5), Some(f64::INFINITY));
        assert_eq!(ServerHistogram::default().quantile_ms(0.99), None);
    }
}
