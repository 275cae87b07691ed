//! `/metrics` is what Prometheus' own parser accepts: `promtool check
//! metrics` (Debian package `prometheus`, installed by scripts/deps.sh) runs
//! on a live node's answer, including the libp2p byte counters and the
//! labelled families.

use std::io::Write;
use std::process::{Command, Stdio};

use super::cluster::Cluster;
use super::http::request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_of_a_running_node() {
    let c = Cluster::start(1).await;
    c.wait_height(0, 2).await;
    let (status, body) = request(c.api(0), "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("metrics are UTF-8");
    assert!(text.contains("palisade_commits_total"), "{text}");

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/deps.sh installs Debian's `prometheus`)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("promtool reads its input");
    let out = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 0 on lint warnings too; any line it prints is a finding
    // (e.g. "no help text", "counter metrics should have _total suffix").
    assert!(out.status.success(), "promtool failed:\n{report}\n{text}");
    assert!(
        report.trim().is_empty(),
        "promtool findings:\n{report}\n{text}"
    );
    c.shutdown().await;
}

/// Metric names a PromQL expression reads (`palisade_...` identifiers).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("palisade_") {
        let start = i + at;
        let preceded_by_ident =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| start + e);
        if !preceded_by_ident {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_query_names_a_metric_the_node_exports() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/palisade-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard is in the repo");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    // The parts of Grafana's dashboard model an import needs.
    assert!(dash["title"].is_string() && dash["uid"].is_string());
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let panels = dash["panels"].as_array().expect("panels");
    assert!(
        panels.len() >= 8,
        "panels for height, latency, rounds, mempool, refusals..."
    );

    let c = Cluster::start(1).await;
    c.wait_height(0, 2).await;
    let (_, body) = request(c.api(0), "GET", "/metrics", None).await;
    let exposition = String::from_utf8(body).unwrap();
    let families: Vec<(String, String)> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    let exported = |name: &str| {
        families.iter().any(|(family, kind)| {
            name == family
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(family.as_str())))
        })
    };
    let mut queries = 0;
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        let targets = panel["targets"]
            .as_array()
            .expect("every panel has targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("a PromQL expr");
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "{title}: {expr} reads no palisade metric"
            );
            for name in names {
                assert!(
                    exported(&name),
                    "{title}: {name} is not exported by the node:\n{exposition}"
                );
                queries += 1;
            }
        }
    }
    assert!(queries >= panels.len());
    // The checker is not vacuous: a misspelt name is caught.
    assert!(!exported("palisade_commit_total"));
    assert_eq!(
        metric_names("rate(palisade_a_total[1m]) / x_palisade_b"),
        ["palisade_a_total"]
    );
    c.shutdown().await;
}
