//! `palisade-audit --network FILE [--genesis FILE] [--node URL]... [--from-snapshot] [--follow [--follow-secs N]] [--progress]`:
//! replay a chain's whole history from genesis and check everything (see
//! `palisade_audits::audit`). With `--from-snapshot` (a node that prunes
//! its history) it starts instead from the state at the first node's
//! certified head, reached through the certified epoch changes and checked
//! page by page against the certified root (`palisade_audits::snapshot`),
//! and audits every height after it; the last line then says where it
//! started. With several `--node`s every height is fetched
//! from each and two different blocks at one height are reported. The last
//! line is `audit: H heights, T transactions, M mismatches`; the exit code is
//! non-zero when M > 0, and the findings go to the evidence file. With
//! `--follow` it keeps auditing heights as they commit, riding out a node
//! that does not answer for a while, and stops at the first mismatch (a
//! monitor's alarm: findings, evidence file, non-zero exit) or after
//! `--follow-secs`. Progress goes to stderr: a bar on a terminal, one line
//! a second with `--progress` elsewhere.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI prints

mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use palisade_audits::audit::{Auditor, Finding, UntrustedHeight};
use palisade_audits::snapshot::{
    EpochChain, SnapshotError, SnapshotRestore, SnapshotStart, MAX_EPOCH_CHANGES,
};
use palisade_consensus::hotstuff::CommittedBlock;
use palisade_consensus::state::jmt::proof::SparseMerkleRangeProof;
use palisade_consensus::state::Genesis;
use palisade_crypto::api::EpochsResponse;
use palisade_crypto::dc::{ExportHead, ExportSnapshot, LeafChange};
use palisade_crypto::{CommitCertificate, Digest, Hex, JmtHasher, NetworkFile};
use serde::de::DeserializeOwned;
use serde::Deserialize;

#[derive(Parser)]
#[command(
    name = "palisade-audit",
    version,
    about = "Verify a Palisade chain's whole history"
)]
struct Cli {
    /// The chain's network.json (the only trust anchor).
    #[arg(long)]
    network: PathBuf,
    /// The genesis document (default: genesis.json next to the network file);
    /// its hash must be network.json's genesis_hash.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Node API URL to read from (repeatable; default: network.json's first node).
    #[arg(long)]
    node: Vec<String>,
    /// Start from the certified state at the (first) node's head instead of
    /// genesis: for nodes that prune their history (they answer 410 below
    /// their window). The epoch changes from genesis to it are verified, the
    /// state is checked against its certified root, and every later height
    /// is audited as from genesis.
    #[arg(long)]
    from_snapshot: bool,
    /// Keep auditing new heights as they commit, until a mismatch, until
    /// interrupted, or for `--follow-secs`.
    #[arg(long)]
    follow: bool,
    /// With `--follow`: stop (exit 0 if nothing was found) after this many seconds.
    #[arg(long, requires = "follow")]
    follow_secs: Option<u64>,
    /// Where findings are written (JSON lines).
    #[arg(long, default_value = "audit-evidence.jsonl")]
    evidence: PathBuf,
    /// Show progress on stderr even when it is not a terminal (one line a
    /// second); on a terminal a progress bar is always drawn.
    #[arg(long)]
    progress: bool,
}

#[derive(Deserialize)]
struct AuditBlock {
    height: u64,
    committed: Hex<CommittedBlock>,
    tx_ids: Vec<Digest>,
    outcomes: Vec<String>,
}

/// `/v1/snapshot/proof`'s answer.
#[derive(Deserialize)]
struct SnapshotProof {
    height: u64,
    key_hash: Digest,
    proof: Hex<SparseMerkleRangeProof<JmtHasher>>,
}

#[derive(Deserialize)]
struct Status {
    height: u64,
}

enum Fetch {
    Height(Box<UntrustedHeight>, String),
    Absent(String),
}

struct Node {
    url: String,
    agent: ureq::Agent,
}

