//! Real-process testnets: bootstrap, status and fault injection over
//! `palisade-node` processes on 127.0.0.1.
//!
//! Every process this module starts is recorded by pid in `DIR/testnet.json`
//! and stopped by pid ([`Testnet::down`]). Faults act on real processes:
//! SIGKILL, SIGSTOP/SIGCONT, restarts from the node's own RocksDB directory,
//! and partitions through the node's transport filter, which exists only when
//! the node runs with `fault_injection = true`.

mod bootstrap;
mod layout;
mod membership;
mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use palisade_crypto::api::{BlockResponse, StatusResponse};
use palisade_crypto::BlockInfo;

pub use bootstrap::{generate, wait_for_height, UpOptions};
pub use layout::{absolute, Layout, NodeRecord, TestnetRecord};
pub use process::{alive, free_port, signal, spawn_node, stop};

/// Why a testnet command failed.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// A file or process operation failed.
    #[error("{path}: {source}")]
    Io {
        /// What was being accessed.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `testnet.json` is unreadable.
    #[error("{path}: not a testnet record: {reason}")]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No node with that index.
    #[error("no node {index}: the testnet has nodes 0..{count}")]
    NoSuchNode {
        /// Asked for.
        index: usize,
        /// Number of nodes.
        count: usize,
    },
    /// A signal could not be delivered.
    #[error("signal {signal} to pid {pid}: {reason}")]
    Signal {
        /// Target.
        pid: u32,
        /// Signal name.
        signal: String,
        /// Why.
        reason: String,
    },
    /// The node is not running (or is already running, for restart).
    #[error("node {index}: {reason}")]
    State {
        /// Node.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// An HTTP call to a node failed.
    #[error("node {index} at {url}: {reason}")]
    Http {
        /// Node.
        index: usize,
        /// URL called.
        url: String,
        /// Why.
        reason: String,
    },
    /// A node process exited while the testnet was coming up.
    #[error("node{index} exited while the testnet was starting; last lines of {}:\n{tail}", log.display())]
    NodeExited {
        /// Node.
        index: usize,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// A partition spec did not parse.
    #[error("bad partition {spec:?}: {reason} (expected e.g. 0,1/2,3)")]
    BadPartition {
        /// The spec.
        spec: String,
        /// Why.
        reason: String,
    },
}

impl TestnetError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TestnetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A testnet on disk, with its recorded processes.
#[derive(Debug)]
pub struct Testnet {
    layout: Layout,
    record: TestnetRecord,
}

/// One node's view, for `status`.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The node's record.
    pub node: NodeRecord,
    /// Whether its process is alive.
    pub running: bool,
    /// Its API's answer, or why there was none.
    pub status: Result<StatusResponse, String>,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

impl Testnet {
    /// Open the testnet in `dir`.
    pub fn open(dir: &Path) -> Result<Self, TestnetError> {
        let layout = Layout::new(dir);
        let record = layout.load()?;
        Ok(Testnet { layout, record })
    }

    /// Wrap a freshly created record (used by bootstrap).
    pub fn from_parts(layout: Layout, record: TestnetRecord) -> Self {
        Testnet { layout, record }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The record.
    pub fn record(&self) -> &TestnetRecord {
        &self.record
    }

    fn node(&self, index: usize) -> Result<&NodeRecord, TestnetError> {
        self.record
            .nodes
            .get(index)
            .ok_or(TestnetError::NoSuchNode {
                index,
                count: self.record.nodes.len(),
            })
    }

    fn running_pid(&self, index: usize) -> Result<u32, TestnetError> {
        let node = self.node(index)?;
        match node.pid {
            Some(pid) if alive(pid) => Ok(pid),
            _ => Err(TestnetError::State {
                index,
                reason: "not running".into(),
            }),
        }
    }

    /// Start node `index` from its config and record its pid.
    fn start(&mut self, index: usize) -> Result<u32, TestnetError> {
        let pid = spawn_node(
            &self.record.node_binary,
            &self.layout.node_config(index),
            &self.layout.node_log(index),
            &[],
        )?;
        self.record.nodes[index].pid = Some(pid);
        self.layout.save(&self.record)?;
        Ok(pid)
    }

    /// Start every node that is not running.
    pub fn start_all(&mut self) -> Result<(), TestnetError> {
        for i in 0..self.record.nodes.len() {
            let running = self.record.nodes[i].pid.is_some_and(alive);
            if !running && !self.record.nodes[i].removed {
                self.start(i)?;
            }
        }
        Ok(())
    }

    /// SIGKILL node `index`.
    pub fn kill(&mut self, index: usize) -> Result<u32, TestnetError> {
        let pid = self.running_pid(index)?;
        signal(pid, Signal::SIGKILL)?;
        stop(pid, Duration::from_secs(5))?;
        self.record.nodes[index].pid = None;
        self.layout.save(&self.record)?;
        Ok(pid)
    }

    /// Start node `index` again from its own data directory.
    pub fn restart(&mut self, index: usize) -> Result<u32, TestnetError> {
        self.node(index)?;
        if let Some(pid) = self.record.nodes[index].pid.filter(|p| alive(*p)) {
            stop(pid, Duration::from_secs(10))?;
        }
        let pid = self.start(index)?;
        self.wait_api(index, Duration::from_secs(30))?;
        Ok(pid)
    }

    /// Wait until node `index` answers on its API (a restarted node opens
    /// RocksDB and replays before it listens), failing at once, with its
    /// log, if the process exits.
    pub fn wait_api(&self, index: usize, timeout: Duration) -> Result<(), TestnetError> {
        let node = self.node(index)?;
        let agent = agent(Duration::from_secs(2));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exited) = self.exited_node() {
                return Err(exited);
            }
            match fetch_status(&agent, &node.api_url) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(TestnetError::Http {
                        index,
                        url: node.api_url.clone(),
                        reason: format!("no answer within {timeout:?}: {e}"),
                    })
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// SIGSTOP node `index`.
    pub fn pause(&self, index: usize) -> Result<u32, TestnetError> {
        let pid = self.running_pid(index)?;
        signal(pid, Signal::SIGSTOP)?;
        Ok(pid)
    }

    /// SIGCONT node `index`.
    pub fn resume(&self, index: usize) -> Result<u32, TestnetError> {
        let pid = self.running_pid(index)?;
        signal(pid, Signal::SIGCONT)?;
        Ok(pid)
    }

    /// Stop every recorded process (SIGTERM, then SIGKILL).
    pub fn down(&mut self) -> Result<Vec<u32>, TestnetError> {
        let mut stopped = Vec::new();
        for i in 0..self.record.nodes.len() {
            if let Some(pid) = self.record.nodes[i].pid.take() {
                if alive(pid) {
                    stop(pid, Duration::from_secs(10))?;
                    stopped.push(pid);
                }
            }
        }
        self.layout.save(&self.record)?;
        Ok(stopped)
    }

    /// The first recorded node whose process is gone, with its log's last
    /// lines: a node that dies while starting must not cost a full timeout.
    pub fn exited_node(&self) -> Option<TestnetError> {
        let node = self
            .record
            .nodes
            .iter()
            .find(|n| n.pid.is_some_and(|p| !alive(p)))?;
        let log = self.layout.node_log(node.index);
        Some(TestnetError::NodeExited {
            index: node.index,
            tail: log_tail(&log, 10),
            log,
        })
    }

    /// Every node's process and API status.
    pub fn status(&self) -> Vec<NodeStatus> {
        let agent = agent(Duration::from_secs(2));
        self.record
            .nodes
            .iter()
            .map(|node| {
                let running = node.pid.is_some_and(alive);
                let status = if running {
                    fetch_status(&agent, &node.api_url)
                } else {
                    Err("not running".into())
                };
                NodeStatus {
                    node: node.clone(),
                    running,
                    status,
                }
            })
            .collect()
    }

    /// Split the validators into groups that cannot reach each other
    /// (`"0,1/2,3"`); nodes not named form their own group each.
    pub fn partition(&self, spec: &str) -> Result<(), TestnetError> {
        let groups = parse_partition(spec, self.record.nodes.len())?;
        let keys: Vec<Vec<String>> = groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|i| self.record.nodes[*i].public_key.clone())
                    .collect()
            })
            .collect();
        for (gi, group) in groups.iter().enumerate() {
            let blocked: Vec<String> = keys
                .iter()
                .enumerate()
                .filter(|(gj, _)| *gj != gi)
                .flat_map(|(_, k)| k.clone())
                .collect();
            for i in group {
                self.admin(*i, "partition", &serde_json::json!({ "blocked": blocked }))?;
            }
        }
        Ok(())
    }

    /// Lift every partition.
    pub fn heal(&self) -> Result<(), TestnetError> {
        for i in 0..self.record.nodes.len() {
            if self.record.nodes[i].pid.is_some_and(alive) {
                self.admin(i, "heal", &serde_json::json!({}))?;
            }
        }
        Ok(())
    }

    fn admin(
        &self,
        index: usize,
        route: &str,
        body: &serde_json::Value,
    ) -> Result<(), TestnetError> {
        let node = self.node(index)?;
        let url = format!("{}/admin/{route}", node.api_url);
        let http = |reason: String| TestnetError::Http {
            index,
            url: url.clone(),
            reason,
        };
        let resp = agent(Duration::from_secs(5))
            .post(&url)
            .send_json(body)
            .map_err(|e| http(e.to_string()))?;
        let code = resp.status().as_u16();
        if code >= 300 {
            let text = resp.into_body().read_to_string().unwrap_or_default();
            return Err(http(format!(
                "HTTP {code}: {text} (is fault_injection enabled?)"
            )));
        }
        Ok(())
    }
}

