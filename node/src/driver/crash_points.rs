//! Crash points of the driver's write ordering: every round's records are
//! written without sync and made durable by one sync before what depends on
//! them leaves the node; a commit whose QC a quorum made durable is served
//! at once, and a leader's proposal leaves before its own sync. A chain of
//! one or four validators runs through the real drivers, replicas and
//! executors (the four exchange their frames in process) over backends that
//! log, in one global order, every write, sync, frame sent and rise of the
//! height whose receipts a node serves. Then, for every point of that log,
//! the stores are rebuilt as a crash there would leave them (kill -9 of every
//! node: every logged write so far; power loss of every node: each node's
//! logged writes up to its own last sync or flush; the state commit, written
//! without the WAL, only in the column families flushed after it), recovered
//! (the tree must prove every key at the recovered state height), and the
//! chain runs on until each node's ledger reaches the height it served before
//! the crash: each node must then hold every transaction it served a receipt
//! for, at the same height. A second family of runs crashes ONE node (kill -9
//! or power loss, at each of its writes or syncs) while the others go on,
//! restarts it, and checks the same at the end of the run.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_consensus::hotstuff::{Config as CoreConfig, Message, Replica};
use palisade_consensus::state::{Authority, Genesis, RegistryExecutor};
use palisade_crypto::{
    decode_capped, Digest, Endpoint, Enrollment, PublicKey, Registration, Role, SecretKey,
    SignedTransaction, Transaction, TxBody, Validator,
};
use tokio::sync::mpsc;

use super::{message_kind, now_ms, Driver, Needs};
use crate::config::ConsensusConfig;
use crate::context::{Context, Wire};
use crate::error::StorageError;
use crate::net::{Inbound, MAX_FRAME};
use crate::storage::{Batch, Cf, Entry, KvBackend, MemKv, NodeStore};

/// A broken release rule (tests only): the crash-point check must catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Broken {
    /// Serve a commit before the sync even when its QC may count a vote of
    /// this node written since the last sync.
    IgnoreOwnVote,
    /// Serve the block of the highest QC, before its child is certified (a
    /// 1-chain commit), before the sync.
    AtQc,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Batch),
    /// A write without the WAL (the state commit): lost by a crash unless a
    /// later flush persisted it.
    Unlogged(Batch),
    Sync,
    /// Every write so far to one column family persisted (its memtables
    /// flushed; RocksDB syncs the WAL up to it too).
    FlushCf(Cf),
    /// The node now serves receipts up to this ledger height.
    Served(u64),
    /// A frame left the node; for a proposal, its block's id and round.
    Sent {
        kind: &'static str,
        block: Option<(Digest, u64)>,
    },
    /// The node crashed here (a run with one node crashing).
    Died,
}

/// Every node's operations, in the one order they happened.
type Log = Arc<Mutex<Vec<(usize, Op)>>>;

/// What a crash after `log` (one node's operations) leaves, as RocksDB
/// recovers it. RocksDB may flush every family on its own, atomically
/// (`atomic_flush`), at any write: `auto` says it did after `log[..auto]`.
/// A family's table files hold every write to it before its last flush,
/// logged or not; the WAL's writes replay after them if they reached the OS
/// (kill -9: all; power loss: those before the last sync or flush). An
/// unlogged write lived in the memtables only: a family keeps its part of
/// one only if that family was flushed after it, so a crash between the
/// flushes of two families keeps a batch in one and not in the other.
fn survivors(log: &[Op], auto: usize, power_loss: bool) -> Vec<Batch> {
    let wal_end = if power_loss {
        log.iter()
            .rposition(|o| matches!(o, Op::Sync | Op::FlushCf(_)))
            .map_or(0, |p| p + 1)
            .max(auto)
    } else {
        log.len()
    };
    let flushed_after = |i: usize, cf: Cf| {
        i < auto
            || log[i..]
                .iter()
                .any(|o| matches!(o, Op::FlushCf(c) if *c == cf))
    };
    log.iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Op::Write(b) if i < wal_end => Some(b.clone()),
            Op::Unlogged(b) => Some(b.filtered(|cf| flushed_after(i, cf))),
            _ => None,
        })
        .filter(|b| !b.is_empty())
        .collect()
}

/// The points a flush by RocksDB itself could have happened at in `log`
/// (one node's operations): none since the start, and after each unlogged
/// write.
fn flush_points(log: &[Op]) -> Vec<usize> {
    std::iter::once(0)
        .chain(
            log.iter()
                .enumerate()
                .filter(|(_, o)| matches!(o, Op::Unlogged(_)))
                .map(|(i, _)| i + 1),
        )
        .collect()
}

/// Transactions a node served a receipt for: node, height, id.
type ServedTxs = Arc<Mutex<Vec<(usize, u64, Digest)>>>;

/// A [`MemKv`] that logs what reaches it, in order, and each rise of the
/// height its node serves receipts up to (read before every operation),
/// with the transactions that rise serves. With `dies` set, the node
/// crashes at that operation: it and everything after it are not logged,
/// and the node's frames no longer leave.
struct LoggingKv {
    node: usize,
    inner: Arc<MemKv>,
    log: Log,
    /// The node's store (set once built; taken at the end: it holds this).
    gate: Mutex<Option<NodeStore>>,
    served: AtomicU64,
    /// Every transaction admitted in the run, and those served so far.
    ids: Arc<Mutex<Vec<Digest>>>,
    served_txs: ServedTxs,
    /// Crash this node at its `n`-th sync or family flush (power loss) or
    /// write (kill -9), counting from 0.
    dies: Option<(Crash, usize)>,
    seen: AtomicU64,
    /// Where in the global log the node died.
    died_at: Mutex<Option<usize>>,
}

