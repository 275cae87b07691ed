//! A 4-validator in-process cluster on 127.0.0.1 under a simple load loop:
//! commit latency (sequential `wait: true` registrations), registration
//! throughput (a burst from several signers), and the process CPU while idle.
//!
//! `cargo run -p palisade-node --example local_bench [-- BURST]`
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use palisade_consensus::state::{Authority, Genesis};
use palisade_crypto::api::{StatusResponse, SubmitRequest, SubmitResponse};
use palisade_crypto::{
    Digest, Endpoint, Enrollment, Hex, Registration, Role, SecretKey, SignedTransaction,
    Transaction, TxBody, Validator,
};
use palisade_node::{NodeConfig, PeerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    out[split..].to_vec()
}

fn register(genesis: &Digest, key: &SecretKey, seq: u64, instance: &str) -> SignedTransaction {
    Transaction {
        chain_id: "bench".into(),
        genesis_hash: *genesis,
        signer: key.public(),
        sequence: seq,
        body: TxBody::Register(Registration {
            namespace: "prod".into(),
            service: format!("svc-{}", key.public().short()),
            instance: instance.into(),
            endpoints: vec![Endpoint {
                protocol: "http".into(),
                host: "10.0.0.1".into(),
                port: 8080,
                weight: 1,
            }],
            labels: vec![],
            version: "1".into(),
            ttl_secs: 600,
            probe: None,
        }),
    }
    .sign(key)
}

async fn submit(addr: std::net::SocketAddr, tx: &SignedTransaction, wait: bool) -> SubmitResponse {
    let body = serde_json::to_vec(&SubmitRequest {
        tx: Hex::new(tx),
        wait,
    })
    .expect("json");
    let answer = http(addr, "POST", "/v1/tx", &body).await;
    serde_json::from_slice(&answer)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&answer)))
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let burst: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_seed([i; 32])).collect();
    let signers: Vec<SecretKey> = (0..8u8)
        .map(|i| SecretKey::from_seed([100 + i; 32]))
        .collect();
    let mut genesis = Genesis::new(
        "bench",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64,
        keys.iter()
            .map(|k| Validator {
                key: k.public(),
                power: 1,
            })
            .collect(),
        Authority {
            members: vec![keys[0].public()],
            threshold: 1,
        },
    );
    for s in &signers {
        genesis.enrollments.push(Enrollment {
            identity: s.public(),
            namespaces: vec!["prod".into()],
            role: Role::Service,
        });
    }
    let genesis_hash = genesis.hash();
    let genesis_file = dir.path().join("genesis.json");
    std::fs::write(
        &genesis_file,
        serde_json::to_string(&genesis).expect("json"),
    )
    .expect("write");
    let ports: Vec<u16> = keys
        .iter()
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .expect("port")
                .local_addr()
                .expect("addr")
                .port()
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let key_file = dir.path().join(format!("node{i}.key"));
        palisade_keys::write_key_file(&key_file, key).expect("key file");
        let mut c = NodeConfig::new(
            dir.path().join(format!("node{i}")),
            key_file,
            genesis_file.clone(),
        );
        c.listen_p2p = format!("/ip4/127.0.0.1/tcp/{}", ports[i]);
        c.listen_api = "127.0.0.1:0".into();
        c.mempool.max_per_signer = 1024;
        c.peers = keys
            .iter()
            .zip(&ports)
            .map(|(k, p)| PeerConfig {
                public_key: k.public(),
                p2p_addr: format!("/ip4/127.0.0.1/tcp/{p}"),
            })
            .collect();
        nodes.push(palisade_node::start(c).await.expect("node starts"));
    }
    let api: Vec<_> = nodes.iter().map(|n| n.api_addr()).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Idle CPU: 20 s with no load.
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle = (cpu_seconds() - cpu0) / t0.elapsed().as_secs_f64();
    println!(
        "idle CPU, 4 nodes in one process: {:.1}% of one core ({:.1}% per node)",
        idle * 100.0,
        idle * 25.0
    );

    // Commit latency: sequential registrations with wait = true.
    let mut latencies = Vec::new();
    for i in 0..30u64 {
        let tx = register(&genesis_hash, &signers[0], i, &format!("lat-{i}"));
        let t = Instant::now();
        let r = submit(api[(i % 4) as usize], &tx, true).await;
        assert!(
            r.receipt.is_some(),
            "committed within the wait bound: {r:?}"
        );
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "commit latency (submit -> certified receipt), 30 sequential: p50 {:?}, p90 {:?}, max {:?}",
        latencies[15], latencies[27], latencies[29]
    );

    // Throughput: a burst from 7 signers, round-robin over the nodes.
    let per = burst / 7;
    let mut txs = Vec::new();
    for seq in 0..per as u64 {
        for s in &signers[1..] {
            txs.push(register(&genesis_hash, s, seq, &format!("b-{seq}")));
        }
    }
    let t = Instant::now();
    let mut sends = Vec::new();
    for (i, chunk) in txs.chunks(txs.len().div_ceil(16)).enumerate() {
        let chunk = chunk.to_vec();
        let addr = api[i % 4];
        sends.push(tokio::spawn(async move {
            for tx in chunk {
                submit(addr, &tx, false).await;
            }
        }));
    }
    for s in sends {
        s.await.expect("sender");
    }
    let submitted = t.elapsed();
    // Each signer's transactions commit in sequence order: its last one closes the burst.
    for last in txs[txs.len() - 7..].iter().map(|t| t.id()) {
        loop {
            let r: SubmitResponse =
                serde_json::from_slice(&http(api[0], "GET", &format!("/v1/tx/{last}"), b"").await)
                    .expect("status");
            if r.receipt.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let all = t.elapsed();
    let status: StatusResponse =
        serde_json::from_slice(&http(api[0], "GET", "/v1/status", b"").await).expect("status");
    println!(
        "burst of {} registrations: admitted in {:?}, all committed in {:?} => {:.0} registrations/s (height {})",
        txs.len(),
        submitted,
        all,
        txs.len() as f64 / all.as_secs_f64(),
        status.height
    );
    for n in nodes {
        n.stop().await;
    }
}