impl Node {
    fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Node {
            url: url.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn get(&self, path: &str) -> Result<(u16, String)> {
        let url = format!("{}{path}", self.url);
        let mut response = self
            .agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .with_context(|| format!("reading {url}"))?;
        Ok((status, body))
    }

    /// A JSON answer; `Ok(Err(why))` when the node answered something else
    /// (its failure to serve, for the caller to judge).
    fn json<T: DeserializeOwned>(&self, path: &str) -> Result<Result<T, String>> {
        let (status, body) = self.get(path)?;
        if status != 200 {
            return Ok(Err(format!("{path}: HTTP {status}: {}", first(&body))));
        }
        Ok(serde_json::from_str(&body).map_err(|e| format!("{path}: unparsable answer: {e}")))
    }

    fn head(&self) -> Result<u64> {
        let (status, body) = self.get("/v1/status")?;
        if status != 200 {
            bail!("{}: status answered {status}", self.url);
        }
        Ok(serde_json::from_str::<Status>(&body)
            .with_context(|| format!("{}: status", self.url))?
            .height)
    }

    fn fetch(&self, height: u64) -> Result<Fetch> {
        let (status, body) = self.get(&format!("/v1/audit/blocks/{height}"))?;
        if status != 200 {
            return Ok(Fetch::Absent(format!("HTTP {status}: {}", first(&body))));
        }
        let parsed: AuditBlock = match serde_json::from_str(&body) {
            Ok(p) => p,
            Err(e) => return Ok(Fetch::Absent(format!("unparsable answer: {e}"))),
        };
        let committed = match parsed.committed.decode() {
            Ok(c) => c,
            Err(e) => return Ok(Fetch::Absent(format!("undecodable block: {e}"))),
        };
        Ok(Fetch::Height(
            Box::new(UntrustedHeight {
                height: parsed.height,
                committed,
                tx_ids: parsed.tx_ids,
                outcomes: parsed.outcomes,
            }),
            body,
        ))
    }
}

fn first(s: &str) -> &str {
    &s[..s.len().min(200)]
}

/// Every epoch change `node` keeps, in order, page by page (`Ok(Err)`: its
/// answer did not decode or did not advance).
fn epoch_changes(node: &Node) -> Result<Result<Vec<CommitCertificate>, String>> {
    let mut changes: Vec<CommitCertificate> = Vec::new();
    let mut from = 0u64;
    loop {
        let page = match node.json::<EpochsResponse>(&format!("/v1/epochs?from={from}"))? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let certs = match page.certificates() {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("epochs: {e}"))),
        };
        let Some(last) = certs.last().map(|c| c.ledger_info.epoch) else {
            return Ok(Ok(changes));
        };
        if last < from || changes.len() + certs.len() > MAX_EPOCH_CHANGES {
            return Ok(Err(format!(
                "epoch changes from {from} end at epoch {last}, or exceed {MAX_EPOCH_CHANGES}"
            )));
        }
        changes.extend(certs);
        from = last + 1;
    }
}

/// Where an audit from a snapshot starts, or why it cannot.
enum Start {
    At(Box<Auditor>),
    Refused(u64, Finding),
}