impl Testnet {
    /// GET `path` from node `index` as JSON: `None` on 404, an error on
    /// any other status but 200.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        index: usize,
        path: &str,
    ) -> Result<Option<T>, TestnetError> {
        let node = self.node(index)?;
        let url = format!("{}{path}", node.api_url);
        let http = |reason: String| TestnetError::Http {
            index,
            url: url.clone(),
            reason,
        };
        let resp = agent(Duration::from_secs(5))
            .get(&url)
            .call()
            .map_err(|e| http(e.to_string()))?;
        match resp.status().as_u16() {
            200 => resp
                .into_body()
                .read_json()
                .map(Some)
                .map_err(|e| http(e.to_string())),
            404 => Ok(None),
            code => Err(http(format!("HTTP {code}"))),
        }
    }

    /// The committed block info of node `index` at `height`.
    pub fn block(&self, index: usize, height: u64) -> Result<BlockInfo, TestnetError> {
        let path = format!("/v1/blocks/{height}");
        let http = |reason: String| TestnetError::Http {
            index,
            url: path.clone(),
            reason,
        };
        let body: BlockResponse = self
            .get_json(index, &path)?
            .ok_or_else(|| http("HTTP 404".into()))?;
        body.block.decode().map_err(|e| http(e.to_string()))
    }

    /// Node `index`'s status, if it answers.
    pub fn node_status(&self, index: usize) -> Result<StatusResponse, TestnetError> {
        let node = self.node(index)?;
        fetch_status(&agent(Duration::from_secs(2)), &node.api_url).map_err(|reason| {
            TestnetError::Http {
                index,
                url: node.api_url.clone(),
                reason,
            }
        })
    }

    /// The height at which node `index` says transaction `id` committed
    /// (`None`: unknown to it, or still pending).
    pub fn tx_height(
        &self,
        index: usize,
        id: &palisade_crypto::Digest,
    ) -> Result<Option<u64>, TestnetError> {
        let answer: Option<serde_json::Value> =
            self.get_json(index, &format!("/v1/tx/{}", id.to_hex()))?;
        Ok(answer.and_then(|v| v["receipt"]["height"].as_u64()))
    }

    /// Sum of the samples of Prometheus counter `name` whose labels contain
    /// `label` ("" for all) that node `index` exports.
    pub fn node_metric(&self, index: usize, name: &str, label: &str) -> Result<f64, TestnetError> {
        let node = self.node(index)?;
        fetch_metric(&node.api_url, name, label).map_err(|reason| TestnetError::Http {
            index,
            url: node.api_url.clone(),
            reason,
        })
    }
}

