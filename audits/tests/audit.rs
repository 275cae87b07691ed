//! `palisade-audit` against a real 4-node testnet (real `palisade-node`
//! processes on 127.0.0.1): the honest history passes with 0 mismatches, and
//! a tampering HTTP proxy in front of node 0 (altered block, altered
//! certificate, missing block, re-ordered history, forked history, lying
//! receipts, two nodes disagreeing) is caught, each named in the output.
#![allow(clippy::print_stderr)] // the audit output is the useful failure output

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use palisade_consensus::hotstuff::CommittedBlock;
use palisade_crypto::Hex;
use palisade_testnet::cluster::{generate, wait_for_height, Testnet, UpOptions};
use palisade_testnet::faults::node_binary_for_tests;
use serde_json::Value;

/// How the proxy lies about one height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    AlterBlock,
    AlterCertificate,
    DropBlock,
    Reorder,
    Fork,
    LieReceipts,
}

/// The height the proxy lies about.
const TARGET: u64 = 3;

struct Proxy {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn proxy(upstream: String, tamper: Tamper) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        // Bounded: a test audit makes a few hundred requests at most.
        for stream in listener.incoming().take(10_000) {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            serve(stream, &agent, &upstream, tamper);
        }
    });
    Proxy {
        url,
        stop,
        thread: Some(thread),
    }
}

fn serve(mut stream: TcpStream, agent: &ureq::Agent, upstream: &str, tamper: Tamper) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let (status, body) = answer(agent, upstream, &path, tamper);
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, String) {
    match agent.get(url).call() {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let mut body = String::new();
            let _ = r.body_mut().as_reader().read_to_string(&mut body);
            (status, body)
        }
        Err(_) => (502, String::new()),
    }
}

fn answer(agent: &ureq::Agent, upstream: &str, path: &str, tamper: Tamper) -> (u16, String) {
    let target = format!("/v1/audit/blocks/{TARGET}");
    let next = format!("/v1/audit/blocks/{}", TARGET + 1);
    let fetch = |p: &str| get(agent, &format!("{upstream}{p}"));
    if tamper == Tamper::LieReceipts && path.starts_with("/v1/audit/blocks/") {
        // Every height with transactions: its first one "was rejected".
        let (status, body) = fetch(path);
        let Ok(mut v) = serde_json::from_str::<Value>(&body) else {
            return (status, body);
        };
        if v["outcomes"].as_array().is_some_and(|o| !o.is_empty()) {
            v["outcomes"][0] = Value::String("rejected: sequence number already used".into());
        }
        return (status, v.to_string());
    }
    if path != target && !(tamper == Tamper::Reorder && path == next) {
        return fetch(path);
    }
    if tamper == Tamper::DropBlock {
        return (404, r#"{"code":"unknown_block","message":"gone"}"#.into());
    }
    if tamper == Tamper::Reorder {
        // Heights TARGET and TARGET+1 swapped.
        let other = if path == target { &next } else { &target };
        return fetch(other);
    }
    let (status, body) = fetch(path);
    let mut v: Value = serde_json::from_str(&body).expect("audit JSON");
    let hex: Hex<CommittedBlock> =
        serde_json::from_value(v["committed"].clone()).expect("committed hex");
    let mut c = hex.decode().expect("committed block decodes");
    match tamper {
        t @ (Tamper::AlterBlock | Tamper::Fork) => {
            c.block.timestamp_ms += 1;
            if t == Tamper::Fork {
                // A consistent alternative block: its info names it.
                c.info.block_id = c.block.id();
                c.info.timestamp_ms = c.block.timestamp_ms;
            }
        }
        Tamper::AlterCertificate => c.commit_qc.signatures[0].1 .0[7] ^= 0x20,
        Tamper::LieReceipts | Tamper::DropBlock | Tamper::Reorder => unreachable!(),
    }
    v["committed"] = serde_json::to_value(Hex::new(&c)).expect("hex");
    (status, v.to_string())
}

fn audit(net: &Testnet, nodes: &[&str]) -> (i32, String) {
    audit_with(net, nodes, &[])
}

fn audit_with(net: &Testnet, nodes: &[&str], extra: &[&str]) -> (i32, String) {
    let layout = net.layout();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade-audit"));
    cmd.arg("--network")
        .arg(layout.network_file())
        .arg("--evidence")
        .arg(layout.network_file().with_file_name("evidence.jsonl"));
    for n in nodes {
        cmd.arg("--node").arg(n);
    }
    cmd.args(extra);
    let out = cmd.output().expect("run palisade-audit");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| l.starts_with("audit: "))
        .unwrap_or("")
}

