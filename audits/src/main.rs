//! `palisade-audit --network FILE [--genesis FILE] [--node URL]... [--follow [--follow-secs N]] [--progress]`:
//! replay a chain's whole history from genesis and check everything (see
//! `palisade_audits::audit`). With several `--node`s every height is fetched
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
use palisade_consensus::hotstuff::CommittedBlock;
use palisade_consensus::state::Genesis;
use palisade_crypto::{Digest, Hex, NetworkFile};
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
    let mut auditor = Auditor::new(&network, &genesis)?;
    let mut evidence = Vec::new();
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
                    height as f64 / secs.max(1e-9),
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
        secs * 1e6 / auditor.height().max(1) as f64
    );
    println!(
        "audit: {} heights, {} transactions, {mismatches} mismatches",
        auditor.height(),
        auditor.transactions()
    );
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