/// Sum of the samples of Prometheus counter `name` whose labels contain
/// `label` ("" for all), from `GET {api_url}/metrics` (Palisade or etcd).
pub fn fetch_metric(api_url: &str, name: &str, label: &str) -> Result<f64, String> {
    let resp = agent(Duration::from_secs(3))
        .get(&format!("{api_url}/metrics"))
        .call()
        .map_err(|e| e.to_string())?;
    if resp.status().as_u16() != 200 {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    let text = resp
        .into_body()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok(parse_metric(&text, name)
        .1
        .iter()
        .filter(|(labels, _)| labels.contains(label))
        .map(|(_, v)| v)
        .sum())
}

/// The samples of `name` in a Prometheus text exposition: their sum and
/// `(labels, value)` for each (`labels` as written between the braces).
pub fn parse_metric(text: &str, name: &str) -> (f64, Vec<(String, f64)>) {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((labels, value)) => (labels.to_string(), value),
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(value) => (String::new(), value),
                None => continue, // another metric sharing the prefix
            },
        };
        if let Ok(v) = value.trim().parse::<f64>() {
            samples.push((labels, v));
        }
    }
    (samples.iter().map(|(_, v)| v).sum(), samples)
}

fn fetch_status(agent: &ureq::Agent, api_url: &str) -> Result<StatusResponse, String> {
    let url = format!("{api_url}/v1/status");
    let resp = agent.get(&url).call().map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    if code != 200 {
        return Err(format!("HTTP {code}"));
    }
    resp.into_body()
        .read_json::<StatusResponse>()
        .map_err(|e| e.to_string())
}

