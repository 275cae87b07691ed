//! Cross-datacenter fault scenarios (issue 14): the scenario's testnet is
//! datacenter B (`dc-b`, under load, checked like every scenario); a second
//! testnet A (`dc-a`) imports B through the link's delay proxies and serves
//! B's records. What must hold, checked through A's nodes:
//! - no wrong root accepted: every remote answer through every A node
//!   verifies against B's validators, and its certified root is the root B's
//!   honest nodes committed at that height;
//! - a lying B node is refused (A's refusal counters move) and A switches to
//!   honest B nodes: the imported height keeps advancing;
//! - no remote instance lost during a partition: what A served before a cut
//!   is still served (stale, verifying) during it;
//! - an equivocating B (a fork started from B's keys that A can reach)
//!   freezes A's link, leaves an evidence file that verifies offline against
//!   B's network file, raises the equivocation metric, and importing resumes
//!   only after the operator's `unfreeze-link`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_client::{
    load_network_file, verify_evidence, Client, ClientConfig, ClientError, RemoteDatacenter,
};
use palisade_crypto::dc::EquivocationEvidence;

use super::load::LOAD_NAMESPACE;
use super::Run;
use crate::cluster::{self, stop, Testnet, TestnetError, UpOptions};
use crate::link::{self, bench::link_state};

/// B's datacenter name in these scenarios.
pub(super) const REMOTE_DC: &str = "dc-b";
const REMOTE_CHAIN: &str = "palisade-dc-b";

fn bad(reason: String) -> TestnetError {
    TestnetError::State { index: 0, reason }
}

/// A's testnet, stopped with its proxies however the scenario ends.
struct Importer {
    dir: PathBuf,
}

impl Drop for Importer {
    fn drop(&mut self) {
        let _ = link::stop_proxies(&self.dir);
        if let Ok(mut net) = Testnet::open(&self.dir) {
            let _ = net.down();
        }
    }
}

impl Importer {
    fn net(&self) -> Result<Testnet, TestnetError> {
        Testnet::open(&self.dir)
    }

    fn urls(&self) -> Result<Vec<String>, TestnetError> {
        Ok(self
            .net()?
            .record()
            .nodes
            .iter()
            .map(|n| n.api_url.clone())
            .collect())
    }

    /// A client of A's nodes (all, or only `only`).
    fn client(&self, only: Option<String>) -> Result<Client, ClientError> {
        let network = load_network_file(&cluster::Layout::new(&self.dir).network_file())?;
        Client::new(
            network,
            ClientConfig {
                only_node: only,
                request_timeout: Duration::from_secs(3),
                retries: 1,
                ..ClientConfig::default()
            },
        )
    }
}

fn sibling(run: &Run<'_>, suffix: &str) -> PathBuf {
    let root = run.net.layout().root();
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    root.with_file_name(format!("{name}-{suffix}"))
}

fn testnet_binary(run: &Run<'_>) -> Result<PathBuf, TestnetError> {
    let bin = run
        .net
        .record()
        .node_binary
        .with_file_name("palisade-testnet");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(bad(format!(
            "{} (the link proxy) is missing: build palisade-testnet",
            bin.display()
        )))
    }
}

/// Start datacenter A and link it to B (the scenario's testnet).
fn start_importer(run: &Run<'_>) -> Result<Importer, TestnetError> {
    let dir = sibling(run, "dc-a");
    let mut up = UpOptions::new(&dir, &run.net.record().node_binary);
    up.datacenter = "dc-a".into();
    up.chain_id = "palisade-dc-a".into();
    up.round_timeout_ms = 500;
    let mut net = cluster::generate(&up)?;
    let importer = Importer { dir: dir.clone() };
    net.start_all()?;
    cluster::wait_for_height(&net, 2, 3, Duration::from_secs(60), |_| {})?;
    link::link(&dir, run.net.layout().root(), 0, &testnet_binary(run)?)?;
    Ok(importer)
}

fn remote(run: &Run<'_>) -> Result<RemoteDatacenter, ClientError> {
    RemoteDatacenter::new(&load_network_file(&run.net.layout().network_file())?)
}

/// What one remote lookup through one A node showed.
enum Seen {
    /// Verified: the certified height and the instances.
    Answer {
        height: u64,
        stale: bool,
        instances: BTreeSet<String>,
    },
    /// Not answered (timeout, not imported yet): says nothing.
    Nothing(String),
}

