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
