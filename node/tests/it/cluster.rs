//! An in-process 4-node cluster over real libp2p on 127.0.0.1: commits,
//! verified receipts and lookups, watch, a node stopped and restarted from
//! its RocksDB directory catching up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_consensus::state::Genesis;
use palisade_crypto::api::{
    LookupResponse, StatusResponse, SubmitRequest, SubmitResponse, TxStatus,
};
use palisade_crypto::{Hex, SecretKey, SignedTransaction, ValidatorSet};
use palisade_node::{NodeConfig, NodeHandle, PeerConfig};

use super::http::{get_json, request};
use super::state_store::{genesis, register};

pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) keys: Vec<SecretKey>,
    pub(crate) service: SecretKey,
    pub(crate) genesis: Genesis,
    pub(crate) nodes: Vec<Option<NodeHandle>>,
    pub(crate) configs: Vec<NodeConfig>,
}

/// A port to listen on later, below Linux's ephemeral range (32768+): a
/// port the OS handed out as free (`bind :0`) can be taken by any outgoing
/// connection before the node binds it, which failed a CI run here. Ports
/// under 32768 are never handed to outgoing connections; the start is drawn
/// per process so concurrent test processes rarely try the same one.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919);
    for _ in 0..2_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(13)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below 32000 on 127.0.0.1")
}

fn write_genesis(dir: &Path, g: &Genesis) -> PathBuf {
    let path = dir.join("genesis.json");
    std::fs::write(&path, serde_json::to_string_pretty(g).unwrap()).unwrap();
    path
}

impl Cluster {
    pub(crate) async fn start(n: usize) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// Start `n` validators, letting `tweak` adjust each config.
    pub(crate) async fn start_with(n: usize, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        Self::start_custom(n, |_| {}, tweak).await
    }

    /// Start `n` validators, letting `tweak_genesis` adjust the genesis and
    /// `tweak` each config.
    pub(crate) async fn start_custom(
        n: usize,
        tweak_genesis: impl Fn(&mut Genesis),
        tweak: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<SecretKey> = (1..=n as u8)
            .map(|i| SecretKey::from_seed([i; 32]))
            .collect();
        let service = SecretKey::from_seed([9; 32]);
        let mut g = genesis(&keys, &service);
        g.genesis_time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        tweak_genesis(&mut g);
        let genesis_file = write_genesis(dir.path(), &g);
        let ports: Vec<u16> = keys.iter().map(|_| free_port()).collect();
        let mut configs = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let key_file = dir.path().join(format!("node{i}.key"));
            palisade_keys::write_key_file(&key_file, key).unwrap();
            let mut c = NodeConfig::new(
                dir.path().join(format!("node{i}")),
                key_file,
                genesis_file.clone(),
            );
            c.listen_p2p = format!("/ip4/127.0.0.1/tcp/{}", ports[i]);
            c.listen_api = "127.0.0.1:0".into();
            c.fault_injection = true;
            c.consensus.round_timeout_ms = 600;
            // A small in-memory window, so a restarted node's catch-up is
            // served from the peers' RocksDB committed logs.
            c.consensus.retain_committed = 8;
            c.probes.enabled = false;
            c.peers = keys
                .iter()
                .zip(&ports)
                .map(|(k, p)| PeerConfig {
                    public_key: k.public(),
                    p2p_addr: format!("/ip4/127.0.0.1/tcp/{p}"),
                })
                .collect();
            tweak(&mut c);
            configs.push(c);
        }
        let mut nodes = Vec::new();
        for c in &configs {
            nodes.push(Some(palisade_node::start(c.clone()).await.unwrap()));
        }
        Cluster {
            dir,
            keys,
            service,
            genesis: g,
            nodes,
            configs,
        }
    }

    pub(crate) fn api(&self, i: usize) -> std::net::SocketAddr {
        self.nodes[i].as_ref().expect("node running").api_addr()
    }

    pub(crate) fn validators(&self) -> ValidatorSet {
        self.genesis.validators.clone()
    }

    pub(crate) async fn status(&self, i: usize) -> StatusResponse {
        get_json(self.api(i), "/v1/status", 200).await
    }

    /// Wait (bounded) until node `i` has committed `height`.
    pub(crate) async fn wait_height(&self, i: usize, height: u64) -> u64 {
        for _ in 0..600 {
            let s = self.status(i).await;
            if s.height >= height {
                return s.height;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {i} did not reach height {height} within 60 s");
    }

    pub(crate) async fn submit(
        &self,
        i: usize,
        tx: &SignedTransaction,
        wait: bool,
    ) -> (u16, SubmitResponse) {
        let body = serde_json::to_vec(&SubmitRequest {
            tx: Hex::new(tx),
            wait,
        })
        .unwrap();
        let (status, body) = request(self.api(i), "POST", "/v1/tx", Some(&body)).await;
        assert!(
            status < 300,
            "submit: {status} {}",
            String::from_utf8_lossy(&body)
        );
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// Poll (bounded) until node `i` has a receipt for `id`.
    pub(crate) async fn wait_receipt(
        &self,
        i: usize,
        id: &palisade_crypto::Digest,
    ) -> SubmitResponse {
        let path = format!("/v1/tx/{id}");
        for _ in 0..900 {
            let r: SubmitResponse = get_json(self.api(i), &path, 200).await;
            if r.receipt.is_some() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no receipt for {id} on node {i} within 90 s");
    }

    pub(crate) async fn stop(&mut self, i: usize) {
        self.nodes[i].take().expect("running").stop().await;
    }

    pub(crate) async fn restart(&mut self, i: usize) {
        let mut c = self.configs[i].clone();
        c.listen_api = "127.0.0.1:0".into();
        self.nodes[i] = Some(palisade_node::start(c).await.unwrap());
    }

    pub(crate) async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop(i).await;
            }
        }
        drop(self.dir);
    }
}