/// Look `svc0` up through A node `url`; a verification failure is a
/// violation (A's nodes are honest: a failing answer means A accepted a
/// wrong root or served something B did not certify).
fn remote_lookup(run: &mut Run<'_>, a: &Importer, b: &RemoteDatacenter, url: &str) -> Seen {
    let result = a
        .client(Some(url.to_string()))
        .and_then(|c| c.lookup_remote(b, LOAD_NAMESPACE, "svc0"));
    match result {
        Ok(answer) => {
            let height = answer.service.height;
            let root = answer.service.state_root;
            // The certified root is B's: compare with what B's nodes
            // committed at that height (any honest node that answers).
            let committed = (0..run.net.record().nodes.len())
                .find_map(|i| run.net.block(i, height).ok().map(|b| b.state_root));
            if let Some(r) = committed {
                if r != root {
                    run.violations.push(format!(
                        "A node {url} served remote root {} at height {height}, B committed {}",
                        root.to_hex(),
                        r.to_hex()
                    ));
                }
            }
            Seen::Answer {
                height,
                stale: answer.is_stale(),
                instances: answer
                    .service
                    .instances()
                    .iter()
                    .map(|i| i.instance.to_string())
                    .collect(),
            }
        }
        Err(e) if e.is_verification_failure() => {
            run.violations.push(format!(
                "a remote lookup through A node {url} failed verification: {e}"
            ));
            Seen::Nothing(e.to_string())
        }
        Err(e) => Seen::Nothing(e.to_string()),
    }
}

