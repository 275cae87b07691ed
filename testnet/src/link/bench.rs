//! `palisade-testnet dc-bench --dir A --to B`: cross-datacenter figures on two
//! linked running testnets (one clock: this process).
//!
//! - lag: from B's verified commit ack (the SDK's `execute` returns a
//!   receipt verified against B's validators) to the change visible through
//!   A's nodes in a remote lookup verified against B's validators;
//! - bytes over the link (the proxies' counters, both directions) per
//!   registration, per heartbeat, and per idle second;
//! - partition detection: from `wan cut` to A's node 0 reporting the link
//!   `partitioned`, then heal.

use std::path::Path;
use std::time::{Duration, Instant};

use palisade_client::{
    load_network_file, parse_endpoint, registration, Client, ClientConfig, InstanceRef,
    RemoteDatacenter, Signer,
};
use palisade_crypto::TxBody;

use crate::cluster::Layout;
use crate::link::{link_bytes, network_of, wan};

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct DcFigures {
    /// Lag per registration, ms.
    pub registration_lag_ms: Vec<f64>,
    /// Lag per heartbeat, ms.
    pub heartbeat_lag_ms: Vec<f64>,
    /// Link bytes per registration (both directions, idle rate subtracted).
    pub bytes_per_registration: f64,
    /// Link bytes per heartbeat (both directions, idle rate subtracted).
    pub bytes_per_heartbeat: f64,
    /// Link bytes per idle second.
    pub idle_bytes_per_sec: f64,
    /// Partition detection times, ms.
    pub partition_detect_ms: Vec<f64>,
    /// After a cut of the given seconds with registrations going on in B:
    /// (registrations made during the cut, ms from heal to the last of them
    /// visible through A, link bytes from the heal to then per registration
    /// made, idle rate subtracted: a changed record's cost in one net delta).
    pub catch_up: Option<(usize, f64, f64)>,
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i.min(s.len() - 1)]
}