/// Parse `"0,1/2,3"` into groups of node indices below `n`; every index at
/// most once; unnamed nodes become singleton groups.
pub fn parse_partition(spec: &str, n: usize) -> Result<Vec<Vec<usize>>, TestnetError> {
    let bad = |reason: String| TestnetError::BadPartition {
        spec: spec.to_string(),
        reason,
    };
    let mut seen = vec![false; n];
    let mut groups = Vec::new();
    for part in spec.split('/') {
        let mut group = Vec::new();
        for item in part.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let i: usize = item
                .parse()
                .map_err(|_| bad(format!("{item:?} is not a node index")))?;
            if i >= n {
                return Err(bad(format!("node {i} does not exist (0..{n})")));
            }
            if seen[i] {
                return Err(bad(format!("node {i} appears twice")));
            }
            seen[i] = true;
            group.push(i);
        }
        if group.is_empty() {
            return Err(bad("empty group".into()));
        }
        groups.push(group);
    }
    if groups.len() < 2 {
        return Err(bad("a partition needs at least two groups".into()));
    }
    for (i, s) in seen.iter().enumerate() {
        if !s {
            groups.push(vec![i]);
        }
    }
    Ok(groups)
}

/// The last `n` lines of a log file (or why it could not be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(n);
            lines[from..]
                .iter()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("  (cannot read it: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_specs() {
        assert_eq!(
            parse_partition("0,1/2,3", 4).unwrap(),
            vec![vec![0, 1], vec![2, 3]]
        );
        assert_eq!(
            parse_partition("0/1", 4).unwrap(),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
        for bad in ["0,1", "0,1/1,2", "0/4", "a/b", "0//1", ""] {
            assert!(parse_partition(bad, 4).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metric_samples_are_summed_by_exact_name() {
        let text = "# HELP palisade_consensus_refused Consensus messages refused.\n\
                    # TYPE palisade_consensus_refused counter\n\
                    palisade_consensus_refused_total{reason=\"AlreadyVoted\"} 3\n\
                    palisade_consensus_refused_total{reason=\"StaleRound\"} 4\n\
                    palisade_consensus_refused_total_other 100\n\
                    palisade_height 17\n";
        let (sum, samples) = parse_metric(text, "palisade_consensus_refused_total");
        assert_eq!(sum, 7.0);
        assert_eq!(samples[0], ("reason=\"AlreadyVoted\"".to_string(), 3.0));
        assert_eq!(parse_metric(text, "palisade_height").0, 17.0);
        assert_eq!(parse_metric(text, "palisade_missing").1, vec![]);
    }
}
