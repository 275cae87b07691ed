//! The etcd side: a 3-member etcd cluster on 127.0.0.1 (ephemeral ports,
//! data in a temporary directory, every process stopped by pid at the end)
//! driven through etcd's v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`,
//! `/v3/watch`) with the same HTTP client (ureq) and the same loop as
//! Palisade, so client overheads are comparable.
//!
//! etcd 3.4 from Debian: `apt-get install -y etcd-server` provides
//! `/usr/bin/etcd`. Without it the bench prints why and skips this side.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::bench::procfs::{disk_usage, Snapshot};
use crate::bench::stats::{closed_loop, PhaseResult};
use crate::bench::workload::{
    metric_sum, write_tag, write_target, Shape, SystemResult, WatchLog, NAMESPACE, READ_SERVICE,
};
use crate::cluster::{free_port, stop};

/// Where the etcd binary is looked for (then `PATH`).
pub const DEFAULT_ETCD: &str = "/usr/bin/etcd";

/// A running etcd cluster; stopped (by pid) and removed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: PathBuf,
    pids: Vec<u32>,
    client_urls: Vec<String>,
}

/// Find the etcd binary, or say why not.
pub fn find_etcd() -> Result<PathBuf, String> {
    let default = Path::new(DEFAULT_ETCD);
    if default.exists() {
        return Ok(default.to_path_buf());
    }
    if let Ok(path) = std::env::var("PATH") {
        for d in path.split(':') {
            let candidate = Path::new(d).join("etcd");
            if candidate.exists() {
                return Ok(candidate);
            }
        }
    }
    Err("etcd not found (Debian: `apt-get install -y etcd-server etcd-client`); skipping the etcd side".into())
}

