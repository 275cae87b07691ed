//! What the CLI prints: JSON objects for scripts, tables for people.

use std::time::Duration;

use palisade_client::{
    terminal_safe, ClientError, VerifiedNamespace, VerifiedReceipt, VerifiedService,
};
use palisade_crypto::api::StatusResponse;
use palisade_crypto::InstanceRecord;
use serde_json::{json, Map, Value};

fn instance_json(i: &InstanceRecord) -> Value {
    let labels: Map<String, Value> = i
        .labels
        .iter()
        .map(|l| (l.key.clone(), Value::String(l.value.clone())))
        .collect();
    json!({
        "instance": i.instance,
        "owner": i.owner.to_hex(),
        "endpoints": i.endpoints,
        "labels": labels,
        "health": i.health,
        "version": i.version,
        "ttl_secs": i.ttl_secs,
        "registered_at_ms": i.registered_at_ms,
        "lease_expires_at_ms": i.lease_expires_at_ms,
    })
}

/// One verified answer as a JSON object.
pub(crate) fn service_json(s: &VerifiedService, now_ms: u64, stale: bool) -> Value {
    json!({
        "namespace": s.namespace,
        "service": s.service,
        "height": s.height,
        "timestamp_ms": s.timestamp_ms,
        "age_ms": now_ms.saturating_sub(s.timestamp_ms),
        "epoch": s.epoch,
        "state_root": s.state_root.to_hex(),
        "stale": stale,
        "present": s.record.is_some(),
        "instances": s.instances().iter().map(instance_json).collect::<Vec<_>>(),
    })
}

/// A receipt as a JSON object.
pub(crate) fn receipt_json(r: &VerifiedReceipt) -> Value {
    json!({
        "tx_id": r.tx_id.to_hex(),
        "height": r.block.height,
        "certified_height": r.certified_height,
        "outcome": r.outcome,
        "outcome_code": r.outcome_code,
    })
}

/// A receipt for people.
pub(crate) fn receipt_text(what: &str, r: &VerifiedReceipt) -> String {
    format!(
        "{what} committed: transaction {} at height {} (certified at height {})",
        r.tx_id, r.block.height, r.certified_height
    )
}

fn human_age(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if d.as_secs() < 120 {
        format!("{:.1}s", d.as_secs_f64())
    } else if d.as_secs() < 7200 {
        format!("{}m", d.as_secs() / 60)
    } else {
        format!("{}h", d.as_secs() / 3600)
    }
}

/// A verified answer as a table.
pub(crate) fn service_table(s: &VerifiedService, now_ms: u64, stale: bool) -> String {
    let mut out = format!(
        "{}  height {}  epoch {}  block time {} ago{}\n",
        s.name(),
        s.height,
        s.epoch,
        human_age(now_ms.saturating_sub(s.timestamp_ms)),
        if stale {
            "  STALE (cached)"
        } else {
            "  verified"
        }
    );
    if s.record.is_none() {
        out.push_str("no instances (absence proven)\n");
        return out;
    }
    let rows: Vec<[String; 5]> = s
        .instances()
        .iter()
        .map(|i| {
            let endpoints: Vec<String> = i
                .endpoints
                .iter()
                .map(|e| format!("{}://{}:{}", e.protocol, e.host, e.port))
                .collect();
            let labels: Vec<String> = i
                .labels
                .iter()
                .map(|l| format!("{}={}", l.key, l.value))
                .collect();
            let health = serde_json::to_value(i.health)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            [
                i.instance.clone(),
                health,
                endpoints.join(","),
                labels.join(","),
                i.version.clone(),
            ]
        })
        .collect();
    let header = ["INSTANCE", "HEALTH", "ENDPOINTS", "LABELS", "VERSION"].map(str::to_string);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A namespace listing as a JSON object.
pub(crate) fn namespace_json(n: &VerifiedNamespace, now_ms: u64) -> Value {
    json!({
        "namespace": n.namespace,
        "height": n.height,
        "timestamp_ms": n.timestamp_ms,
        "age_ms": now_ms.saturating_sub(n.timestamp_ms),
        "epoch": n.epoch,
        "services": n.services,
    })
}

/// A namespace listing for people: a header line, then one service a line.
pub(crate) fn namespace_text(n: &VerifiedNamespace, now_ms: u64) -> String {
    let mut out = format!(
        "{}  height {}  epoch {}  block time {} ago  verified\n",
        n.namespace,
        n.height,
        n.epoch,
        human_age(now_ms.saturating_sub(n.timestamp_ms))
    );
    for s in &n.services {
        out.push_str(s);
        out.push('\n');
    }
    out
}

/// One node's status (or why it did not answer) as JSON.
pub(crate) fn status_json(url: &str, report: &Result<StatusResponse, ClientError>) -> Value {
    match report {
        Ok(s) => json!({ "node": url, "status": s }),
        Err(e) => json!({ "node": url, "error": e.to_string() }),
    }
}

/// Node statuses as a table.
pub(crate) fn status_table(reports: &[(String, Result<StatusResponse, ClientError>)]) -> String {
    let mut out = format!(
        "{:<28} {:>8} {:>8} {:>6} {:>6} {:>8}  LEADER\n",
        "NODE", "HEIGHT", "ROUND", "EPOCH", "PEERS", "MEMPOOL"
    );
    for (url, report) in reports {
        match report {
            Ok(s) => out.push_str(&format!(
                "{:<28} {:>8} {:>8} {:>6} {:>6} {:>8}  {}\n",
                url,
                s.height,
                s.round,
                s.epoch,
                s.peers,
                s.mempool,
                terminal_safe(&s.leader.chars().take(16).collect::<String>())
            )),
            Err(e) => out.push_str(&format!(
                "{url:<28} unreachable: {}\n",
                terminal_safe(&e.to_string())
            )),
        }
    }
    out
}