/// Wait (bounded) until every A node serves `svc0` verified with at least
/// one instance; the heights seen.
fn wait_served(
    run: &mut Run<'_>,
    a: &Importer,
    b: &RemoteDatacenter,
    bound: Duration,
) -> Result<Vec<u64>, TestnetError> {
    let urls = a.urls()?;
    let deadline = Instant::now() + bound;
    let mut heights = vec![0; urls.len()];
    let mut last = String::new();
    loop {
        for (i, url) in urls.iter().enumerate() {
            if heights[i] > 0 {
                continue;
            }
            match remote_lookup(run, a, b, url) {
                Seen::Answer {
                    height, instances, ..
                } if !instances.is_empty() => heights[i] = height,
                Seen::Answer { .. } => last = "svc0 has no instance yet".into(),
                Seen::Nothing(e) => last = e,
            }
        }
        if heights.iter().all(|h| *h > 0) {
            return Ok(heights);
        }
        if Instant::now() > deadline {
            run.violations.push(format!(
                "A's nodes did not all serve B's svc0 within {bound:?} (heights {heights:?}; last: {last})"
            ));
            return Ok(heights);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Sum of `palisade_link_*` counter `name` over A's nodes, for labels holding `label`.
fn a_metric(a: &Importer, name: &str, label: &str) -> f64 {
    a.urls()
        .unwrap_or_default()
        .iter()
        .filter_map(|u| cluster::fetch_metric(u, name, label).ok())
        .sum()
}

/// Every B node lies on its export routes but the last (B has 5 nodes,
/// f = 1: the lies are not consensus faults; every importer meets them first).
pub(super) const REMOTE_LIARS: &[(usize, &str)] = &[
    (0, "forge-checkpoint"),
    (1, "omit-change"),
    (2, "alter-change"),
    (3, "stale-checkpoint"),
];

/// A imports B while four of B's five nodes lie on their export routes, then
/// the WAN is cut and healed.
pub(super) fn remote_liar(run: &mut Run<'_>) -> Result<String, TestnetError> {
    let a = start_importer(run)?;
    let b = remote(run).map_err(|e| bad(e.to_string()))?;
    let first = wait_served(run, &a, &b, Duration::from_secs(60))?;
    // Keep serving verified answers while B advances under load.
    let urls = a.urls()?;
    let mut before_cut: Vec<BTreeSet<String>> = vec![BTreeSet::new(); urls.len()];
    let mut heights = first.clone();
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        for (i, url) in urls.iter().enumerate() {
            if let Seen::Answer {
                height, instances, ..
            } = remote_lookup(run, &a, &b, url)
            {
                heights[i] = heights[i].max(height);
                before_cut[i] = instances;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    for (i, (h0, h1)) in first.iter().zip(&heights).enumerate() {
        if h1 <= h0 {
            run.violations.push(format!(
                "A node{i} stopped importing B (remote height {h0} -> {h1} in 8 s of load): it did not switch to an honest B node"
            ));
        }
    }
    let refusals = |reason: &str| {
        a_metric(
            &a,
            "palisade_link_refusals_total",
            &format!("kind=\"{reason}\""),
        )
    };
    let (forged, stale, altered) = (
        refusals("bad_certificate"),
        refusals("bad_chain"),
        refusals("root_mismatch"),
    );
    if forged == 0.0 || altered == 0.0 {
        run.violations.push(format!(
            "A's nodes did not refuse the lies (bad_certificate {forged}, root_mismatch {altered})"
        ));
    }
    // Cut the WAN: every A node keeps serving what it had, stale, verified.
    let b_dir = run.net.layout().root().to_path_buf();
    link::wan(&a.dir, &b_dir, true)?;
    let cut_at = Instant::now();
    let mut detected = None;
    while cut_at.elapsed() < Duration::from_secs(14) {
        if link_state(&urls[0]) == "partitioned" {
            detected = Some(cut_at.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    match detected {
        Some(d) if d <= Duration::from_secs(10) => {}
        other => run.violations.push(format!(
            "the cut link was not declared partitioned within 10 s ({other:?})"
        )),
    }
    for (i, url) in urls.iter().enumerate() {
        match remote_lookup(run, &a, &b, url) {
            Seen::Answer {
                instances, stale, ..
            } => {
                let lost: Vec<_> = before_cut[i].difference(&instances).collect();
                if !lost.is_empty() {
                    run.violations.push(format!(
                        "A node{i} lost remote instances during the partition: {lost:?}"
                    ));
                }
                if i == 0 && detected.is_some() && !stale {
                    run.violations
                        .push("A node0 served a partitioned record not marked stale".into());
                }
            }
            Seen::Nothing(e) => run.violations.push(format!(
                "A node{i} served nothing of B during the partition: {e}"
            )),
        }
    }
    link::wan(&a.dir, &b_dir, false)?;
    let healed = Instant::now();
    let mut live = false;
    while healed.elapsed() < Duration::from_secs(20) {
        if link_state(&urls[0]) == "live" || link_state(&urls[0]) == "lagging" {
            live = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if !live {
        run.violations
            .push("A node0's link did not come back within 20 s of the heal".into());
    }
    Ok(format!(
        "B node0-3 lie on export ({}); A imported through B node4 (remote heights {first:?} -> {heights:?}); refusals: bad_certificate {forged}, bad_chain {stale}, root_mismatch {altered}; WAN cut: partitioned after {:.1} s, served stale; healed in {:.1} s",
        REMOTE_LIARS
            .iter()
            .map(|(_, m)| *m)
            .collect::<Vec<_>>()
            .join(", "),
        detected.map_or(f64::NAN, |d| d.as_secs_f64()),
        healed.elapsed().as_secs_f64()
    ))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), TestnetError> {
    std::fs::create_dir_all(to).map_err(|e| TestnetError::io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| TestnetError::io(from, e))? {
        let entry = entry.map_err(|e| TestnetError::io(from, e))?;
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(|e| TestnetError::io(&path, e))?;
        }
    }
    Ok(())
}

/// A second copy of B's validators from B's keys, not started yet: B's
/// node `donor` is stopped (B goes on with the other three) and its data is
/// copied to four new processes (one per B key, their own ports and peers).
/// Returns the fork and a height at or above the fork point.
fn fork_of_b(run: &mut Run<'_>, donor: usize) -> Result<(Testnet, u64), TestnetError> {
    let dir = sibling(run, "fork");
    let b_layout = run.net.layout().clone();
    let mut up = UpOptions::new(&dir, &run.net.record().node_binary);
    up.datacenter = REMOTE_DC.into();
    up.chain_id = REMOTE_CHAIN.into();
    up.round_timeout_ms = 500;
    let fork = cluster::generate(&up)?;
    let layout = fork.layout().clone();
    // B's genesis and keys; B's network file with the fork's addresses.
    let copy = |from: PathBuf, to: PathBuf| {
        std::fs::copy(&from, &to)
            .map(|_| ())
            .map_err(|e| TestnetError::io(&from, e))
    };
    copy(b_layout.genesis_file(), layout.genesis_file())?;
    for i in 0..4 {
        copy(b_layout.node_key(i), layout.node_key(i))?;
    }
    let mut network = link::network_of(b_layout.root())?;
    for (n, r) in network.nodes.iter_mut().zip(&fork.record().nodes) {
        n.api_url = r.api_url.clone();
        n.p2p_addr = r.p2p_addr.clone();
    }
    std::fs::write(
        layout.network_file(),
        serde_json::to_string_pretty(&network).expect("encodes"),
    )
    .map_err(|e| TestnetError::io(&layout.network_file(), e))?;
    let mut record = fork.record().clone();
    for (r, n) in record.nodes.iter_mut().zip(&network.nodes) {
        r.public_key = n.public_key.to_hex();
    }
    layout.save(&record)?;
    let before = run.net.node_status(donor)?.height;
    run.net.kill(donor)?;
    for i in 0..4 {
        copy_dir(
            &b_layout.node_dir(donor).join("data"),
            &layout.node_dir(i).join("data"),
        )?;
    }
    // The SIGKILL may land after one more commit.
    Ok((Testnet::open(&dir)?, before + 1))
}

/// The link status of A node `url`: (state, imported height).
fn link_of(url: &str) -> (String, u64) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let Ok(mut r) = agent.get(&format!("{url}/v1/links")).call() else {
        return ("unreachable".into(), 0);
    };
    let v: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
    (
        v["links"][0]["state"]
            .as_str()
            .unwrap_or("none")
            .to_string(),
        v["links"][0]["imported_height"].as_u64().unwrap_or(0),
    )
}

/// B forks (a second copy of its validators from its keys) and A can reach
/// the fork through one link proxy.
pub(super) fn remote_equivocation(run: &mut Run<'_>) -> Result<String, TestnetError> {
    let a = start_importer(run)?;
    let b = remote(run).map_err(|e| bad(e.to_string()))?;
    let b_net =
        load_network_file(&run.net.layout().network_file()).map_err(|e| bad(e.to_string()))?;
    wait_served(run, &a, &b, Duration::from_secs(60))?;
    let urls = a.urls()?;
    // The fork point is below what every A node imported from B, so A's
    // imported block is B's own and the fork's chain cannot reach it.
    let (mut fork, fork_point) = fork_of_b(run, 3)?;
    let fork_dir = fork.layout().root().to_path_buf();
    let stop_fork = |fork: &mut Testnet| {
        let _ = fork.down();
    };
    let result = (|| -> Result<String, TestnetError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while urls.iter().any(|u| link_of(u).1 <= fork_point) {
            if Instant::now() > deadline {
                return Err(bad(format!(
                    "A did not import B past height {fork_point} within 30 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // B stops (SIGSTOP) so that the fork, started now, overtakes it:
        // A then meets fork heads above its imported height.
        for i in 0..3 {
            run.net.pause(i)?;
        }
        fork.start_all()?;
        // Importers ask nodes 0 and 1 first: A's proxy 1 now reaches the fork.
        let fork_node1 = fork.record().nodes[1]
            .api_url
            .trim_start_matches("http://")
            .to_string();
        link::redirect_proxy(&a.dir, REMOTE_DC, 1, Some(&fork_node1))?;
        let start = Instant::now();
        let mut frozen = vec![false; urls.len()];
        while start.elapsed() < Duration::from_secs(60) && !frozen.iter().all(|f| *f) {
            for (i, u) in urls.iter().enumerate() {
                frozen[i] = frozen[i] || link_state(u) == "frozen";
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let took = start.elapsed();
        for i in 0..3 {
            run.net.resume(i)?;
        }
        run.net.restart(3)?;
        let n_frozen = frozen.iter().filter(|f| **f).count();
        if n_frozen < urls.len() {
            run.violations.push(format!(
                "only {n_frozen} of A's {} nodes froze the link within 60 s of reaching B's fork",
                urls.len()
            ));
        }
        // Evidence files that verify offline against B's network file (and
        // a doctored copy that does not); the metric.
        let layout_a = cluster::Layout::new(&a.dir);
        let mut files = 0;
        let mut cli_checked = 0;
        let node_bin = run.net.record().node_binary.clone();
        for (i, f) in frozen.iter().enumerate() {
            if !*f {
                continue;
            }
            let dir = layout_a
                .node_dir(i)
                .join("data/links")
                .join(REMOTE_CHAIN)
                .join("evidence");
            let list: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            if list.is_empty() {
                run.violations.push(format!(
                    "A node{i} froze but wrote no evidence in {}",
                    dir.display()
                ));
            }
            for path in list {
                files += 1;
                let bytes = std::fs::read(&path).map_err(|e| TestnetError::io(&path, e))?;
                let checked = palisade_crypto::decode::<EquivocationEvidence>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|ev| verify_evidence(&b_net, &ev).map_err(|e| e.to_string()));
                if let Err(e) = checked {
                    run.violations
                        .push(format!("evidence {} does not verify: {e}", path.display()));
                }
                // The operator's command, when built next to the node.
                let cli = node_bin.with_file_name("palisade");
                if cli.exists() {
                    let ok = std::process::Command::new(&cli)
                        .args(["evidence", "verify", "--network"])
                        .arg(run.net.layout().network_file())
                        .arg(&path)
                        .output()
                        .is_ok_and(|o| o.status.success());
                    if ok {
                        cli_checked += 1;
                    } else {
                        run.violations.push(format!(
                            "`palisade evidence verify --network b.json {}` refused it",
                            path.display()
                        ));
                    }
                }
            }
            let eq = cluster::fetch_metric(
                &urls[i],
                "palisade_link_equivocations_total",
                "datacenter=\"dc-b\"",
            )
            .unwrap_or(0.0);
            if eq < 1.0 {
                run.violations.push(format!(
                    "A node{i} froze but its equivocation metric is {eq}"
                ));
            }
        }
        // Frozen: remote answers still verify (no wrong root), the imported
        // height does not move, even once the fork is gone.
        let mut held = Vec::new();
        for u in &urls {
            if let Seen::Answer { height, .. } = remote_lookup(run, &a, &b, u) {
                held.push(height);
            }
        }
        stop_fork(&mut fork);
        link::redirect_proxy(&a.dir, REMOTE_DC, 1, None)?;
        std::thread::sleep(Duration::from_secs(3));
        for (i, u) in urls.iter().enumerate() {
            if frozen[i] && link_state(u) != "frozen" {
                run.violations.push(format!(
                    "A node{i} resumed importing without the operator's act"
                ));
            }
        }
        // The operator's act, node by node: stop, unfreeze-link, restart.
        let mut net_a = a.net()?;
        for i in 0..urls.len() {
            if let Some(pid) = net_a.record().nodes[i].pid {
                stop(pid, Duration::from_secs(5))?;
            }
            let out = std::process::Command::new(&node_bin)
                .arg("unfreeze-link")
                .arg("--config")
                .arg(layout_a.node_config(i))
                .arg("--datacenter")
                .arg(REMOTE_DC)
                .output()
                .map_err(|e| TestnetError::io(&node_bin, e))?;
            if !out.status.success() {
                run.violations.push(format!(
                    "unfreeze-link on A node{i}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            net_a.restart(i)?;
        }
        // Resumed: every A node imports B above its frozen height again,
        // and its remote answers verify.
        let frozen_at: Vec<u64> = urls.iter().map(|u| link_of(u).1).collect();
        let start_live = Instant::now();
        let mut resumed = vec![0; urls.len()];
        while start_live.elapsed() < Duration::from_secs(60) && resumed.contains(&0) {
            for (i, u) in urls.iter().enumerate() {
                let (state, h) = link_of(u);
                if resumed[i] == 0 && h > frozen_at[i] && (state == "live" || state == "lagging") {
                    resumed[i] = h;
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        if resumed.contains(&0) {
            run.violations.push(format!(
                "after unfreeze-link not every A node imported B again within 60 s (heights {frozen_at:?} -> {resumed:?})"
            ));
        }
        for u in &urls {
            if let Seen::Nothing(e) = remote_lookup(run, &a, &b, u) {
                run.violations.push(format!(
                    "after unfreeze-link A node {u} serves nothing of B: {e}"
                ));
            }
        }
        Ok(format!(
            "fork of B from B node3's data and B's keys, reached through A's proxy 1: {n_frozen}/{} A nodes froze in {:.1} s, {files} evidence files verified offline ({cli_checked} also by `palisade evidence verify`); frozen heights {held:?}; unfreeze-link (node stopped) -> importing B again at {resumed:?}",
            urls.len(),
            took.as_secs_f64()
        ))
    })();
    stop_fork(&mut fork);
    // However the scenario ended, B is whole again.
    for i in 0..3 {
        let _ = run.net.resume(i);
    }
    if !run.net.record().nodes[3].pid.is_some_and(cluster::alive) {
        let _ = run.net.restart(3);
    }
    let _ = std::fs::remove_dir_all(&fork_dir);
    result
}