/// splitmix64 of `(epoch 0, round)`, the core's leader draw with equal weights.
fn mix(round: u64) -> u64 {
    let g = 0x9E37_79B9_7F4A_7C15u64;
    let mut z = round.wrapping_add(g);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The validator index leading fewest rounds among the next 40.
fn least_leading(c: &Cluster, round: u64) -> usize {
    let n = c.keys.len() as u64;
    let mut counts = vec![0; c.keys.len()];
    for r in round..round + 40 {
        counts[((mix(r) % (100 * n)) / 100) as usize] += 1;
    }
    (0..c.keys.len()).min_by_key(|i| counts[*i]).unwrap()
}

/// Verify a receipt the way a client does: certificate, chain of infos, inclusion.
fn verify_receipt(c: &Cluster, resp: &SubmitResponse) {
    let r = resp.receipt.as_ref().expect("receipt");
    let cert = r.certificate.decode().unwrap();
    let verified = cert.verify(&c.validators(), &c.genesis.chain_id).unwrap();
    let block = r.block.decode().unwrap();
    let mut expected_parent = block.hash();
    for d in &r.descendants {
        let info = d.decode().unwrap();
        assert_eq!(
            info.parent_info, expected_parent,
            "descendants chain by parent_info"
        );
        expected_parent = info.hash();
    }
    let last = r
        .descendants
        .last()
        .map(|d| d.decode().unwrap())
        .unwrap_or(block.clone());
    assert_eq!(
        &last,
        verified.block(),
        "certificate names the end of the chain"
    );
    r.inclusion
        .decode()
        .unwrap()
        .verify_receipt(&block.tx_root, &resp.tx_id, r.outcome_code)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_commit_serve_verified_lookups_and_a_restarted_node_catches_up() {
    let mut c = Cluster::start(4).await;
    for i in 0..4 {
        c.wait_height(i, 1).await;
    }
    // A registration, waited for, with a receipt that verifies.
    let tx = register(&c.genesis.hash(), &c.service, 0, "api", "i1");
    let (status, resp) = c.submit(0, &tx, true).await;
    assert_eq!(status, 200);
    assert_eq!(resp.status, TxStatus::Committed, "{resp:?}");
    verify_receipt(&c, &resp);
    // Another node serves a lookup that verifies against the genesis validators.
    let height = resp.receipt.as_ref().unwrap().height;
    c.wait_height(2, height + 1).await;
    let lookup: LookupResponse = get_json(c.api(2), "/v1/services/prod/api", 200).await;
    let ledger = lookup
        .certificate
        .decode()
        .unwrap()
        .verify(&c.validators(), &c.genesis.chain_id)
        .unwrap();
    let verified = lookup.proof().unwrap().verify(&ledger).unwrap();
    let record = verified.record.expect("service present");
    assert_eq!(record.instances[0].instance, "i1");
    assert_eq!(lookup.record.as_ref().map(|r| r.instances.len()), Some(1));
    // A verifying client leaves out the decoded copy: the same proof
    // material at the same height, no `record`.
    let lean: LookupResponse = get_json(c.api(2), "/v1/services/prod/api?record=false", 200).await;
    assert!(lean.record.is_none(), "{lean:?}");
    if lean.height == lookup.height {
        assert_eq!(lean.lookup.bytes(), lookup.lookup.bytes());
        assert_eq!(lean.instances.len(), lookup.instances.len());
    }
    let ledger = lean
        .certificate
        .decode()
        .unwrap()
        .verify(&c.validators(), &c.genesis.chain_id)
        .unwrap();
    let lean_record = lean.proof().unwrap().verify(&ledger).unwrap().record;
    assert_eq!(lean_record.unwrap().instances[0].instance, "i1");
    let (status, _) = request(c.api(2), "GET", "/v1/services/prod/api?record=maybe", None).await;
    assert_eq!(status, 400, "a malformed query is refused");
    // The transport counts the bytes it sent to the other validators.
    let (_, metrics) = request(c.api(0), "GET", "/metrics", None).await;
    let metrics = String::from_utf8(metrics).unwrap();
    let sent: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("palisade_p2p_libp2p_bandwidth_bytes_total{")
                && l.contains("direction=\"Outbound\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(sent > 0.0, "no p2p bytes counted:\n{metrics}");
    // An absent service is a proven absence.
    let absent: LookupResponse = get_json(c.api(1), "/v1/services/prod/nothing", 200).await;
    let ledger = absent
        .certificate
        .decode()
        .unwrap()
        .verify(&c.validators(), &c.genesis.chain_id)
        .unwrap();
    assert!(absent
        .proof()
        .unwrap()
        .verify(&ledger)
        .unwrap()
        .record
        .is_none());

    // Stop the validator that leads fewest of the next rounds. The core's
    // leader reputation only learns from commits, so a stopped validator keeps
    // its turns until the others commit without it; this keeps the test about
    // the node (restart, catch-up) rather than about that warm-up.
    let round = c.status(0).await.round;
    let down = least_leading(&c, round);
    c.stop(down).await;
    let up = (down + 1) % 4;
    let tx = register(&c.genesis.hash(), &c.service, 1, "api", "i2");
    let (_, resp) = c.submit(up, &tx, false).await;
    let resp = c.wait_receipt(up, &resp.tx_id).await;
    assert_eq!(
        resp.status,
        TxStatus::Committed,
        "three of four commit: {resp:?}"
    );
    // Down long enough that the peers' in-memory windows (8 blocks) no
    // longer reach it: catch-up is served from their committed logs.
    let target = c
        .wait_height(up, resp.receipt.as_ref().unwrap().height + 12)
        .await;
    // Restart it from its RocksDB directory: it catches up.
    c.restart(down).await;
    c.wait_height(down, target).await;
    let tx_path = format!("/v1/tx/{}", resp.tx_id);
    let again: SubmitResponse = get_json(c.api(down), &tx_path, 200).await;
    assert_eq!(
        again.status,
        TxStatus::Committed,
        "the restarted node serves the receipt"
    );
    verify_receipt(&c, &again);
    c.shutdown().await;
}
