//! Snapshot catch-up on a real 4-node cluster whose nodes prune history
//! with a small window: a wiped node cannot replay from genesis (its peers
//! answer 410 for height 1) and catches up from a certified snapshot, then
//! commits and votes again; a tampered chunk is refused and another peer
//! serves; an install stopped at each crash point leaves either the old
//! database or the whole snapshot.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use palisade_client::TrustedChain;
use palisade_consensus::state::StateReader;
use palisade_crypto::api::{LookupResponse, TxStatus};
use palisade_crypto::dc::{ExportHead, ExportSnapshot, LeafChange};
use palisade_crypto::{Digest, Hex, NetworkFile, NodeEndpoint};
use palisade_node::snapshot::{
    catch_up, complete_pending, CatchUpError, CatchUpOptions, Committed, CrashPoint, Floor,
    HttpSnapshotSource, Local, SnapshotProof, SnapshotSource,
};
use palisade_node::NodeStore;

use super::cluster::Cluster;
use super::http::{get_json, request};
use super::state_store::register;

const WINDOW: u64 = 20;

fn network(c: &Cluster) -> NetworkFile {
    NetworkFile {
        chain_id: c.genesis.chain_id.clone(),
        datacenter: "dc1".into(),
        genesis_hash: c.genesis.hash(),
        validators: c.genesis.validators.clone(),
        nodes: (0..c.keys.len())
            .map(|i| NodeEndpoint {
                name: format!("node{i}"),
                public_key: c.keys[i].public(),
                api_url: format!("http://{}", c.api(i)),
                p2p_addr: c.configs[i].listen_p2p.clone(),
            })
            .collect(),
    }
}

async fn pruning_cluster() -> Cluster {
    let c = Cluster::start_with(4, |cfg| {
        cfg.storage.retain_heights = WINDOW;
        cfg.storage.catch_up_min_gap = 0;
    })
    .await;
    // A few services in the state, then enough heights that every node
    // pruned height 1 (a pass every 10 s).
    for (seq, svc) in ["api", "db", "cache"].iter().enumerate() {
        let (_, r) = c
            .submit(
                0,
                &register(&c.genesis.hash(), &c.service, seq as u64, svc, "i1"),
                true,
            )
            .await;
        assert_eq!(r.status, TxStatus::Committed, "{r:?}");
    }
    for i in 0..4 {
        wait_pruned(&c, i, 2).await;
    }
    c
}

