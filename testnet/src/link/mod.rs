//! Linking two local testnets as two datacenters (DESIGN.md "Datacenters").
//!
//! `link --dir A --to B [--delay-ms MS]` starts one delay proxy per B node
//! ([`proxy`]), writes B's network file with the proxies' URLs to
//! `A/links/<dc>/network.json` (the same validators: the trust anchor does
//! not change, only where the nodes are reached), adds a `[[links]]` entry
//! to every A node's config (relative to the config, the one path rule) and
//! restarts A's nodes. `wan --dir A --to B cut|heal` creates or removes
//! `A/links/<dc>/cut`, which the proxies watch.
//!
//! ```text
//! A/links/<dc>/network.json   B's network file, nodes reached through the proxies
//! A/links/<dc>/proxies.json   proxy pids and ports
//! A/links/<dc>/cut            present while the link is cut
//! A/links/<dc>/proxyI.stats   bytes each way through proxy I (JSON, refreshed every 200 ms)
//! A/links/<dc>/proxyI.log     proxy I's output
//! ```

pub mod bench;
pub mod proxy;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use palisade_crypto::NetworkFile;
use serde::{Deserialize, Serialize};

use crate::cluster::{alive, free_port, stop, Layout, Testnet, TestnetError};

/// The proxies of one link.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProxyRecord {
    /// `(pid, listen port, upstream host:port)` per remote node.
    pub proxies: Vec<(u32, u16, String)>,
    /// The delay each way, in milliseconds.
    pub delay_ms: u64,
}

fn io(path: &Path, e: std::io::Error) -> TestnetError {
    TestnetError::io(path, e)
}

fn bad(reason: String) -> TestnetError {
    TestnetError::State { index: 0, reason }
}

/// Read a testnet's network file.
pub fn network_of(dir: &Path) -> Result<NetworkFile, TestnetError> {
    let path = Layout::new(dir).network_file();
    let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    NetworkFile::from_json(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
}

/// `A/links/<datacenter>`.
pub fn link_dir(dir: &Path, datacenter: &str) -> PathBuf {
    Layout::new(dir).root().join("links").join(datacenter)
}

/// Make the testnet at `a` import the testnet at `b` through delay proxies
/// started from `proxy_binary` (`palisade-testnet`), and restart `a`'s nodes.
pub fn link(
    a: &Path,
    b: &Path,
    delay_ms: u64,
    proxy_binary: &Path,
) -> Result<PathBuf, TestnetError> {
    let remote = network_of(b)?;
    let local = network_of(a)?;
    if remote.chain_id == local.chain_id {
        return Err(bad(format!(
            "{} and {} are the same chain ({}); start them with different --datacenter names",
            a.display(),
            b.display(),
            local.chain_id
        )));
    }
    let dir = link_dir(a, &remote.datacenter);
    stop_link_proxies(&dir)?;
    fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let mut proxied = remote.clone();
    let mut record = ProxyRecord {
        proxies: Vec::new(),
        delay_ms,
    };
    for (i, node) in proxied.nodes.iter_mut().enumerate() {
        let upstream = node
            .api_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let port = free_port()?;
        let pid = spawn_proxy(&dir, i, port, &upstream, delay_ms, proxy_binary)?;
        record.proxies.push((pid, port, upstream));
        node.api_url = format!("http://127.0.0.1:{port}");
    }
    let proxies_file = dir.join("proxies.json");
    fs::write(
        &proxies_file,
        serde_json::to_string_pretty(&record).expect("encodes"),
    )
    .map_err(|e| io(&proxies_file, e))?;
    let net_file = dir.join("network.json");
    fs::write(
        &net_file,
        serde_json::to_string_pretty(&proxied).expect("encodes"),
    )
    .map_err(|e| io(&net_file, e))?;
    let mut testnet = Testnet::open(a)?;
    let layout = testnet.layout().clone();
    for i in 0..testnet.record().nodes.len() {
        add_link_to_config(&layout, i, &remote.datacenter, &net_file)?;
    }
    for i in 0..testnet.record().nodes.len() {
        testnet.restart(i)?;
    }
    Ok(dir)
}

/// Start proxy `i` of the link whose folder is `dir`: listening on `port`,
/// forwarding to `upstream` (`host:port`); its pid.
fn spawn_proxy(
    dir: &Path,
    i: usize,
    port: u16,
    upstream: &str,
    delay_ms: u64,
    proxy_binary: &Path,
) -> Result<u32, TestnetError> {
    let log_path = dir.join(format!("proxy{i}.log"));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| io(&log_path, e))?;
    let err = log.try_clone().map_err(|e| io(&log_path, e))?;
    let mut cmd = Command::new(proxy_binary);
    cmd.arg("link-proxy")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--upstream")
        .arg(upstream)
        .arg("--delay-ms")
        .arg(delay_ms.to_string())
        .arg("--cut-flag")
        .arg(dir.join("cut"))
        .arg("--stats-file")
        .arg(dir.join(format!("proxy{i}.stats")))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(|e| io(proxy_binary, e))?;
    let pid = child.id();
    std::mem::forget(child);
    Ok(pid)
}