struct Down(Testnet);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = self.0.down();
    }
}

fn testnet(dir: &Path) -> Down {
    let exe = std::env::current_exe().expect("test binary path");
    let node_binary = node_binary_for_tests(&exe).expect("palisade-node binary");
    let mut opts = UpOptions::new(dir, &node_binary);
    opts.round_timeout_ms = 500;
    let mut net = generate(&opts).expect("generate testnet");
    net.start_all().expect("start nodes");
    let net = Down(net);
    wait_for_height(&net.0, 1, 3, Duration::from_secs(60), |_| {}).expect("the testnet starts");
    // Transactions in the history: the demo enrolls and registers.
    palisade_testnet::demo::run(net.0.layout()).expect("demo registration");
    wait_for_height(&net.0, TARGET + 6, 4, Duration::from_secs(60), |_| {})
        .expect("the testnet commits");
    net
}

#[test]
fn audit_passes_an_honest_history_and_names_each_tampering() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = testnet(dir.path());
    let node0 = net.0.record().nodes[0].api_url.clone();
    let node1 = net.0.record().nodes[1].api_url.clone();

    let (code, text) = audit(&net.0, &[&node0, &node1]);
    eprintln!("honest:\n{text}");
    let last = last_line(&text);
    assert!(
        code == 0 && last.ends_with(" 0 mismatches"),
        "honest history: exit {code}, {last:?}\n{text}"
    );
    let txs = audited_txs(last);
    assert!(txs >= 2, "the demo's transactions were audited: {last}");

    // `--progress` off a terminal: progress lines on stderr, stdout ends
    // with the audit line all the same.
    let layout = net.0.layout();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-audit"))
        .arg("--network")
        .arg(layout.network_file())
        .args(["--node", &node0, "--progress"])
        .output()
        .expect("run palisade-audit --progress");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("audit [") && l.contains(" heights, ")),
        "no progress line on stderr:\n{stderr}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("audit: ") && l.ends_with(" 0 mismatches")),
        "stdout does not end with the audit line:\n{stdout}"
    );

    let cases: [(Tamper, &[&str]); 6] = [
        (Tamper::AlterBlock, &["altered block"]),
        (Tamper::AlterCertificate, &["bad certificate"]),
        (Tamper::DropBlock, &["missing block"]),
        (Tamper::Reorder, &["altered block"]),
        // Consistent in itself; the certificate of this height or the
        // parent link of the next one gives it away.
        (
            Tamper::Fork,
            &["certificate for another block", "unlinked chain"],
        ),
        (Tamper::LieReceipts, &["receipt mismatch"]),
    ];
    for (tamper, classes) in cases {
        let p = proxy(node0.clone(), tamper);
        let (code, text) = audit(&net.0, &[&p.url]);
        eprintln!("{tamper:?}:\n{text}");
        assert_ne!(code, 0, "{tamper:?} passed the audit:\n{text}");
        assert!(
            text.lines()
                .any(|l| classes.iter().any(|c| l.starts_with(&format!("{c}: ")))),
            "{tamper:?} not reported as {classes:?}:\n{text}"
        );
        assert!(
            !last_line(&text).ends_with(" 0 mismatches"),
            "{tamper:?}: {text}"
        );
    }

    // A follower: keeps auditing as heights commit, exits 0 at its bound ...
    let (code, text) = audit_with(&net.0, &[&node0], &["--follow", "--follow-secs", "3"]);
    eprintln!("follow honest:\n{text}");
    assert!(
        code == 0 && last_line(&text).ends_with(" 0 mismatches"),
        "follow, honest: exit {code}\n{text}"
    );
    // ... and stops at the first mismatch (bound far away) with its evidence.
    let p = proxy(node0.clone(), Tamper::AlterBlock);
    let (code, text) = audit_with(&net.0, &[&p.url], &["--follow", "--follow-secs", "600"]);
    eprintln!("follow tampered:\n{text}");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("follow: stopped at the first mismatch")),
        "{text}"
    );
    drop(p);

    // Two nodes serving different blocks at one height.
    let p = proxy(node0.clone(), Tamper::Fork);
    let (code, text) = audit(&net.0, &[&node1, &p.url]);
    eprintln!("two nodes:\n{text}");
    assert_ne!(code, 0);
    assert!(
        text.lines().any(|l| l.starts_with("conflicting blocks: ")),
        "{text}"
    );
}