impl LoggingKv {
    fn new(node: usize, log: Log, ids: Arc<Mutex<Vec<Digest>>>, served_txs: ServedTxs) -> Self {
        LoggingKv {
            node,
            inner: MemKv::new(),
            log,
            gate: Mutex::new(None),
            served: AtomicU64::new(0),
            ids,
            served_txs,
            dies: None,
            seen: AtomicU64::new(0),
            died_at: Mutex::new(None),
        }
    }

    fn dead(&self) -> bool {
        self.died_at.lock().unwrap().is_some()
    }

    /// Log a rise of the served height, if any, with the transactions it
    /// serves (their height as the node's store has them now).
    fn note(&self) {
        if self.dead() {
            return;
        }
        let gate = self.gate.lock().unwrap();
        let Some(store) = gate.as_ref() else {
            return;
        };
        let h = store.served_ledger_height();
        let before = self.served.fetch_max(h, Ordering::SeqCst);
        if h > before {
            self.log.lock().unwrap().push((self.node, Op::Served(h)));
            let ids = self.ids.lock().unwrap().clone();
            let mut served = self.served_txs.lock().unwrap();
            for id in ids {
                if let Some(l) = store.tx_location(&id).unwrap() {
                    if l.height > before && l.height <= h {
                        served.push((self.node, l.height, id));
                    }
                }
            }
        }
    }

    fn push(&self, op: Op) {
        if self.dead() {
            return;
        }
        if let Some((crash, n)) = self.dies {
            let counted = match crash {
                Crash::PowerLoss => matches!(op, Op::Sync | Op::FlushCf(_)),
                Crash::Kill => matches!(op, Op::Write(_) | Op::Unlogged(_)),
            };
            if counted && self.seen.fetch_add(1, Ordering::SeqCst) == n as u64 {
                let mut log = self.log.lock().unwrap();
                *self.died_at.lock().unwrap() = Some(log.len());
                log.push((self.node, Op::Died));
                return;
            }
        }
        self.note();
        self.log.lock().unwrap().push((self.node, op));
    }
}

impl KvBackend for LoggingKv {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(cf, key)
    }
    fn write(&self, batch: Batch, sync: bool) -> Result<(), StorageError> {
        self.push(Op::Write(batch.clone()));
        if sync {
            self.push(Op::Sync);
        }
        self.inner.write(batch, sync)
    }
    fn seek_prev(&self, cf: Cf, key: &[u8]) -> Result<Option<Entry>, StorageError> {
        self.inner.seek_prev(cf, key)
    }
    fn scan(&self, cf: Cf, start: &[u8], limit: usize) -> Result<Vec<Entry>, StorageError> {
        self.inner.scan(cf, start, limit)
    }
    fn sync(&self) -> Result<(), StorageError> {
        self.push(Op::Sync);
        Ok(())
    }
    fn write_unlogged(&self, batch: Batch) -> Result<(), StorageError> {
        self.push(Op::Unlogged(batch.clone()));
        self.inner.write_unlogged(batch)
    }
    fn flush_cf(&self, cf: Cf) -> Result<(), StorageError> {
        self.push(Op::FlushCf(cf));
        Ok(())
    }
}

const CHAIN: &str = "test";

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_seed([1 + i as u8; 32]))
        .collect()
}

fn writer() -> SecretKey {
    SecretKey::from_seed([100; 32])
}

fn genesis(validators: &[SecretKey], writer: &SecretKey) -> Genesis {
    let mut g = Genesis::new(
        CHAIN,
        now_ms() - 60_000,
        validators
            .iter()
            .map(|k| Validator {
                key: k.public(),
                power: 1,
            })
            .collect(),
        Authority {
            members: vec![SecretKey::from_seed([99; 32]).public()],
            threshold: 1,
        },
    );
    g.enrollments = vec![Enrollment {
        identity: writer.public(),
        namespaces: vec!["shop".into()],
        role: Role::Service,
    }];
    g
}

/// The height `tx` committed at in `store`, if it did.
fn committed_at(store: &NodeStore, tx: &SignedTransaction) -> Option<u64> {
    store.tx_location(&tx.id()).unwrap().map(|l| l.height)
}