/// Point proxy `i` of the link from `a` to `datacenter` at another upstream
/// (`host:port`) for new connections, or back at its own with `None`: the
/// importers keep the same URL and now reach another process (a fault
/// scenario's fork of the remote DC). Returns the proxy's own upstream.
pub fn redirect_proxy(
    a: &Path,
    datacenter: &str,
    i: usize,
    upstream: Option<&str>,
) -> Result<String, TestnetError> {
    let dir = link_dir(a, datacenter);
    let file = dir.join("proxies.json");
    let text = fs::read_to_string(&file).map_err(|e| io(&file, e))?;
    let record: ProxyRecord =
        serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", file.display())))?;
    let Some((_, _, own)) = record.proxies.get(i) else {
        return Err(bad(format!("{}: no proxy {i}", file.display())));
    };
    let flag = dir.join(format!("proxy{i}.upstream"));
    match upstream {
        Some(u) => fs::write(&flag, u).map_err(|e| io(&flag, e))?,
        None => match fs::remove_file(&flag) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&flag, e)),
            _ => {}
        },
    }
    Ok(own.clone())
}

fn add_link_to_config(
    layout: &Layout,
    i: usize,
    datacenter: &str,
    net_file: &Path,
) -> Result<(), TestnetError> {
    let path = layout.node_config(i);
    let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let mut entry = toml::Table::new();
    entry.insert("datacenter".into(), datacenter.into());
    entry.insert(
        "network_file".into(),
        layout
            .relative_to_node_config(net_file)
            .display()
            .to_string()
            .into(),
    );
    let links = table
        .entry("links")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    let toml::Value::Array(links) = links else {
        return Err(bad(format!("{}: `links` is not an array", path.display())));
    };
    links.retain(|l| l.get("datacenter").and_then(|d| d.as_str()) != Some(datacenter));
    links.push(entry.into());
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = toml::to_string_pretty(&table).expect("config encodes");
    fs::write(&path, format!("{header}{body}")).map_err(|e| io(&path, e))
}

/// Cut (`true`) or heal the link from `a` to datacenter `b`'s testnet.
pub fn wan(a: &Path, b: &Path, cut: bool) -> Result<(), TestnetError> {
    let remote = network_of(b)?;
    let dir = link_dir(a, &remote.datacenter);
    if !dir.join("proxies.json").exists() {
        return Err(bad(format!(
            "{} does not import {} (run `link` first)",
            a.display(),
            remote.datacenter
        )));
    }
    let flag = dir.join("cut");
    if cut {
        fs::write(&flag, b"cut\n").map_err(|e| io(&flag, e))
    } else {
        match fs::remove_file(&flag) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&flag, e)),
            _ => Ok(()),
        }
    }
}

/// Bytes through the link's proxies so far: `(requests, answers)`.
pub fn link_bytes(a: &Path, datacenter: &str) -> Result<(u64, u64), TestnetError> {
    let dir = link_dir(a, datacenter);
    let mut totals = (0, 0);
    for entry in fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
        let path = entry.map_err(|e| io(&dir, e))?.path();
        if path.extension().is_some_and(|e| e == "stats") {
            let text = fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
            totals.0 += v["up_bytes"].as_u64().unwrap_or(0);
            totals.1 += v["down_bytes"].as_u64().unwrap_or(0);
        }
    }
    Ok(totals)
}

fn stop_link_proxies(dir: &Path) -> Result<(), TestnetError> {
    let file = dir.join("proxies.json");
    let Ok(text) = fs::read_to_string(&file) else {
        return Ok(());
    };
    let record: ProxyRecord = serde_json::from_str(&text).unwrap_or_default();
    for (pid, _, _) in record.proxies {
        if alive(pid) {
            stop(pid, Duration::from_secs(2))?;
        }
    }
    fs::remove_file(&file).map_err(|e| io(&file, e))
}

/// Stop every link proxy a testnet started (part of `down`).
pub fn stop_proxies(dir: &Path) -> Result<(), TestnetError> {
    let links = Layout::new(dir).root().join("links");
    let Ok(entries) = fs::read_dir(&links) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        stop_link_proxies(&entry.path())?;
    }
    Ok(())
}