/// Wait (bounded) until node `i` answers 410 for heights below `below`.
async fn wait_pruned(c: &Cluster, i: usize, below: u64) {
    for _ in 0..400 {
        let (status, _) = request(
            c.api(i),
            "GET",
            &format!("/v1/audit/blocks/{}", below - 1),
            None,
        )
        .await;
        if status == 410 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node {i} did not prune below {below} within 40 s");
}

/// A lookup, asked again (bounded) while the node answers 503: with a
/// window this small, pruning can briefly leave no certificate when
/// certificates lag the ledger (THREAT_MODEL F5).
async fn lookup(api: std::net::SocketAddr, svc: &str) -> LookupResponse {
    let path = format!("/v1/services/prod/{svc}");
    for _ in 0..100 {
        let (status, _) = request(api, "GET", &path, None).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    get_json(api, &path, 200).await
}

fn sources(net: &NetworkFile, skip: usize) -> Vec<Box<dyn SnapshotSource>> {
    net.nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != skip)
        .map(|(_, n)| {
            Box::new(HttpSnapshotSource::new(&n.api_url, Duration::from_secs(10)))
                as Box<dyn SnapshotSource>
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_catches_up_from_a_snapshot_when_peers_pruned_and_commits_again() {
    let mut c = pruning_cluster().await;
    let net = network(&c);
    let net_file = c.dir.path().join("network.json");
    std::fs::write(&net_file, serde_json::to_string_pretty(&net).unwrap()).unwrap();
    // Wipe node 3's data directory and restart it with the network file.
    c.stop(3).await;
    std::fs::remove_dir_all(&c.configs[3].data_dir).unwrap();
    c.configs[3].network_file = Some(net_file);
    let before = c.status(0).await.height;
    c.restart(3).await;
    // It stands on a snapshot: below it, it answers like a pruned node.
    let (status, body) = request(c.api(3), "GET", "/v1/audit/blocks/1", None).await;
    assert_eq!(status, 410, "{}", String::from_utf8_lossy(&body));
    let (status, _) = request(c.api(3), "GET", "/v1/export/changes?from_height=1", None).await;
    assert_eq!(status, 410, "changes below the snapshot: snapshot_required");
    // A watch resuming at or below the snapshot's height is refused too:
    // the install brings no per-height change records for the tail below
    // it, and a stream from there would skip those changes silently
    // (review S4).
    let standing = c.status(3).await.height;
    let path = format!(
        "/v1/watch?namespace=prod&from_height={}",
        standing.saturating_sub(1).max(1)
    );
    let watch = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        request(c.api(3), "GET", &path, None),
    )
    .await;
    match watch {
        // Refused before the stream (410) or as its first event (a
        // `cutoff` carrying the 410 `pruned`), never streamed on.
        Ok((status, body)) => {
            let body = String::from_utf8_lossy(&body);
            assert!(
                status == 410 || (body.starts_with("event: cutoff") && body.contains("pruned")),
                "a watch below the snapshot: {status} {body}"
            )
        }
        Err(_) => panic!("a watch from below the snapshot was streamed, not refused"),
    }
    c.wait_height(3, before).await;
    // The state came with it: every service registered before.
    for svc in ["api", "db", "cache"] {
        let r = lookup(c.api(3), svc).await;
        assert!(r.record.is_some(), "{svc} missing on the caught-up node");
    }
    // New writes commit, through it, and it follows them.
    let (_, r) = c
        .submit(
            3,
            &register(&c.genesis.hash(), &c.service, 3, "after", "i1"),
            true,
        )
        .await;
    assert_eq!(r.status, TxStatus::Committed, "{r:?}");
    // It votes again: with another validator down, three of four (it
    // among them) still commit.
    c.stop(1).await;
    let (_, r) = c
        .submit(
            0,
            &register(&c.genesis.hash(), &c.service, 4, "quorum", "i1"),
            false,
        )
        .await;
    let r = c.wait_receipt(0, &r.tx_id).await;
    assert_eq!(r.status, TxStatus::Committed, "{r:?}");
    let h = r.receipt.as_ref().unwrap().height;
    c.wait_height(3, h).await;
    let r = lookup(c.api(3), "quorum").await;
    assert!(r.record.is_some());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_left_behind_the_window_says_so_and_a_restart_catches_up() {
    let mut c = pruning_cluster().await;
    let net = network(&c);
    let net_file = c.dir.path().join("network.json");
    std::fs::write(&net_file, serde_json::to_string_pretty(&net).unwrap()).unwrap();
    c.stop(3).await;
    c.configs[3].network_file = Some(net_file);
    c.restart(3).await;
    let top = c.status(0).await.height;
    c.wait_height(3, top).await;
    // Cut node 3 off from every peer until they pruned past it.
    let blocked: Vec<String> = (0..3).map(|i| c.keys[i].public().to_hex()).collect();
    let body = serde_json::to_vec(&serde_json::json!({ "blocked": blocked })).unwrap();
    let (status, _) = request(c.api(3), "POST", "/admin/partition", Some(&body)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h3 = c.status(3).await.height;
    for i in 0..3 {
        wait_pruned(&c, i, h3 + 2).await;
    }
    let (status, _) = request(c.api(3), "POST", "/admin/heal", None).await;
    assert_eq!(status, 200);
    // It cannot sync blocks any more, and says so (a check every 15 s).
    tokio::time::timeout(
        Duration::from_secs(90),
        c.nodes[3].as_ref().unwrap().wait_behind(),
    )
    .await
    .expect("the node did not notice it is behind the window within 90 s");
    assert!(c.status(3).await.height < c.status(0).await.height);
    // A restart (what `palisade-node run` does) catches up from a snapshot.
    c.stop(3).await;
    c.restart(3).await;
    let top = c.status(0).await.height;
    c.wait_height(3, top).await;
    c.shutdown().await;
}

/// A new node (a key in no validator set, a learner) starting empty on a
/// pruning network installs the certified state before it starts. (That it
/// then follows the chain needs the validators to know it, as `add-node`
/// arranges through the network file; checked by hand, see the notes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_learner_installs_a_certified_snapshot_before_it_starts() {
    let c = pruning_cluster().await;
    let net = network(&c);
    let net_file = c.dir.path().join("network.json");
    std::fs::write(&net_file, serde_json::to_string_pretty(&net).unwrap()).unwrap();
    let key = palisade_crypto::SecretKey::from_seed([55; 32]);
    let key_file = c.dir.path().join("learner.key");
    palisade_keys::write_key_file(&key_file, &key).unwrap();
    let mut cfg = palisade_node::NodeConfig::new(
        c.dir.path().join("learner"),
        key_file,
        c.configs[0].genesis_file.clone(),
    );
    cfg.listen_p2p = "/ip4/127.0.0.1/tcp/0".into();
    cfg.listen_api = "127.0.0.1:0".into();
    cfg.probes.enabled = false;
    cfg.consensus.learner = true;
    cfg.network_file = Some(net_file);
    cfg.storage.catch_up_min_gap = 0;
    let before = c.status(0).await.height;
    let learner = palisade_node::start(cfg).await.unwrap();
    let api = learner.api_addr();
    let (status, _) = request(api, "GET", "/v1/audit/blocks/1", None).await;
    assert_eq!(status, 410, "the learner stands on a snapshot");
    let s: palisade_crypto::api::StatusResponse = get_json(api, "/v1/status", 200).await;
    assert!(
        s.height >= before,
        "snapshot at {} below {before}",
        s.height
    );
    for svc in ["api", "db", "cache"] {
        let r = lookup(api, svc).await;
        assert!(r.record.is_some(), "{svc} missing on the learner");
    }
    learner.stop().await;
    c.shutdown().await;
}

/// A peer that alters what it serves (or how), otherwise honest.
struct Tamper {
    inner: HttpSnapshotSource,
    what: What,
    /// The highest committed height asked so far (the tail asks its root
    /// first).
    top: Mutex<u64>,
    /// A head older than the peer's own, shown once (an honest peer that
    /// lagged when first asked).
    frozen: Mutex<Option<ExportHead>>,
}

#[derive(Clone, Copy, PartialEq)]
enum What {
    /// One leaf of every page flipped.
    Leaf,
    /// The state root in every committed log entry.
    Tail,
    /// The QC of every committed log entry below the tail's root cut to one
    /// signature (review S4b).
    Qc,
    /// Pages of one leaf, each with a valid proof (review S2a).
    Drip,
    /// Honest pages, each after this long (review S2a).
    Slow(Duration),
    /// 410 for every height below its head (review S2b).
    SaysPruned,
    /// 404 for every height below its head (review S2c).
    SaysMissing,
    /// Nothing altered (with `frozen`: a lagging honest peer).
    Nothing,
}

impl Tamper {
    fn new(url: &str, what: What) -> Self {
        Tamper {
            inner: HttpSnapshotSource::new(url, Duration::from_secs(10)),
            what,
            top: Mutex::new(0),
            frozen: Mutex::new(None),
        }
    }
}

impl SnapshotSource for Tamper {
    fn name(&self) -> String {
        format!("tamper {}", self.inner.name())
    }
    fn head(&self) -> Result<ExportHead, CatchUpError> {
        match self.frozen.lock().unwrap().take() {
            Some(h) => Ok(h),
            None => self.inner.head(),
        }
    }
    fn page(&self, height: u64, after: Option<Digest>) -> Result<ExportSnapshot, CatchUpError> {
        let mut page = self.inner.page(height, after)?;
        match self.what {
            What::Leaf => {
                let mut leaves: Vec<LeafChange> = page.leaves.decode().unwrap();
                let v = leaves[0].value.as_mut().unwrap();
                v[0] ^= 1;
                page.leaves = Hex::new(&leaves);
            }
            What::Drip => {
                let mut leaves: Vec<LeafChange> = page.leaves.decode().unwrap();
                if leaves.len() > 1 {
                    leaves.truncate(1);
                    page.next = Some(leaves[0].key_hash);
                    page.leaves = Hex::new(&leaves);
                }
            }
            What::Slow(pause) => std::thread::sleep(pause),
            _ => {}
        }
        Ok(page)
    }
    fn proof(&self, height: u64, key: Digest) -> Result<SnapshotProof, CatchUpError> {
        self.inner.proof(height, key)
    }
    fn committed(&self, height: u64) -> Result<Committed, CatchUpError> {
        let top = {
            let mut top = self.top.lock().unwrap();
            *top = (*top).max(height);
            *top
        };
        match (self.inner.committed(height)?, self.what) {
            (Committed::Block(mut c), What::Tail) => {
                c.info.state_root = Digest([7; 32]);
                Ok(Committed::Block(c))
            }
            (Committed::Block(mut c), What::Qc) if height < top => {
                c.commit_qc.signatures.truncate(1);
                Ok(Committed::Block(c))
            }
            (_, What::SaysPruned) => Ok(Committed::Pruned),
            (_, What::SaysMissing) => Ok(Committed::Missing),
            (other, _) => Ok(other),
        }
    }
    fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, CatchUpError> {
        self.inner.epochs(from)
    }
    fn pin(&self, height: u64) -> Result<(), CatchUpError> {
        self.inner.pin(height)
    }
}

use palisade_crypto::CommitCertificate;

fn tampering(net: &NetworkFile, nodes: &[usize]) -> Vec<Box<dyn SnapshotSource>> {
    tampering_with(net, nodes, What::Leaf)
}

fn tampering_with(net: &NetworkFile, nodes: &[usize], what: What) -> Vec<Box<dyn SnapshotSource>> {
    nodes
        .iter()
        .map(|&i| Box::new(Tamper::new(&net.nodes[i].api_url, what)) as Box<dyn SnapshotSource>)
        .collect()
}

/// What an installed database holds: height, root, pruned mark.
fn installed(dir: &Path) -> (u64, Digest, u64) {
    let store = NodeStore::open_rocks(&dir.join("db")).unwrap();
    let h = store.committed_height().unwrap();
    let root = StateReader::at(&store, h).root().unwrap();
    let info = store.block_info(h).unwrap().unwrap();
    assert_eq!(
        info.state_root, root,
        "the tree's root is the certified one"
    );
    assert!(
        store.committed_block(h).unwrap().is_some(),
        "the root's log entry"
    );
    let below = palisade_node::storage::prune::pruned_below(store.kv().as_ref()).unwrap();
    (h, root, below)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_chunks_are_refused_and_crashed_installs_leave_old_or_whole_state() {
    let c = pruning_cluster().await;
    let net = network(&c);
    let options = |crash| CatchUpOptions {
        min_gap: 0,
        crash,
        ..CatchUpOptions::default()
    };
    let local = Local::default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let run = move |srcs: Vec<Box<dyn SnapshotSource>>, crash| {
        let d = d.clone();
        let mut trust = TrustedChain::from_network(&net).unwrap();
        let local = local.clone();
        std::thread::spawn(move || catch_up(&d, &mut trust, &srcs, &local, options(crash)))
            .join()
            .unwrap()
    };
    let net = network(&c);
    let d = dir.path();

    // Only tampering peers: every one refused, nothing installed.
    let r = run(tampering(&net, &[0, 1]), CrashPoint::Never);
    assert_eq!(r, Err(CatchUpError::Exhausted));
    assert!(!d.join("db").exists());
    assert_eq!(
        complete_pending(d).unwrap(),
        None,
        "a refused install is dropped"
    );
    // A committed log whose infos are not the certified block's: refused.
    let r = run(
        tampering_with(&net, &[0, 1, 2], What::Tail),
        CrashPoint::Never,
    );
    assert_eq!(r, Err(CatchUpError::Exhausted));
    assert!(!d.join("db").exists());
    // Forged QCs below the root (each cut to one signature): refused, not
    // stored and served again as this node's word (review S4b).
    let r = run(
        tampering_with(&net, &[0, 1, 2], What::Qc),
        CrashPoint::Never,
    );
    assert_eq!(r, Err(CatchUpError::Exhausted));
    assert!(!d.join("db").exists());

    // Two tampering peers and an honest one: the honest one serves.
    let mut srcs = tampering(&net, &[0, 1]);
    srcs.extend(sources(&net, 3).into_iter().skip(2));
    let done = run(srcs, CrashPoint::Never).unwrap().expect("caught up");
    assert!(
        done.refused.iter().all(|r| r.starts_with("tamper")),
        "{done:?}"
    );
    let (h, _, below) = installed(d);
    assert_eq!(h, done.height);
    // Installed without a safety record of its own (a wiped validator): it
    // starts as if it had voted in every round up to past the certified
    // head's (review S1), never from round 0.
    {
        let store = NodeStore::open_rocks(&d.join("db")).unwrap();
        let safety = store.safety_state().unwrap().expect("a safety record");
        let head_round = store.block_info(h).unwrap().unwrap().round;
        assert!(
            safety.last_voted_round > head_round && safety.highest_timeout_round > head_round,
            "a wiped node may vote again in rounds it may have voted in: {safety:?} head round {head_round}"
        );
    }
    assert!(
        below <= h && below + 64 > h,
        "kept only the committed tail: {below} {h}"
    );
    std::fs::remove_dir_all(d.join("db")).unwrap();

    // Crash after the first chunk, and before the completion mark: the
    // next start drops the staging store and has no half state.
    for crash in [CrashPoint::AfterChunks(1), CrashPoint::BeforeMark] {
        let r = run(sources(&net, 3), crash);
        assert!(matches!(r, Err(CatchUpError::Crashed(_))), "{r:?}");
        assert!(!d.join("db").exists(), "{crash:?}: nothing in place");
        assert_eq!(complete_pending(d).unwrap(), None, "{crash:?}");
        assert!(!d.join("snapshot-install").exists());
    }
    // An old database in place, and a crash mid-swap: the next start
    // finishes the swap, and the node opens the whole snapshot.
    {
        let old = NodeStore::open_rocks(&d.join("db")).unwrap();
        drop(old);
    }
    let r = run(sources(&net, 3), CrashPoint::MidSwap);
    assert!(matches!(r, Err(CatchUpError::Crashed(_))), "{r:?}");
    let swapped = complete_pending(d)
        .unwrap()
        .expect("the complete install is swapped in");
    let (h, _, _) = installed(d);
    assert_eq!(h, swapped);
    assert!(!d.join("db.replaced").exists());
    c.shutdown().await;
}

/// `catch_up` on its own thread (it blocks), into `dir`.
fn catch_up_in(
    net: &NetworkFile,
    dir: &Path,
    srcs: Vec<Box<dyn SnapshotSource>>,
    local: Local,
    options: CatchUpOptions,
) -> Result<Option<palisade_node::snapshot::CaughtUp>, CatchUpError> {
    let dir = dir.to_path_buf();
    let mut trust = TrustedChain::from_network(net).unwrap();
    std::thread::spawn(move || catch_up(&dir, &mut trust, &srcs, &local, options))
        .join()
        .unwrap()
}

fn boxed(t: Tamper) -> Box<dyn SnapshotSource> {
    Box::new(t)
}

/// Review S2a: a peer with the newest head that serves honest pages of one
/// leaf, or too slowly, is left for the next peer instead of holding the
/// node (before: one leaf per page, two 10 s requests each, no deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dripping_pages_or_serving_too_slowly_is_left_for_the_next() {
    let c = pruning_cluster().await;
    let net = network(&c);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = |i: usize| net.nodes[i].api_url.clone();
    let options = CatchUpOptions::default();

    // Pages of one leaf, each proven: refused at the second page.
    let r = catch_up_in(
        &net,
        d,
        vec![
            boxed(Tamper::new(&url(0), What::Drip)),
            boxed(Tamper::new(&url(1), What::Drip)),
        ],
        Local::default(),
        options,
    );
    assert_eq!(
        r,
        Err(CatchUpError::Exhausted),
        "a dripping peer was followed"
    );
    assert!(!d.join("db").exists());

    // Honest pages slower than the floor: refused. (A floor no real
    // transfer meets: no grace, 1 GiB/s; each page takes 200 ms.)
    let strict = CatchUpOptions {
        floor: Floor {
            grace: Duration::ZERO,
            bytes_per_sec: 1 << 30,
        },
        ..options
    };
    let r = catch_up_in(
        &net,
        d,
        vec![boxed(Tamper::new(
            &url(0),
            What::Slow(Duration::from_millis(200)),
        ))],
        Local::default(),
        strict,
    );
    assert_eq!(
        r,
        Err(CatchUpError::Exhausted),
        "a slow peer was waited for"
    );
    assert!(!d.join("db").exists());

    // A dripping peer beside honest ones: an honest one serves.
    let r = catch_up_in(
        &net,
        d,
        vec![
            boxed(Tamper::new(&url(0), What::Drip)),
            boxed(Tamper::new(&url(1), What::Nothing)),
            boxed(Tamper::new(&url(2), What::Nothing)),
        ],
        Local::default(),
        options,
    );
    let done = r.unwrap().expect("caught up from an honest peer");
    assert!(
        done.refused.len() <= 1 && done.refused.iter().all(|p| p.contains(&url(0))),
        "{done:?}"
    );
    let (h, _, _) = installed(d);
    assert_eq!(h, done.height);
    c.shutdown().await;
}

/// Review S2b/c: the peer with the newest head alone decides nothing about
/// whether a snapshot is needed: its false 410 for a height the honest
/// peers still serve does not force a download, and its false 404 for a
/// height every honest peer pruned does not leave the node on its stale
/// state. (The honest peers here show heads a little older than the liar's,
/// as lagging peers do, so the liar is the one with the newest head.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_alone_does_not_decide_whether_a_snapshot_is_needed() {
    let c = pruning_cluster().await;
    let net = network(&c);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = |i: usize| net.nodes[i].api_url.clone();
    let frozen = |i: usize| {
        let t = Tamper::new(&url(i), What::Nothing);
        *t.frozen.lock().unwrap() = Some(t.inner.head().unwrap());
        t
    };
    let lagging = [frozen(1), frozen(2)];
    let older = lagging
        .iter()
        .map(|t| {
            let head = t.frozen.lock().unwrap().clone().unwrap();
            head.certificate.decode().unwrap()
        })
        .map(|cert: CommitCertificate| cert.ledger_info.commit.unwrap().height)
        .max()
        .unwrap();
    // The liar's own head must be the newest.
    c.wait_height(0, older + 1).await;
    let [a, b] = lagging;

    // (b) This node lacks only one height that everybody serves; the liar
    // answers 410 for it. No snapshot.
    let local = Local {
        height: older - 1,
        safety: None,
    };
    let r = catch_up_in(
        &net,
        d,
        vec![
            boxed(Tamper::new(&url(0), What::SaysPruned)),
            boxed(a),
            boxed(b),
        ],
        local,
        CatchUpOptions::default(),
    );
    assert_eq!(r, Ok(None), "one peer's 410 forced a snapshot");
    assert!(!d.join("db").exists());

    // (c) This node is empty, every honest peer pruned height 1; the liar
    // answers 404 for it (as if it could be synced). A snapshot all the
    // same.
    let r = catch_up_in(
        &net,
        d,
        vec![
            boxed(Tamper::new(&url(0), What::SaysMissing)),
            boxed(frozen(1)),
            boxed(frozen(2)),
        ],
        Local::default(),
        CatchUpOptions::default(),
    );
    let done = r
        .unwrap()
        .expect("one peer's 404 kept the node off a snapshot");
    let (h, _, _) = installed(d);
    assert_eq!(h, done.height);
    c.shutdown().await;
}

/// A peer that pages honestly but waits, before its first page, until its
/// node moved far past the snapshot height and ran a pruning pass there:
/// an install slower than the retention window (review S3).
struct Slowest {
    inner: HttpSnapshotSource,
    /// Ask the node to pin the height (as catch-up does).
    pin: bool,
    waited: Mutex<bool>,
}

impl Slowest {
    fn wait_past(&self, height: u64) {
        if std::mem::replace(&mut *self.waited.lock().unwrap(), true) {
            return;
        }
        // The node's committed height well past the window above `height`.
        for _ in 0..600 {
            let head = self.inner.head().unwrap();
            let cert: CommitCertificate = head.certificate.decode().unwrap();
            if cert.ledger_info.commit.unwrap().height > height + WINDOW + 5 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Then a pruning pass (one every 10 s) at that height: without a
        // pin it removes `height + 4` (and `height`); with one it keeps
        // both. Bounded by 20 s.
        for _ in 0..200 {
            if self.inner.committed(height + 4) == Ok(Committed::Pruned) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl SnapshotSource for Slowest {
    fn name(&self) -> String {
        format!("slowest {}", self.inner.name())
    }
    fn head(&self) -> Result<ExportHead, CatchUpError> {
        self.inner.head()
    }
    fn page(&self, height: u64, after: Option<Digest>) -> Result<ExportSnapshot, CatchUpError> {
        self.wait_past(height);
        self.inner.page(height, after)
    }
    fn proof(&self, height: u64, key: Digest) -> Result<SnapshotProof, CatchUpError> {
        self.inner.proof(height, key)
    }
    fn committed(&self, height: u64) -> Result<Committed, CatchUpError> {
        self.inner.committed(height)
    }
    fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, CatchUpError> {
        self.inner.epochs(from)
    }
    fn pin(&self, height: u64) -> Result<(), CatchUpError> {
        if self.pin {
            self.inner.pin(height)
        } else {
            Ok(())
        }
    }
}

/// Review S3: a download slower than the serving peer's retention window
/// completes, because the peer keeps the pinned height from its pruner;
/// the same download without the pin fails once the height is pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_slower_than_the_peers_window_completes_on_a_pinned_height() {
    let c = pruning_cluster().await;
    let net = network(&c);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slowest = |pin| {
        vec![Box::new(Slowest {
            inner: HttpSnapshotSource::new(&net.nodes[0].api_url, Duration::from_secs(10)),
            pin,
            waited: Mutex::new(false),
        }) as Box<dyn SnapshotSource>]
    };
    // The floor is not what this test is about: a loaded machine may take
    // a while to pass the window.
    let options = CatchUpOptions {
        floor: Floor {
            grace: Duration::from_secs(300),
            ..Floor::default()
        },
        ..CatchUpOptions::default()
    };
    // Without a pin, the height is pruned under the download.
    let r = catch_up_in(&net, d, slowest(false), Local::default(), options);
    assert_eq!(r, Err(CatchUpError::Exhausted), "the height was not pruned");
    assert!(!d.join("db").exists());
    // Pinned, the same slow download completes at its height.
    let r = catch_up_in(&net, d, slowest(true), Local::default(), options);
    let done = r.unwrap().expect("installed");
    let (h, _, _) = installed(d);
    assert_eq!(h, done.height);
    let now = c.status(0).await.height;
    assert!(
        now > done.height + WINDOW,
        "the download outlasted the window: snapshot {} head {now}",
        done.height
    );
    c.shutdown().await;
}

/// The first peer stalls until the second one pruned the head it showed at
/// the start, then fails; the second is tried at its current head (review
/// S3: a long failed attempt left every later peer's start-up head pruned).
struct StallThenFail {
    inner: HttpSnapshotSource,
    /// The peer that must prune `height` first.
    other: HttpSnapshotSource,
    height: u64,
}

impl SnapshotSource for StallThenFail {
    fn name(&self) -> String {
        format!("stalling {}", self.inner.name())
    }
    fn head(&self) -> Result<ExportHead, CatchUpError> {
        self.inner.head()
    }
    fn page(&self, _: u64, _: Option<Digest>) -> Result<ExportSnapshot, CatchUpError> {
        for _ in 0..600 {
            if self.other.committed(self.height) == Ok(Committed::Pruned) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(CatchUpError::BadChunk("stalled".into()))
    }
    fn proof(&self, height: u64, key: Digest) -> Result<SnapshotProof, CatchUpError> {
        self.inner.proof(height, key)
    }
    fn committed(&self, height: u64) -> Result<Committed, CatchUpError> {
        self.inner.committed(height)
    }
    fn epochs(&self, from: u64) -> Result<Vec<CommitCertificate>, CatchUpError> {
        self.inner.epochs(from)
    }
    fn pin(&self, height: u64) -> Result<(), CatchUpError> {
        self.inner.pin(height)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_long_failed_attempt_the_next_peer_is_tried_at_its_current_head() {
    let c = pruning_cluster().await;
    let net = network(&c);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let url = |i: usize| net.nodes[i].api_url.clone();
    // Node 1's head now; node 0 newer, so it is tried first.
    let second = Tamper::new(&url(1), What::Nothing);
    let shown = second.inner.head().unwrap();
    let cert: CommitCertificate = shown.certificate.decode().unwrap();
    let h1 = cert.ledger_info.commit.unwrap().height;
    *second.frozen.lock().unwrap() = Some(shown);
    c.wait_height(0, h1 + 1).await;
    let first = StallThenFail {
        inner: HttpSnapshotSource::new(&url(0), Duration::from_secs(10)),
        other: HttpSnapshotSource::new(&url(1), Duration::from_secs(10)),
        height: h1,
    };
    let options = CatchUpOptions {
        floor: Floor {
            grace: Duration::from_secs(300),
            ..Floor::default()
        },
        ..CatchUpOptions::default()
    };
    let r = catch_up_in(
        &net,
        d,
        vec![Box::new(first), boxed(second)],
        Local::default(),
        options,
    );
    let done = r
        .unwrap()
        .expect("the second peer served at its current head");
    assert!(done.height > h1, "{done:?} (shown {h1})");
    assert_eq!(done.refused.len(), 1, "{done:?}");
    let (h, _, _) = installed(d);
    assert_eq!(h, done.height);
    c.shutdown().await;
}