fn register(genesis_hash: &Digest, writer: &SecretKey, seq: u64) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        genesis_hash: *genesis_hash,
        signer: writer.public(),
        sequence: seq,
        body: TxBody::Register(Registration {
            namespace: "shop".into(),
            service: "web".into(),
            instance: format!("i{seq}"),
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
    .sign(writer)
}

/// Frames in flight: sender, addressee (`None`: everyone else), bytes.
type Queue = Arc<Mutex<VecDeque<(usize, Option<PublicKey>, Vec<u8>)>>>;

struct Node {
    driver: Driver,
    ctx: Arc<Context>,
    store: NodeStore,
    _trigger: crate::shutdown::ShutdownTrigger,
}

/// A driver over `store`, recovered from it as the node does at start; its
/// frames go to `queue` (and, when logging, to the log; none once the node
/// died).
fn node(
    i: usize,
    store: NodeStore,
    key: &SecretKey,
    g: &Genesis,
    queue: &Queue,
    logging: Option<Arc<LoggingKv>>,
    broken: Option<Broken>,
) -> Node {
    let mut executor = RegistryExecutor::open(store.clone(), g).expect("state opens");
    let recovery = crate::node::recovery(&store, &mut executor).expect("recovers");
    store.sync().unwrap();
    let mut core = CoreConfig::new(CHAIN);
    // The harness fires timeouts at their deadline, ahead of the clock.
    core.max_clock_drift_ms = 3_600_000;
    let replica = Replica::recover(core, key.clone(), executor, recovery, now_ms())
        .expect("replica recovers");
    let (ctx, trigger) = Context::for_tests_with_store(64, store.clone(), g.hash());
    let (_tx, inbound) = mpsc::channel(1);
    let mut driver = Driver::new(ctx.clone(), replica, inbound, ConsensusConfig::default());
    driver.broken = broken;
    let queue = queue.clone();
    driver.sink = Some(Box::new(move |to, bytes| {
        if let Some(kv) = &logging {
            if kv.dead() {
                return;
            }
            let message = decode_capped::<Wire>(&bytes, MAX_FRAME)
                .ok()
                .and_then(|w| match w {
                    Wire::Consensus(b) => Message::decode(&b).ok(),
                    _ => None,
                });
            let (kind, block) = match &message {
                Some(Message::Proposal(p)) => ("proposal", Some((p.block.id(), p.block.round))),
                Some(m) => (message_kind(m).0, None),
                None => ("other", None),
            };
            kv.push(Op::Sent { kind, block });
        }
        queue.lock().unwrap().push_back((i, to, bytes));
    }));
    Node {
        driver,
        ctx,
        store,
        _trigger: trigger,
    }
}

/// Which point RocksDB flushed every family on its own at, before a crash.
#[derive(Debug, Clone, Copy)]
enum Auto {
    Never,
    Latest,
    Nth(usize),
}

/// One node's operations before `cut` (its writes, syncs and flushes).
fn ops_of(log: &[(usize, Op)], node: usize, cut: usize) -> Vec<Op> {
    log[..cut]
        .iter()
        .filter(|(n, o)| {
            *n == node
                && matches!(
                    o,
                    Op::Write(_) | Op::Unlogged(_) | Op::Sync | Op::FlushCf(_)
                )
        })
        .map(|(_, o)| o.clone())
        .collect()
}

/// Node `node`'s store as a crash at `cut` leaves it.
fn rebuilt(log: &[(usize, Op)], node: usize, cut: usize, crash: Crash, auto: Auto) -> Arc<MemKv> {
    let mine = ops_of(log, node, cut);
    let points = flush_points(&mine);
    let auto = match auto {
        Auto::Never => 0,
        Auto::Latest => *points.last().unwrap(),
        Auto::Nth(k) => points[k.min(points.len() - 1)],
    };
    let mem = MemKv::new();
    for b in survivors(&mine, auto, crash == Crash::PowerLoss) {
        mem.write(b, false).unwrap();
    }
    mem
}

/// The recovered state's tree is whole: at its height, the root is the
/// ledger's, and every key ever written proves against it (a tree with a
/// family's nodes lost under a commit record that survived does not).
fn tree_proves_every_key(mem: &Arc<MemKv>, store: &NodeStore, at: &str) -> Result<(), String> {
    use jmt::{JellyfishMerkleTree, KeyHash};
    let h = store.state_height().unwrap().expect("a state");
    let tree_store = crate::storage::KvTreeStore::new(mem.clone());
    let tree = JellyfishMerkleTree::<_, palisade_crypto::JmtHasher>::new(&tree_store);
    let root = tree
        .get_root_hash(h)
        .map_err(|e| format!("{at}: no root at state height {h}: {e}"))?;
    if let Some(info) = store.block_info(h).unwrap() {
        if root.0 != info.state_root.0 {
            return Err(format!("{at}: root at {h} is not the ledger's"));
        }
    }
    let mut keys: Vec<[u8; 32]> = mem
        .scan(Cf::JmtValues, &[], usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k[..32].try_into().unwrap())
        .collect();
    keys.dedup();
    for k in keys {
        let (value, proof) = tree
            .get_with_proof(KeyHash(k), h)
            .map_err(|e| format!("{at}: key {k:?} at {h}: {e}"))?;
        proof
            .verify(root, KeyHash(k), value.as_ref())
            .map_err(|e| format!("{at}: proof of {k:?} at {h}: {e}"))?;
    }
    Ok(())
}

struct Cluster {
    nodes: Vec<Node>,
    keys: Vec<SecretKey>,
    queue: Queue,
    logging: Vec<Arc<LoggingKv>>,
    genesis: Genesis,
    broken: Option<Broken>,
    /// A restarted node's state, as RocksDB flushed on its own before the crash.
    auto: Auto,
    /// Set when a node restarted after its crash failed a check.
    failed: Option<String>,
}

impl Cluster {
    fn new(
        stores: Vec<NodeStore>,
        g: &Genesis,
        logging: Vec<Arc<LoggingKv>>,
        broken: Option<Broken>,
    ) -> Self {
        let keys = keys(stores.len());
        let queue = Queue::default();
        let nodes = stores
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let log = logging.get(i).cloned();
                node(i, s, &keys[i], g, &queue, log, broken)
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            keys,
            queue,
            logging,
            genesis: g.clone(),
            broken,
            auto: Auto::Never,
            failed: None,
        };
        for n in &mut cluster.nodes {
            n.driver.drain().unwrap();
        }
        cluster.note();
        cluster
    }

    fn note(&mut self) {
        for kv in &self.logging {
            kv.note();
        }
        self.restart_the_dead();
    }

    /// A node that crashed (its backend reached its death) starts again
    /// from what the crash left on its disk; the others go on.
    fn restart_the_dead(&mut self) {
        for i in 0..self.logging.len() {
            let kv = self.logging[i].clone();
            let (Some(at), Some((crash, _))) = (*kv.died_at.lock().unwrap(), kv.dies) else {
                continue;
            };
            let log = kv.log.lock().unwrap().clone();
            let mem = rebuilt(&log, i, at, crash, self.auto);
            let fresh = Arc::new(LoggingKv {
                inner: mem.clone(),
                ..LoggingKv::new(i, kv.log.clone(), kv.ids.clone(), kv.served_txs.clone())
            });
            let store = NodeStore::new(fresh.clone());
            *fresh.gate.lock().unwrap() = Some(store.clone());
            kv.gate.lock().unwrap().take();
            self.logging[i] = fresh.clone();
            let mut n = node(
                i,
                store.clone(),
                &self.keys[i],
                &self.genesis,
                &self.queue,
                Some(fresh.clone()),
                self.broken,
            );
            let what = format!("{crash:?} of node {i} at {at}");
            if let Err(e) = tree_proves_every_key(&mem, &store, &what) {
                self.failed.get_or_insert(e);
            }
            n.driver.drain().unwrap();
            self.nodes[i] = n;
            fresh.note();
        }
    }

    /// Deliver the frames in flight (each followed by its drain, as the
    /// driver's loop does), then let due leaders propose; when nothing
    /// moved, every node reaches its round's deadline.
    fn step(&mut self) {
        let frames: Vec<_> = self.queue.lock().unwrap().drain(..).collect();
        let mut moved = !frames.is_empty();
        for (from, to, bytes) in frames {
            let sender = self.keys[from].public();
            for (j, n) in self.nodes.iter_mut().enumerate() {
                if j == from || to.is_some_and(|t| t != self.keys[j].public()) {
                    continue;
                }
                n.driver.on_frame(Inbound {
                    from: sender,
                    bytes: bytes.clone(),
                });
                n.driver.drain().unwrap();
            }
            self.note();
        }
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            if n.driver.due.is_some() {
                n.driver.propose();
                n.driver.drain().unwrap();
                moved = true;
                self.note();
            }
        }
        if !moved {
            let at = self
                .nodes
                .iter()
                .map(|n| n.driver.replica.next_deadline())
                .max()
                .unwrap_or(0)
                .max(now_ms());
            for n in &mut self.nodes {
                let _ = n.driver.replica.handle_timeout(at);
                n.driver.drain().unwrap();
            }
            self.note();
        }
    }

    fn heights(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| n.store.committed_height().unwrap())
            .collect()
    }

    fn min_height(&self) -> u64 {
        self.heights().into_iter().min().unwrap_or(0)
    }
}