/// Wait (bounded) until `api` answers 410 (pruned) for `height`.
fn wait_pruned(api: &str, height: u64) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    for _ in 0..600 {
        if get(&agent, &format!("{api}/v1/audit/blocks/{height}")).0 == 410 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{api} did not prune height {height} within 120 s");
}

/// A pruning testnet (`retain_heights`): the audit from genesis cannot get
/// past the pruned heights, the audit from the certified snapshot at the
/// head passes with 0 mismatches and re-executes transactions committed
/// after the snapshot against the restored state, and follows a real
/// epoch change's certificate to a later snapshot; a node that alters a
/// snapshot page (`--byzantine alter-change`) or forges its head
/// certificate (`forge-checkpoint`) is caught and named.
#[test]
fn audit_from_a_snapshot_of_a_pruning_testnet() {
    use std::process::Stdio;
    use std::sync::mpsc;

    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary path");
    let node_binary = node_binary_for_tests(&exe).expect("palisade-node binary");
    let mut opts = UpOptions::new(dir.path(), &node_binary);
    opts.round_timeout_ms = 500;
    opts.retain_heights = 20;
    // Export answers only: both still vote and commit honestly.
    opts.byzantine = vec![(2, "forge-checkpoint".into()), (3, "alter-change".into())];
    let mut net = generate(&opts).expect("generate testnet");
    net.start_all().expect("start nodes");
    let mut net = Down(net);
    wait_for_height(&net.0, 1, 3, Duration::from_secs(60), |_| {}).expect("the testnet starts");
    let nodes: Vec<String> = net
        .0
        .record()
        .nodes
        .iter()
        .map(|n| n.api_url.clone())
        .collect();
    wait_pruned(&nodes[0], 1);

    // From genesis: the pruned heights are missing.
    let (code, text) = audit(&net.0, &[&nodes[0]]);
    eprintln!("from genesis:\n{text}");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("missing block: ")),
        "{text}"
    );

    // From the snapshot, following: transactions committed after the
    // snapshot are re-executed against the restored state.
    let layout = net.0.layout();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade-audit"))
        .arg("--network")
        .arg(layout.network_file())
        .args(["--node", &nodes[0], "--from-snapshot", "--follow"])
        .args(["--follow-secs", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run palisade-audit --from-snapshot");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("snapshot: ") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let started = rx.recv_timeout(Duration::from_secs(60));
    if started.is_ok() {
        palisade_testnet::demo::run(layout).expect("demo registration after the snapshot");
    }
    let out = child.wait_with_output().expect("the follower ends");
    let stderr = reader.join().expect("stderr reader");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("from the snapshot:\n{stdout}{stderr}");
    assert!(started.is_ok(), "no snapshot line:\n{stdout}{stderr}");
    let last = last_line(&stdout);
    assert!(
        out.status.success()
            && last.contains(" heights after the snapshot at ")
            && last.ends_with(" 0 mismatches"),
        "honest pruned history: {:?} {last:?}",
        out.status
    );
    let txs = audited_txs(last);
    assert!(
        txs >= 2,
        "the demo's transactions after the snapshot: {last}"
    );

    // An epoch change below the snapshot (a fifth validator joins): the
    // audit follows its certificate from network.json's genesis set.
    net.0.add_node().expect("a fifth validator joins (epoch 1)");
    let (code, text) = audit_with(&net.0, &[&nodes[0]], &["--from-snapshot"]);
    eprintln!("after an epoch change:\n{text}");
    assert!(
        code == 0 && last_line(&text).ends_with(" 0 mismatches"),
        "from a snapshot after an epoch change: exit {code}\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("snapshot: ") && l.contains(" 1 epoch changes followed")),
        "{text}"
    );

    // A tampered snapshot page, a forged head certificate.
    for (node, class, detail) in [
        (&nodes[3], "bad snapshot: ", "page 1: does not prove"),
        (&nodes[2], "bad certificate: ", ""),
    ] {
        let (code, text) = audit_with(&net.0, &[node], &["--from-snapshot"]);
        eprintln!("{node}:\n{text}");
        assert_eq!(code, 1, "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with(class) && l.contains(detail)),
            "not reported as {class}{detail}:\n{text}"
        );
        assert!(last_line(&text).ends_with(" 1 mismatches"), "{text}");
    }
}

/// The transaction count of an audit's summary line ("…, N transactions, …"; 0 when absent).
fn audited_txs(summary: &str) -> u64 {
    summary
        .split(", ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