/// The auditor at the certified head of `node`, with the state there
/// restored and verified (see `palisade_audits::snapshot`).
fn snapshot_start(node: &Node, network: &NetworkFile, genesis: &Genesis) -> Result<Start> {
    let started = Instant::now();
    let head = match node.json::<ExportHead>("/v1/export/head")? {
        Ok(h) => h,
        Err(e) => bail!("{}: no certified head: {e}", node.url),
    };
    let height = head.height;
    let refused = |e: SnapshotError| {
        let f = match e {
            SnapshotError::BadCertificate(reason) => Finding::BadCertificate { height, reason },
            SnapshotError::AlteredBlock(reason) => Finding::AlteredBlock { height, reason },
            SnapshotError::BadSnapshot(reason) => Finding::BadSnapshot { height, reason },
        };
        Ok(Start::Refused(height, f))
    };
    let bad = |reason: String| refused(SnapshotError::BadSnapshot(reason));
    let cert = match head.certificate.decode() {
        Ok(c) => c,
        Err(e) => return refused(SnapshotError::BadCertificate(format!("head: {e}"))),
    };
    // Every epoch change the node keeps, in order, page by page.
    let changes = match epoch_changes(node)? {
        Ok(c) => c,
        Err(e) => return refused(SnapshotError::BadCertificate(e)),
    };
    // The other nodes' lists too: the audited node alone could withhold
    // the change that retired the epoch its head claims (review-3 AUD-1).
    let mut lists = vec![changes];
    for other in &network.nodes {
        if other.api_url.trim_end_matches('/') == node.url.trim_end_matches('/') {
            continue;
        }
        // An unreachable or unhelpful node adds nothing; the audited
        // node's own list stands.
        if let Ok(Ok(list)) = epoch_changes(&Node::new(&other.api_url)) {
            lists.push(list);
        }
    }
    let chain = match EpochChain::longest(network, &lists, height) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let info = match chain.verify_head(&cert, height) {
        Ok(i) => i,
        Err(e) => return refused(e),
    };
    let block = match node.fetch(height)? {
        Fetch::Height(h, _) => h,
        Fetch::Absent(reason) => {
            let f = Finding::MissingBlock { height, reason };
            return Ok(Start::Refused(height, f));
        }
    };
    let start = match SnapshotStart::new(&chain, info, &block.committed) {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    let mut restore = match SnapshotRestore::new(height, start.info.state_root) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    let mut after: Option<Digest> = None;
    loop {
        let cursor = after.map_or(String::new(), |a| format!("&after={}", a.to_hex()));
        let page = match node
            .json::<ExportSnapshot>(&format!("/v1/export/snapshot?height={height}{cursor}"))?
        {
            Ok(p) => p,
            Err(e) => return bad(format!("page {}: {e}", restore.pages + 1)),
        };
        let n = restore.pages + 1;
        if page.height != height {
            return bad(format!("page {n} is of height {}", page.height));
        }
        let leaves: Vec<LeafChange> = match page.leaves.decode() {
            Ok(l) => l,
            Err(e) => return bad(format!("page {n}: undecodable leaves: {e}")),
        };
        let Some(last) = leaves.last().map(|l| l.key_hash) else {
            return bad(format!("page {n} is empty"));
        };
        let proof = match node.json::<SnapshotProof>(&format!(
            "/v1/snapshot/proof?height={height}&key={}",
            last.to_hex()
        ))? {
            Ok(p) if p.height == height && p.key_hash == last => p,
            Ok(_) => return bad(format!("page {n}: the proof is of another key or height")),
            Err(e) => return bad(format!("page {n}: no proof: {e}")),
        };
        let proof = match proof.proof.decode() {
            Ok(p) => p,
            Err(e) => return bad(format!("page {n}: undecodable proof: {e}")),
        };
        if let Err(e) = restore.add_page(leaves, proof) {
            return refused(e);
        }
        match page.next {
            None => break,
            Some(next) if next == last => after = Some(next),
            Some(_) => return bad(format!("page {n}: the cursor does not follow the page")),
        }
    }
    let (pages, leaves) = (restore.pages, restore.leaves);
    let store = match restore.finish(&start.info, start.epoch) {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    eprintln!(
        "snapshot: height {height} (epoch {}), {leaves} leaves in {pages} pages, \
         {} epoch changes followed, the state root {} certified ({} ms)",
        start.epoch,
        chain.latest().epoch - network.validators.epoch,
        start.info.state_root,
        started.elapsed().as_millis()
    );
    match Auditor::from_snapshot(network, genesis, start, store) {
        Ok(a) => Ok(Start::At(Box::new(a))),
        Err(e) => bad(e.to_string()),
    }
}

fn run(cli: Cli) -> Result<u64> {
    let text = std::fs::read_to_string(&cli.network)
        .with_context(|| format!("reading {}", cli.network.display()))?;
    let network = NetworkFile::from_json(&text).map_err(anyhow::Error::msg)?;
    let genesis_path = cli.genesis.clone().unwrap_or_else(|| {
        cli.network
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("genesis.json")
    });
    let genesis: Genesis = serde_json::from_str(
        &std::fs::read_to_string(&genesis_path)
            .with_context(|| format!("reading {}", genesis_path.display()))?,
    )
    .with_context(|| format!("parsing {}", genesis_path.display()))?;
    let urls = if cli.node.is_empty() {
        vec![network
            .nodes
            .first()
            .context("network.json lists no node")?
            .api_url
            .clone()]
    } else {
        cli.node.clone()
    };
    let nodes: Vec<Node> = urls.iter().map(|u| Node::new(u)).collect();
    let mut evidence = Vec::new();
    let mut auditor = if cli.from_snapshot {
        match snapshot_start(&nodes[0], &network, &genesis)? {
            Start::At(a) => *a,
            Start::Refused(height, f) => {
                println!("{}: {f:?}", f.class());
                evidence.push(record(&f, &nodes[0].url, None));
                std::fs::write(&cli.evidence, evidence.join("\n") + "\n")
                    .with_context(|| format!("writing {}", cli.evidence.display()))?;
                println!("evidence: {}", cli.evidence.display());
                println!(
                    "audit: 0 heights after the snapshot at {height}, 0 transactions, 1 mismatches"
                );
                return Ok(1);
            }
        }
    } else {
        Auditor::new(&network, &genesis)?
    };
    let start = Instant::now();
    let deadline = cli.follow_secs.map(|s| start + Duration::from_secs(s));
    let progress = progress::Progress::new(cli.progress);
    loop {
        let head = match nodes.iter().filter_map(|n| n.head().ok()).max() {
            Some(head) => head,
            // A follower outlives a node restart; a one-shot audit cannot.
            None if cli.follow && auditor.height() > 0 => {
                progress.note("  no node answered its status; retrying");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            None => bail!("no node answered its status"),
        };
        progress.set_head(head);
        while auditor.height() < head {
            let height = auditor.height() + 1;
            let mut served: Vec<(String, Box<UntrustedHeight>, String)> = Vec::new();
            for n in &nodes {
                let fetched = match n.fetch(height) {
                    Ok(f) => f,
                    // Unreachable for now: a follower tries again later.
                    Err(e) if cli.follow => {
                        progress.note(&format!("  {e:#}; trying again later"));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                match fetched {
                    Fetch::Height(h, body) => served.push((n.url.clone(), h, body)),
                    Fetch::Absent(reason) => {
                        let f = Finding::MissingBlock { height, reason };
                        evidence.push(record(&f, &n.url, None));
                        auditor.report(f);
                    }
                }
            }
            let Some((url, first_h, body)) = served.first() else {
                // Nobody served it: nothing to build on.
                break;
            };
            for (other, h, other_body) in &served[1..] {
                if h.committed.info != first_h.committed.info {
                    let f = Finding::ConflictingBlocks {
                        height,
                        nodes: (url.clone(), other.clone()),
                    };
                    evidence.push(record(&f, url, Some(body)));
                    evidence.push(record(&f, other, Some(other_body)));
                    auditor.report(f);
                }
            }
            let found: Vec<Finding> = auditor.audit(first_h).to_vec();
            for f in &found {
                evidence.push(record(f, url, Some(body)));
            }
            progress.set_audited(
                auditor.height(),
                auditor.transactions(),
                auditor.findings().len(),
            );
            if height % 1_000 == 0 && !progress.visible() {
                let secs = start.elapsed().as_secs_f64();
                eprintln!(
                    "  {height}/{head} heights, {:.0} heights/s, {} findings",
                    auditor.audited() as f64 / secs.max(1e-9),
                    auditor.findings().len()
                );
            }
        }
        if !cli.follow {
            break;
        }
        if !auditor.findings().is_empty() {
            println!(
                "follow: stopped at the first mismatch, height {}",
                auditor.height()
            );
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    progress.finish();
    for f in auditor.findings() {
        println!("{}: {f:?}", f.class());
    }
    let mismatches = auditor.findings().len() as u64;
    if mismatches > 0 {
        std::fs::write(&cli.evidence, evidence.join("\n") + "\n")
            .with_context(|| format!("writing {}", cli.evidence.display()))?;
        println!("evidence: {}", cli.evidence.display());
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "audited in {secs:.2} s ({:.0} us per height)",
        secs * 1e6 / auditor.audited().max(1) as f64
    );
    if auditor.start() > 0 {
        println!(
            "audit: {} heights after the snapshot at {}, {} transactions, {mismatches} mismatches",
            auditor.audited(),
            auditor.start(),
            auditor.transactions()
        );
    } else {
        println!(
            "audit: {} heights, {} transactions, {mismatches} mismatches",
            auditor.height(),
            auditor.transactions()
        );
    }
    Ok(mismatches)
}

/// One evidence line: the finding, the node, and what it served.
fn record(f: &Finding, node: &str, served: Option<&String>) -> String {
    serde_json::json!({
        "class": f.class(),
        "finding": format!("{f:?}"),
        "node": node,
        "served": served,
    })
    .to_string()
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