fn agent(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(timeout)
        .http_status_as_error(false)
        .build()
        .into()
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

/// The key of `service/instance`.
fn key(service: &str, instance: &str) -> String {
    format!("/{NAMESPACE}/{service}/{instance}")
}

/// The key range of one prefix: `[prefix, prefix with its last byte + 1)`.
fn prefix_range(prefix: &str) -> (String, String) {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    (B64.encode(prefix.as_bytes()), B64.encode(&end))
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Value, String> {
    let resp = agent.post(url).send_json(body).map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let text = resp
        .into_body()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("HTTP {code}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

impl EtcdCluster {
    /// Start `members` etcd processes and wait until they answer.
    pub fn start(binary: &Path, members: usize) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("palisade-bench-etcd-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = || free_port().map_err(|e| e.to_string());
        let mut peers = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..members {
            peers.push(format!("http://127.0.0.1:{}", port()?));
            clients.push(format!("http://127.0.0.1:{}", port()?));
        }
        let initial: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}={p}"))
            .collect();
        let mut cluster = EtcdCluster {
            dir: dir.clone(),
            pids: Vec::new(),
            client_urls: clients.clone(),
        };
        for i in 0..members {
            let log = fs::File::create(dir.join(format!("m{i}.log")))
                .map_err(|e| format!("etcd log: {e}"))?;
            let err = log.try_clone().map_err(|e| format!("etcd log: {e}"))?;
            let mut cmd = Command::new(binary);
            cmd.args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}.etcd")))
                .args(["--listen-client-urls", &clients[i]])
                .args(["--advertise-client-urls", &clients[i]])
                .args(["--listen-peer-urls", &peers[i]])
                .args(["--initial-advertise-peer-urls", &peers[i]])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "palisade-bench"])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err);
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            let child = cmd
                .spawn()
                .map_err(|e| format!("{}: {e}", binary.display()))?;
            cluster.pids.push(child.id());
            // Stopped by pid in `Drop`; the handle is not needed.
            std::mem::forget(child);
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn wait_ready(&self, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        let a = agent(Some(Duration::from_secs(2)));
        let probe = json!({ "key": b64("/probe") });
        for url in &self.client_urls {
            loop {
                if post(&a, &format!("{url}/v3/kv/range"), &probe).is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "etcd member {url} not ready after {bound:?} (logs in {})",
                        self.dir.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Member pids.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// Member client URLs.
    pub fn client_urls(&self) -> &[String] {
        &self.client_urls
    }

    /// Bytes on disk of the members' data.
    pub fn disk(&self) -> u64 {
        (0..self.pids.len())
            .map(|i| disk_usage(&self.dir.join(format!("m{i}.etcd"))))
            .sum()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for pid in &self.pids {
            if let Err(e) = stop(*pid, Duration::from_secs(5)) {
                tracing::warn!(pid, error = %e, "could not stop etcd");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One put.
fn put(a: &ureq::Agent, url: &str, key: &str, value: &str) -> Result<(), String> {
    post(
        a,
        &format!("{url}/v3/kv/put"),
        &json!({ "key": b64(key), "value": value }),
    )
    .map(|_| ())
}

/// A serializable prefix get; returns the number of keys (values decoded).
fn get_prefix(a: &ureq::Agent, url: &str, prefix: &str) -> Result<usize, String> {
    let (key, end) = prefix_range(prefix);
    let v = post(
        a,
        &format!("{url}/v3/kv/range"),
        &json!({ "key": key, "range_end": end, "serializable": true }),
    )?;
    let kvs = v["kvs"].as_array().map_or(&[][..], |k| k.as_slice());
    for kv in kvs {
        let value = kv["value"].as_str().ok_or("kv without value")?;
        B64.decode(value).map_err(|e| e.to_string())?;
    }
    Ok(kvs.len())
}

/// Follow `/bench/` until `stop`, telling `log` of every key put; the stream
/// itself is bounded by `bound`.
fn watch(
    url: String,
    log: Arc<WatchLog>,
    stop: Arc<AtomicBool>,
    bound: Duration,
    ready: std::sync::mpsc::Sender<()>,
) {
    let a = agent(Some(bound));
    let (key, end) = prefix_range(&format!("/{NAMESPACE}/"));
    let body = json!({ "create_request": { "key": key, "range_end": end } });
    let resp = match a.post(&format!("{url}/v3/watch")).send_json(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "etcd watch failed");
            let _ = ready.send(());
            return;
        }
    };
    let reader = BufReader::new(resp.into_body().into_reader());
    let mut ready = Some(ready);
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        for ev in v["result"]["events"].as_array().into_iter().flatten() {
            let Some(k) = ev["kv"]["key"].as_str() else {
                continue;
            };
            let value = ev["kv"]["value"].as_str().unwrap_or_default();
            if let (Ok(k), Ok(v)) = (B64.decode(k), B64.decode(value)) {
                let k = String::from_utf8_lossy(&k);
                let v = String::from_utf8_lossy(&v);
                let instance = k.rsplit('/').next().unwrap_or_default();
                if let Some(n) = v.split(':').next().and_then(|n| n.parse().ok()) {
                    log.seen(write_tag(instance, n));
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
}

/// Run the workload shape against a fresh 3-member cluster, with values of
/// `value_bytes` bytes.
pub fn run(binary: &Path, shape: &Shape, value_bytes: usize) -> Result<SystemResult, String> {
    let cluster = EtcdCluster::start(binary, 3)?;
    let urls = cluster.client_urls().to_vec();
    let pids = cluster.pids().to_vec();
    let me = [std::process::id()];
    let value_of = |n: u64| {
        let mut v = format!("{n}:").into_bytes();
        v.resize(value_bytes.max(v.len()), b'x');
        B64.encode(v)
    };
    let value = value_of(0);

    let a = agent(Some(Duration::from_secs(5)));
    for i in 0..shape.read_instances {
        put(&a, &urls[0], &key(READ_SERVICE, &format!("r{i}")), &value)?;
    }
    let idle0 = Snapshot::take(&pids);
    std::thread::sleep(shape.idle_duration);
    let idle = idle0.usage_since(&pids);
    let disk_before = cluster.disk();

    let writer = |offset: usize| {
        let urls = &urls;
        move |t: usize| -> Result<(ureq::Agent, String, usize), String> {
            Ok((
                agent(Some(Duration::from_secs(10))),
                urls[(t + offset) % urls.len()].clone(),
                t + offset,
            ))
        }
    };
    let log = Arc::new(WatchLog::default());
    let write_op = |log: Arc<WatchLog>| {
        let value_of = &value_of;
        move |(a, url, w): &mut (ureq::Agent, String, usize), n: u64| {
            let (service, instance) = write_target(*w, n);
            let value = value_of(n);
            let at = Instant::now();
            put(a, url, &key(&service, &instance), &value)?;
            log.acked(write_tag(&instance, n), at);
            Ok(())
        }
    };
    // Single writer: ids from 100_000 so they never meet the loaded writers'.
    let single = closed_loop(
        1,
        shape.single_duration,
        shape.max_ops,
        writer(100_000),
        write_op(Arc::new(WatchLog::default())),
    );

    let stop_watch = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let watcher = {
        let (url, log, stop) = (
            urls[urls.len() - 1].clone(),
            log.clone(),
            stop_watch.clone(),
        );
        let bound = shape.duration + Duration::from_secs(30);
        std::thread::spawn(move || watch(url, log, stop, bound, ready_tx))
    };
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    let peer_bytes = || metric_sum(&urls, "etcd_network_peer_sent_bytes_total", "");
    let p0 = peer_bytes();
    let s0 = Snapshot::take(&pids);
    let c0 = Snapshot::take(&me);
    let writes = closed_loop(
        shape.writers,
        shape.duration,
        shape.max_ops,
        writer(0),
        write_op(log.clone()),
    );
    let writes_usage = s0.usage_since(&pids);
    let peer_bytes_writes = p0.zip(peer_bytes()).map(|(a, b)| b.saturating_sub(a));
    let writes_client_cores = c0.usage_since(&me).total_cores();
    // Wake the watcher with one last put, then let it go.
    std::thread::sleep(Duration::from_millis(500));
    stop_watch.store(true, Ordering::Relaxed);
    let _ = put(&a, &urls[0], &key("sentinel", "end"), &value);
    join_bounded(watcher, Duration::from_secs(5));
    let (watch_from_ack, watch_from_submit, watch_missed) = log.propagation();
    let disk_after = cluster.disk();

    let prefix = format!("/{NAMESPACE}/{READ_SERVICE}/");
    let s0 = Snapshot::take(&pids);
    let c0 = Snapshot::take(&me);
    let reads: PhaseResult = closed_loop(
        shape.clients,
        shape.duration,
        shape.max_ops,
        |t| {
            Ok((
                agent(Some(Duration::from_secs(10))),
                urls[t % urls.len()].clone(),
            ))
        },
        |(a, url): &mut (ureq::Agent, String), _| {
            let n = get_prefix(a, url, &prefix)?;
            if n != shape.read_instances {
                return Err(format!("{n} keys, expected {}", shape.read_instances));
            }
            Ok(())
        },
    );
    let reads_usage = s0.usage_since(&pids);
    let reads_client_cores = c0.usage_since(&me).total_cores();
    Ok(SystemResult {
        system: "etcd".into(),
        processes: pids.len(),
        value_bytes,
        idle,
        single,
        writes,
        writes_usage,
        writes_client_cores,
        watch_from_ack,
        watch_from_submit,
        watch_missed,
        reads,
        reads_usage,
        reads_client_cores,
        disk_before,
        disk_after,
        peer_bytes_writes,
        fault: None,
    })
}

/// Join `t` if it finishes within `bound`; otherwise leave it (it ends on
/// its own stream bound).
pub(crate) fn join_bounded(t: std::thread::JoinHandle<()>, bound: Duration) {
    let deadline = Instant::now() + bound;
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if t.is_finished() {
        let _ = t.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_range_ends_after_the_prefix() {
        let (k, e) = prefix_range("/bench/read/");
        assert_eq!(B64.decode(k).unwrap(), b"/bench/read/");
        assert_eq!(B64.decode(e).unwrap(), b"/bench/read0");
    }
}