/// What one run left: the global log and the committed transactions by height.
struct Run {
    log: Vec<(usize, Op)>,
    committed: Vec<(u64, Digest)>,
    validators: usize,
    genesis: Genesis,
    /// With a node crashing in the run: whether it died, and the check of
    /// every transaction served against the nodes at the end.
    died: bool,
    checked: Result<(), String>,
}

/// One node crashing in a run: which, how, at its how-manieth sync (power
/// loss) or write (kill -9).
#[derive(Debug, Clone, Copy)]
struct Dies {
    node: usize,
    crash: Crash,
    at: usize,
}

impl Dies {
    /// Which point RocksDB flushed on its own at before the crash: none
    /// or the latest, alternately.
    fn auto(&self) -> Auto {
        if self.at % 2 == 0 {
            Auto::Never
        } else {
            Auto::Latest
        }
    }
}

/// Run `validators` nodes until every node committed `heights` heights, one
/// registration offered to every mempool per step (gossip stands in). Each
/// node flushes its state once early in the run (as the flusher does), with
/// state commits before and after. With `dies`, that node crashes there and
/// restarts at once from what the crash left; the run goes on until every
/// node's ledger reached what it served, and every transaction served must
/// then be at its height in every node that served it.
fn run_chain(validators: usize, heights: u64, broken: Option<Broken>, dies: Option<Dies>) -> Run {
    let g = genesis(&keys(validators), &writer());
    let log = Log::default();
    let ids = Arc::new(Mutex::new(Vec::new()));
    let served_txs = ServedTxs::default();
    let kvs: Vec<Arc<LoggingKv>> = (0..validators)
        .map(|i| {
            let mut kv = LoggingKv::new(i, log.clone(), ids.clone(), served_txs.clone());
            if let Some(d) = dies.filter(|d| d.node == i) {
                kv.dies = Some((d.crash, d.at));
            }
            Arc::new(kv)
        })
        .collect();
    let stores: Vec<NodeStore> = kvs.iter().map(|kv| NodeStore::new(kv.clone())).collect();
    for (kv, s) in kvs.iter().zip(&stores) {
        *kv.gate.lock().unwrap() = Some(s.clone());
    }
    let mut cluster = Cluster::new(stores, &g, kvs.clone(), broken);
    if let Some(d) = dies {
        cluster.auto = d.auto();
    }
    let writer = writer();
    let mut seq = 0;
    let mut flushed = vec![false; validators];
    let started = Instant::now();
    // Bounded: a healthy chain commits a block every few steps.
    for step in 0..(20 * heights + 40) {
        if cluster.min_height() >= heights || cluster.failed.is_some() {
            break;
        }
        // A state flush, as the flusher does, once per node, with state
        // commits before and after it (one validator: at the second step).
        for (i, done) in flushed.iter_mut().enumerate() {
            let due = if validators == 1 {
                step == 1
            } else {
                cluster.nodes[i].store.committed_height().unwrap() >= 2
            };
            if due && !*done && !cluster.logging[i].dead() {
                cluster.nodes[i].store.flush_state().unwrap();
                *done = true;
            }
        }
        let next = cluster.nodes[0]
            .ctx
            .committed_next_sequence(&writer.public());
        if seq < next + 2 {
            let tx = register(&g.hash(), &writer, seq);
            let mut admitted = false;
            for n in &cluster.nodes {
                admitted |= n.ctx.admit(tx.clone(), false).is_ok();
            }
            if admitted {
                ids.lock().unwrap().push(tx.id());
                seq += 1;
            }
        }
        cluster.step();
    }
    let reached = format!(
        "the chain committed {:?} of {heights} heights in {:?}",
        cluster.heights(),
        started.elapsed()
    );
    assert!(
        dies.is_some() || cluster.min_height() >= heights,
        "{reached}"
    );
    let died = dies.is_some_and(|d| cluster.logging[d.node].dies.is_none());
    let checked = match cluster.failed.take() {
        Some(e) => Err(e),
        None if cluster.min_height() < heights => Err(reached),
        None if dies.is_some() => check_served(&mut cluster, &served_txs.lock().unwrap().clone()),
        None => Ok(()),
    };
    let store = &cluster.nodes[0].store;
    let committed = ids
        .lock()
        .unwrap()
        .iter()
        .filter_map(|id| store.tx_location(id).unwrap().map(|l| (l.height, *id)))
        .collect();
    for kv in &cluster.logging {
        kv.gate.lock().unwrap().take();
    }
    let log = log.lock().unwrap().clone();
    Run {
        log,
        committed,
        validators,
        genesis: g,
        died,
        checked,
    }
}