impl DcFigures {
    /// One markdown table row: p50/p99 lags, bytes, detection.
    pub fn row(&self, delay_ms: u64) -> String {
        format!(
            "| {delay_ms} | {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            self.registration_lag_ms.len(),
            percentile(&self.registration_lag_ms, 50.0),
            percentile(&self.registration_lag_ms, 99.0),
            percentile(&self.heartbeat_lag_ms, 50.0),
            percentile(&self.heartbeat_lag_ms, 99.0),
            self.bytes_per_registration,
            self.bytes_per_heartbeat,
            self.idle_bytes_per_sec,
            self.partition_detect_ms
                .iter()
                .map(|d| format!("{:.1}", d / 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn total_bytes(a: &Path, dc: &str) -> Result<u64, String> {
    let (up, down) = link_bytes(a, dc).map_err(|e| e.to_string())?;
    Ok(up + down)
}

/// The state of the first link a node imports (`live`, `partitioned`, ...),
/// as its `/v1/links` says; `unreachable` when it does not answer.
pub fn link_state(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let Ok(mut r) = agent.get(&format!("{url}/v1/links")).call() else {
        return "unreachable".into();
    };
    let v: serde_json::Value = r.body_mut().read_json().unwrap_or_default();
    v["links"][0]["state"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// Wait (bounded) until `check` holds; the time it took.
fn until(bound: Duration, pause: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(pause);
    }
    None
}

/// Run the figures: `samples` registrations and heartbeats, `idle_secs` of
/// idle link, `cuts` partition trials, and (when `catch_up_secs > 0`) a cut
/// of that long under registrations, then the catch-up after the heal.
pub fn run(
    a: &Path,
    b: &Path,
    samples: usize,
    idle_secs: u64,
    cuts: usize,
    catch_up_secs: u64,
) -> Result<DcFigures, String> {
    let e = |x: palisade_client::ClientError| x.to_string();
    let b_net = load_network_file(&Layout::new(b).network_file()).map_err(e)?;
    let a_net = load_network_file(&Layout::new(a).network_file()).map_err(e)?;
    let dc = network_of(b).map_err(|x| x.to_string())?.datacenter;
    let remote = RemoteDatacenter::new(&b_net).map_err(e)?;
    let cfg = ClientConfig {
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    };
    let b_client = Client::new(b_net, cfg.clone()).map_err(e)?;
    let a_client = Client::new(a_net.clone(), cfg).map_err(e)?;
    let mut signer = Signer::load(&Layout::new(b).demo_key()).map_err(e)?;
    let mut out = DcFigures::default();
    // A fresh service per run: earlier runs' instances neither count as
    // visible nor grow the record each change ships.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() % 1_000_000);
    let service = format!("bench-{run_id}");
    let visible = |f: &dyn Fn(&palisade_client::RemoteAnswer) -> bool| {
        until(Duration::from_secs(20), Duration::from_millis(2), || {
            a_client
                .lookup_remote(&remote, "demo", &service)
                .is_ok_and(|r| f(&r))
        })
    };

    // Idle first (the link carries only heartbeat heads).
    std::thread::sleep(Duration::from_secs(2));
    let b0 = total_bytes(a, &dc)?;
    std::thread::sleep(Duration::from_secs(idle_secs));
    out.idle_bytes_per_sec = (total_bytes(a, &dc)? - b0) as f64 / idle_secs as f64;

    let start_bytes = total_bytes(a, &dc)?;
    let started = Instant::now();
    let mut first = None;
    for i in 0..samples {
        let name = format!("inst-{i}");
        first.get_or_insert_with(|| name.clone());
        let reg = registration(
            "demo",
            &service,
            &name,
            vec![parse_endpoint(&format!("10.0.0.{}:80", i % 250 + 1)).map_err(e)?],
            vec![],
            600,
        )
        .map_err(e)?;
        b_client
            .execute(&mut signer, TxBody::Register(reg))
            .map_err(e)?;
        let acked = Instant::now();
        visible(&|r| r.service.instances().iter().any(|x| x.instance == name))
            .ok_or(format!("{name} never became visible through A"))?;
        out.registration_lag_ms
            .push(acked.elapsed().as_secs_f64() * 1000.0);
    }
    let idle_share = out.idle_bytes_per_sec * started.elapsed().as_secs_f64();
    out.bytes_per_registration =
        ((total_bytes(a, &dc)? - start_bytes) as f64 - idle_share).max(0.0) / samples as f64;

    let target = InstanceRef {
        namespace: "demo".into(),
        service: service.clone(),
        instance: first.unwrap_or_default(),
    };
    let start_bytes = total_bytes(a, &dc)?;
    let started = Instant::now();
    for _ in 0..samples {
        let receipt = b_client.heartbeat(&mut signer, &target).map_err(e)?;
        let acked = Instant::now();
        let height = receipt.block.height;
        visible(&|r| r.service.height >= height).ok_or("heartbeat never visible through A")?;
        out.heartbeat_lag_ms
            .push(acked.elapsed().as_secs_f64() * 1000.0);
    }
    let idle_share = out.idle_bytes_per_sec * started.elapsed().as_secs_f64();
    out.bytes_per_heartbeat =
        ((total_bytes(a, &dc)? - start_bytes) as f64 - idle_share).max(0.0) / samples as f64;

    let a_node = a_net.nodes[0].api_url.clone();
    for _ in 0..cuts {
        until(Duration::from_secs(20), Duration::from_millis(100), || {
            link_state(&a_node) == "live"
        })
        .ok_or("link not live before a cut")?;
        wan(a, b, true).map_err(|x| x.to_string())?;
        let t = until(Duration::from_secs(30), Duration::from_millis(50), || {
            link_state(&a_node) == "partitioned"
        })
        .ok_or("partition never declared")?;
        out.partition_detect_ms.push(t.as_secs_f64() * 1000.0);
        wan(a, b, false).map_err(|x| x.to_string())?;
    }
    if catch_up_secs > 0 {
        until(Duration::from_secs(20), Duration::from_millis(100), || {
            link_state(&a_node) == "live"
        })
        .ok_or("link not live before the long cut")?;
        wan(a, b, true).map_err(|x| x.to_string())?;
        let cut_at = Instant::now();
        let mut made = 0usize;
        let mut last = (String::new(), 0u16);
        // A service holds at most 256 instances: cycle 200 names, each
        // re-registration moving its port, so the last one is recognisable.
        while cut_at.elapsed() < Duration::from_secs(catch_up_secs) && made < 50_000 {
            let name = format!("cut-{}", made % 200);
            let port = 1000 + made as u16;
            let endpoint = parse_endpoint(&format!("10.1.0.1:{port}")).map_err(e)?;
            let reg =
                registration("demo", &service, &name, vec![endpoint], vec![], 600).map_err(e)?;
            b_client
                .execute(&mut signer, TxBody::Register(reg))
                .map_err(e)?;
            last = (name, port);
            made += 1;
        }
        let bytes_at_heal = total_bytes(a, &dc)?;
        wan(a, b, false).map_err(|x| x.to_string())?;
        let healed = Instant::now();
        visible(&|r| {
            r.service.instances().iter().any(|x| {
                x.instance == last.0 && x.endpoints.first().is_some_and(|p| p.port == last.1)
            })
        })
        .ok_or("the cut's registrations never became visible through A")?;
        let took = healed.elapsed();
        // The proxies write their counters every 200 ms: read them after
        // the next refresh, and subtract the idle rate for the whole span.
        std::thread::sleep(Duration::from_millis(600));
        let bytes = (total_bytes(a, &dc)? - bytes_at_heal) as f64
            - out.idle_bytes_per_sec * healed.elapsed().as_secs_f64();
        out.catch_up = Some((
            made,
            took.as_secs_f64() * 1000.0,
            bytes.max(0.0) / made.max(1) as f64,
        ));
    }
    Ok(out)
}