/// Run the cluster on until every node's ledger reaches the highest height
/// it served, then check each served transaction is at its height there.
fn check_served(cluster: &mut Cluster, served: &[(usize, u64, Digest)]) -> Result<(), String> {
    let wanted = |c: &Cluster| {
        served
            .iter()
            .all(|(i, h, _)| c.nodes[*i].store.committed_height().unwrap() >= *h)
    };
    for _ in 0..200 {
        if wanted(cluster) || cluster.failed.is_some() {
            break;
        }
        cluster.step();
    }
    if let Some(e) = cluster.failed.take() {
        return Err(e);
    }
    if !wanted(cluster) {
        return Err(format!("the chain reached only {:?}", cluster.heights()));
    }
    for (i, h, id) in served {
        let now = cluster.nodes[*i]
            .store
            .tx_location(id)
            .unwrap()
            .map(|l| l.height);
        if now != Some(*h) {
            return Err(format!(
                "node {i} served transaction {id} at height {h}; at the end it is at {now:?}"
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// Killed: every logged write so far survives.
    Kill,
    /// Power loss: each node keeps its logged writes up to its last sync.
    PowerLoss,
}

/// The height each node served receipts up to before `cut`.
fn served_before(log: &[(usize, Op)], validators: usize, cut: usize) -> Vec<u64> {
    let mut served = vec![0; validators];
    for (n, op) in &log[..cut] {
        if let Op::Served(h) = op {
            served[*n] = served[*n].max(*h);
        }
    }
    served
}

/// Rebuild every node as a crash of all at `cut` leaves it, recover (the
/// tree must prove every key), run the chain on until each node's ledger
/// reaches what it served, and check that each holds every transaction it
/// served at the same height. A single validator releases nothing before
/// its sync: its own disk must hold what it served at once.
fn check_cut(run: &Run, cut: usize, crash: Crash, auto: Auto) -> Result<(), String> {
    let served = served_before(&run.log, run.validators, cut);
    let at = format!(
        "{crash:?} at {cut}/{} ({auto:?}, served {served:?})",
        run.log.len()
    );
    let mems: Vec<Arc<MemKv>> = (0..run.validators)
        .map(|i| rebuilt(&run.log, i, cut, crash, auto))
        .collect();
    let stores: Vec<NodeStore> = mems.iter().map(|m| NodeStore::new(m.clone())).collect();
    let mut cluster = Cluster::new(stores, &run.genesis, Vec::new(), None);
    for (m, n) in mems.iter().zip(&cluster.nodes) {
        tree_proves_every_key(m, &n.store, &at)?;
    }
    if run.validators == 1 && cluster.min_height() < served[0] {
        return Err(format!(
            "{at}: the ledger recovered only {}",
            cluster.min_height()
        ));
    }
    let reached = |c: &Cluster| {
        c.nodes
            .iter()
            .zip(&served)
            .all(|(n, s)| n.store.committed_height().unwrap() >= *s)
    };
    for _ in 0..200 {
        if reached(&cluster) {
            break;
        }
        cluster.step();
    }
    if !reached(&cluster) {
        return Err(format!(
            "{at}: the recovered chain reached only {:?}",
            cluster.heights()
        ));
    }
    for (i, n) in cluster.nodes.iter().enumerate() {
        for (h, id) in run.committed.iter().filter(|(h, _)| *h <= served[i]) {
            let now = n.store.tx_location(id).unwrap().map(|l| l.height);
            if now != Some(*h) {
                return Err(format!(
                    "{at}: node {i} served transaction {id} at height {h}; after recovery it is at {now:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Every cut that can make a difference: for power loss, the points just
/// before a sync or flush of any node (between two, the durable states stay
/// and the served heights only rise) and the end; for kill -9, the points
/// just before a write and the end.
fn cuts(run: &Run, crash: Crash) -> Vec<usize> {
    let mut cuts: Vec<usize> = run
        .log
        .iter()
        .enumerate()
        .filter(|(_, (_, o))| match crash {
            Crash::PowerLoss => matches!(o, Op::Sync | Op::FlushCf(_)),
            Crash::Kill => matches!(o, Op::Write(_) | Op::Unlogged(_)),
        })
        .map(|(k, _)| k)
        .collect();
    cuts.push(run.log.len());
    cuts
}

/// Check every cut of `run` (every node crashing at once) with each point
/// RocksDB could have flushed on its own at (one validator: every one;
/// more: none and the latest); the first failure, or how many passed.
fn check_all(run: &Run) -> Result<usize, String> {
    let mut checked = 0;
    for crash in [Crash::PowerLoss, Crash::Kill] {
        for cut in cuts(run, crash) {
            let autos: Vec<Auto> = if run.validators == 1 {
                let n = flush_points(&ops_of(&run.log, 0, cut)).len();
                (0..n).map(Auto::Nth).collect()
            } else {
                vec![Auto::Never, Auto::Latest]
            };
            for auto in autos {
                check_cut(run, cut, crash, auto)?;
                checked += 1;
            }
        }
    }
    Ok(checked)
}

/// Crash each node alone at each of its syncs and family flushes (power
/// loss) and writes (kill -9) of a reference run, the others going on; the first failure,
/// or how many runs passed. `stride` takes every so-manieth point.
fn check_single_crashes(
    validators: usize,
    heights: u64,
    broken: Option<Broken>,
    stride: usize,
) -> Result<usize, String> {
    let reference = run_chain(validators, heights, broken, None);
    let mut checked = 0;
    for node in 0..validators {
        for crash in [Crash::PowerLoss, Crash::Kill] {
            let points = count(&reference, |n, o| {
                n == node
                    && match crash {
                        Crash::PowerLoss => matches!(o, Op::Sync | Op::FlushCf(_)),
                        Crash::Kill => matches!(o, Op::Write(_) | Op::Unlogged(_)),
                    }
            });
            for at in (0..points).step_by(stride) {
                let dies = Dies { node, crash, at };
                let run = run_chain(validators, heights, broken, Some(dies));
                if !run.died {
                    continue;
                }
                run.checked.map_err(|e| format!("{dies:?}: {e}"))?;
                checked += 1;
            }
        }
    }
    Ok(checked)
}

fn count(run: &Run, f: impl Fn(usize, &Op) -> bool) -> usize {
    count_until(run, run.log.len(), f)
}

fn count_until(run: &Run, cut: usize, f: impl Fn(usize, &Op) -> bool) -> usize {
    run.log[..cut].iter().filter(|(n, o)| f(*n, o)).count()
}

#[test]
fn every_crash_point_keeps_every_served_commit_of_one_validator() {
    let run = run_chain(1, 6, None, None);
    assert!(!run.committed.is_empty(), "registrations committed");
    let writes = count(&run, |_, o| matches!(o, Op::Write(_) | Op::Unlogged(_)));
    let syncs = count(&run, |_, o| matches!(o, Op::Sync));
    let served = count(&run, |_, o| matches!(o, Op::Served(_)));
    assert!(served >= 3, "commits served: {served}");
    assert!(
        writes > syncs,
        "several writes share a sync ({writes} writes, {syncs} syncs)"
    );
    // The flush at start and the one in the middle, with state commits
    // before and after the second.
    let log: Vec<Op> = run.log.iter().map(|(_, o)| o.clone()).collect();
    let flushes: Vec<usize> = (0..log.len())
        .filter(|&i| matches!(log[i], Op::FlushCf(Cf::Meta)))
        .collect();
    let unlogged = |r: std::ops::Range<usize>| log[r].iter().any(|o| matches!(o, Op::Unlogged(_)));
    assert!(
        flushes.len() == 2 && unlogged(0..flushes[1]) && unlogged(flushes[1]..log.len()),
        "a state flush between state commits: flushes of meta at {flushes:?}"
    );
    let checked = check_all(&run).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked > 2 * writes, "{checked} cuts");
}

#[test]
fn every_crash_point_keeps_every_served_commit_of_four_validators() {
    let run = run_chain(4, 5, None, None);
    assert!(!run.committed.is_empty(), "registrations committed");
    let served = count(&run, |_, o| matches!(o, Op::Served(_)));
    assert!(served >= 8, "commits served: {served}");
    for i in 0..4 {
        let log: Vec<Op> = ops_of(&run.log, i, run.log.len());
        let flushes: Vec<usize> = (0..log.len())
            .filter(|&k| matches!(log[k], Op::FlushCf(Cf::Meta)))
            .collect();
        let unlogged =
            |r: std::ops::Range<usize>| log[r].iter().any(|o| matches!(o, Op::Unlogged(_)));
        assert!(
            flushes.len() == 2 && unlogged(0..flushes[1]) && unlogged(flushes[1]..log.len()),
            "node {i}: a state flush between state commits: flushes of meta at {flushes:?}"
        );
    }
    let checked = check_all(&run).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked > 20, "{checked} cuts");
}

/// One node crashes (power loss at each of its syncs, kill -9 at each of
/// its writes) while the three others go on; it restarts from what the
/// crash left, and at the end every node holds every transaction it served
/// a receipt for, at the height it served it.
#[test]
fn one_node_crashing_while_the_others_go_on_keeps_every_served_commit() {
    let checked = check_single_crashes(4, 4, None, 1).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked > 40, "{checked} crashes");
}

/// Whether node `node`'s state as a power loss at `cut` leaves it satisfies `f`.
fn durable_at(run: &Run, node: usize, cut: usize, f: impl Fn(&NodeStore) -> bool) -> bool {
    f(&NodeStore::new(rebuilt(
        &run.log,
        node,
        cut,
        Crash::PowerLoss,
        Auto::Never,
    )))
}

/// A commit is served as soon as its ledger entry is written when its QC
/// counts no unsynced vote of the node (the replicas' common case: the QC of
/// the child forms from votes that arrive after the node's own vote was
/// synced): some node serves a height its own disk does not yet hold.
#[test]
fn a_commit_is_served_before_the_node_syncs_it() {
    let run = run_chain(4, 4, None, None);
    let early = run.log.iter().enumerate().filter(|(k, (n, o))| match o {
        Op::Served(h) => durable_at(&run, *n, *k, |s| s.committed_height().unwrap() < *h),
        _ => false,
    });
    assert!(
        early.count() > 0,
        "no commit was served before the serving node's sync"
    );
}

/// A leader's proposal leaves before its own sync: some proposal was sent
/// while its block was not yet durable on its leader.
#[test]
fn a_proposal_leaves_before_its_leader_syncs_its_block() {
    let run = run_chain(4, 4, None, None);
    let mut proposals = 0;
    let mut early = 0;
    for (k, (n, o)) in run.log.iter().enumerate() {
        if let Op::Sent {
            kind: "proposal",
            block: Some((id, _)),
        } = o
        {
            proposals += 1;
            if durable_at(&run, *n, k, |s| s.pending_block(id).unwrap().is_none()) {
                early += 1;
            }
        }
    }
    assert!(proposals > 0);
    assert!(early > 0, "all {proposals} proposals waited for their sync");
}

/// The check is not blind: serving a commit whose QC counts this node's
/// unsynced vote (a single validator's every commit) loses a served
/// transaction at some power-loss point.
#[test]
fn the_check_catches_a_commit_served_on_an_unsynced_own_vote() {
    let run = run_chain(1, 6, Some(Broken::IgnoreOwnVote), None);
    let e = check_all(&run).expect_err("a served commit lost");
    assert!(e.contains("PowerLoss"), "{e}");
}

/// The check is not blind: serving the block of a QC before its child is
/// certified loses a served transaction at some power-loss point.
#[test]
fn the_check_catches_a_receipt_served_at_a_qc_without_its_childs_qc() {
    let run = run_chain(4, 5, Some(Broken::AtQc), None);
    let e = check_all(&run).expect_err("a served commit lost");
    assert!(e.contains("PowerLoss"), "{e}");
}

/// A QC formed here that makes this node the next leader, with a proposal
/// due at once, leads to the proposal inside the same drain: the commit it
/// caused and the new block become durable in one sync and the proposal
/// does not wait for another turn of the driver's loop. On a single
/// validator every own vote forms the next QC, so one drain carries the
/// transaction's block to its commit (its child proposed at once; the
/// grandchild, which would only carry a certificate, lingers), with one sync
/// before the announcement.
#[test]
fn a_qc_that_makes_this_node_leader_proposes_in_the_same_drain() {
    let keys = keys(1);
    let writer = writer();
    let g = genesis(&keys, &writer);
    let log = Log::default();
    let kv = Arc::new(LoggingKv::new(
        0,
        log.clone(),
        Default::default(),
        Default::default(),
    ));
    let store = NodeStore::new(kv.clone());
    let queue = Queue::default();
    let mut n = node(0, store.clone(), &keys[0], &g, &queue, None, None);
    let mut announced = n.ctx.commits.subscribe();
    n.driver.drain().unwrap();
    assert!(
        n.driver.due.is_some(),
        "the only validator leads the first round"
    );
    let tx = register(&g.hash(), &writer, 0);
    n.ctx.admit(tx.clone(), false).unwrap();
    let before = log.lock().unwrap().len();
    n.driver.propose();
    n.driver.drain().unwrap();
    let ops = log.lock().unwrap()[before..].to_vec();
    let syncs = ops.iter().filter(|(_, o)| matches!(o, Op::Sync)).count();
    let at = committed_at(&store, &tx);
    assert_eq!(
        at,
        Some(1),
        "the transaction's block committed in this drain"
    );
    assert!(announced.try_recv().unwrap() >= 1, "and was announced");
    assert_eq!(
        syncs, 1,
        "one sync for the proposals and the commit: {ops:?}"
    );
}

/// A block that would only carry the QC committing its grandparent's
/// transactions waits up to `commit_linger_ms` for a transaction, which then
/// rides in it (a sequential client's next write, sent on that commit);
/// a block whose parent still waits for its commit is proposed at once.
#[test]
fn a_leader_lingers_for_a_transaction_when_its_block_would_only_carry_a_commit() {
    let keys = keys(1);
    let writer = writer();
    let g = genesis(&keys, &writer);
    let store = NodeStore::new(Arc::new(MemKv::default()));
    let queue = Queue::default();
    let mut n = node(0, store.clone(), &keys[0], &g, &queue, None, None);
    // Far longer than a descheduled test thread stalls (the cap is half
    // the 1000 ms round timeout), so the linger is still running below.
    let linger = 400;
    n.driver.config.commit_linger_ms = linger;
    n.driver.drain().unwrap();
    let first = register(&g.hash(), &writer, 0);
    n.ctx.admit(first.clone(), false).unwrap();
    n.driver.propose();
    n.driver.drain().unwrap();
    assert_eq!(
        committed_at(&store, &first),
        Some(1),
        "block 1 committed by its child's QC in that drain"
    );
    let due = n.driver.due.as_ref().expect("a block on block 2 is due");
    assert_eq!(
        n.driver.blocks[&due.parent_id].height, 2,
        "the block due would sit on block 2"
    );
    assert_eq!(
        n.driver.child_needed(due.parent_id),
        Needs::Certificate,
        "block 2 is empty, block 1 committed"
    );
    let wait = n.driver.payload_wait().expect("due");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(linger),
        "lingers up to {linger} ms with an empty mempool, not at once: {wait:?}"
    );
    assert!(!n.driver.proposal_due_now());
    let second = register(&g.hash(), &writer, 1);
    n.ctx.admit(second.clone(), false).unwrap();
    assert!(n.driver.proposal_due_now(), "a transaction ends the linger");
    n.driver.propose();
    n.driver.drain().unwrap();
    assert_eq!(
        committed_at(&store, &second),
        Some(3),
        "the second write rode in block 3, the one that lingered"
    );
    // Block 3 carries a transaction and is committed by block 4's QC, in
    // the same drain: block 4 (empty) needed an immediate proposal.
    let due = n.driver.due.as_ref().expect("a block on block 4 is due");
    assert_eq!(n.driver.blocks[&due.parent_id].height, 4);
    assert_eq!(n.driver.child_needed(due.parent_id), Needs::Certificate);
}

/// Node `node`'s disk as a power loss at `cut` leaves it, in a run where
/// it may have crashed before (`died`: where, and how; it restarted from
/// what that crash left).
fn durable_disk(run: &Run, node: usize, cut: usize, died: Option<(usize, Dies)>) -> NodeStore {
    match died {
        Some((d, dies)) if d < cut => {
            let mem = rebuilt(&run.log, node, d, dies.crash, dies.auto());
            let since = ops_of(&run.log[d..], node, cut - d);
            for b in survivors(&since, 0, true) {
                mem.write(b, false).unwrap();
            }
            NodeStore::new(mem)
        }
        _ => NodeStore::new(rebuilt(&run.log, node, cut, Crash::PowerLoss, Auto::Never)),
    }
}

/// Every proposal that left before its block was durable on its leader
/// (where in the log, leader, block id, round), each checked against the
/// leader's durable safety record at the send: a restart from that record
/// must not propose in the proposal's round (else a crash before the
/// leader's sync lets it propose a second, different block there).
fn early_proposals(
    run: &Run,
    died: Option<(usize, Dies)>,
) -> Result<Vec<(usize, usize, Digest, u64)>, String> {
    let mut early = Vec::new();
    for (k, (n, o)) in run.log.iter().enumerate() {
        let Op::Sent {
            kind: "proposal",
            block: Some((id, round)),
        } = o
        else {
            continue;
        };
        let disk = durable_disk(run, *n, k, died.filter(|(_, d)| d.node == *n));
        if disk.pending_block(id).unwrap().is_some() {
            continue;
        }
        let skips = disk
            .safety_state()
            .unwrap()
            .map_or(0, |s| s.no_proposal_after_restart_up_to());
        if *round > skips {
            return Err(format!(
                "node {n} sent its proposal of round {round} at {k} before its sync, \
                 and a restart from its durable record would propose up from round {}",
                skips + 1
            ));
        }
        early.push((k, *n, *id, *round));
    }
    Ok(early)
}

/// A leader whose proposal left before its sync and that lost power before
/// that sync (its block and its vote for it gone) never sends a second,
/// different proposal for that round after its restart (review-4 EARLY-1:
/// replicas that voted for the first would refuse the second as an
/// equivocation, and the round would split). Every early proposal, also
/// those of a restarted leader, left only for a round its durable safety
/// record keeps a restart from proposing in.
#[test]
fn a_leader_that_lost_its_early_proposal_does_not_propose_again_in_that_round() {
    let reference = run_chain(4, 4, None, None);
    let early = early_proposals(&reference, None).unwrap_or_else(|e| panic!("{e}"));
    let mut lost = 0;
    for (k, n, _, _) in early {
        // The leader's power loss at its next sync or flush.
        let at = count_until(&reference, k, |m, o| {
            m == n && matches!(o, Op::Sync | Op::FlushCf(_))
        });
        let dies = Dies {
            node: n,
            crash: Crash::PowerLoss,
            at,
        };
        let run = run_chain(4, 6, None, Some(dies));
        assert!(run.died, "{dies:?}: the leader died");
        run.checked
            .as_ref()
            .unwrap_or_else(|e| panic!("{dies:?}: {e}"));
        let died = run
            .log
            .iter()
            .position(|(m, o)| *m == n && matches!(o, Op::Died))
            .unwrap();
        early_proposals(&run, Some((died, dies))).unwrap_or_else(|e| panic!("{dies:?}: {e}"));
        // Its last proposal before the crash, if the crash lost its block.
        let last = run.log[..died].iter().rev().find_map(|(m, o)| match o {
            Op::Sent {
                kind: "proposal",
                block: Some(b),
            } if *m == n => Some(*b),
            _ => None,
        });
        let Some((first, round)) = last else {
            continue;
        };
        let disk = NodeStore::new(rebuilt(&run.log, n, died, dies.crash, dies.auto()));
        if disk.pending_block(&first).unwrap().is_some() {
            continue;
        }
        lost += 1;
        for (m, o) in &run.log[died..] {
            if let Op::Sent {
                kind: "proposal",
                block: Some((id, r)),
            } = o
            {
                assert!(
                    !(*m == n && *r == round && *id != first),
                    "{dies:?}: node {n} proposed {first} in round {round}, lost it, and proposed {id} in that round after its restart"
                );
            }
        }
    }
    assert!(lost > 0, "no early proposal was lost to a crash");
}
