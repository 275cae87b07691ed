//! Crash points of the driver's write ordering: every round's records are
//! written without sync and made durable by one sync before anything leaves
//! the node. A single-validator chain runs through the real driver, replica
//! and executor over a backend that logs every write, sync and commit
//! announcement; then, for every point of that log, the store is rebuilt as a
//! crash there would leave it (kill -9: every write so far; power loss: the
//! writes up to the last sync) and must recover, and keep every height
//! announced (acknowledged to a waiter) before the crash, with its receipts.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use palisade_consensus::hotstuff::{Config as CoreConfig, Replica};
use palisade_consensus::state::{Authority, Genesis, RegistryExecutor};
use palisade_crypto::{
    Digest, Endpoint, Enrollment, Registration, Role, SecretKey, SignedTransaction, Transaction,
    TxBody, Validator,
};
use tokio::sync::mpsc;

use super::{now_ms, Driver};
use crate::config::ConsensusConfig;
use crate::context::Context;
use crate::error::StorageError;
use crate::storage::{Batch, Cf, Entry, KvBackend, MemKv, NodeStore};

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
    /// Waiters were told that `height` committed.
    Announce(u64),
}

/// What a crash after `log` leaves, as RocksDB recovers it. RocksDB may
/// flush every family on its own, atomically (`atomic_flush`), at any write:
/// `auto` says it did after `log[..auto]`. A family's table files hold every
/// write to it before its last flush, logged or not; the WAL's writes
/// replay after them if they reached the OS (kill -9: all; power loss:
/// those before the last sync or flush). An unlogged write lived in the
/// memtables only: a family keeps its part of one only if that family was
/// flushed after it, so a crash between the flushes of two families keeps
/// a batch in one and not in the other.
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

/// The points a flush by RocksDB itself could have happened at before
/// `cut`: none since the start, and after each unlogged write.
fn flush_points(log: &[Op], cut: usize) -> Vec<usize> {
    std::iter::once(0)
        .chain(
            log[..cut]
                .iter()
                .enumerate()
                .filter(|(_, o)| matches!(o, Op::Unlogged(_)))
                .map(|(i, _)| i + 1),
        )
        .collect()
}

/// A [`MemKv`] that logs what reaches it, in order.
#[derive(Debug, Default)]
struct LoggingKv {
    inner: Arc<MemKv>,
    log: Mutex<Vec<Op>>,
}

impl LoggingKv {
    fn push(&self, op: Op) {
        self.log.lock().unwrap().push(op);
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

fn genesis(validator: &SecretKey, writer: &SecretKey) -> Genesis {
    let mut g = Genesis::new(
        CHAIN,
        now_ms() - 60_000,
        vec![Validator {
            key: validator.public(),
            power: 1,
        }],
        Authority {
            members: vec![SecretKey::from_seed([9; 32]).public()],
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

/// A driver over `store`, recovered from it as the node does at start.
fn driver(
    store: NodeStore,
    key: &SecretKey,
    g: &Genesis,
) -> (Driver, Arc<Context>, crate::shutdown::ShutdownTrigger) {
    let mut executor = RegistryExecutor::open(store.clone(), g).expect("state opens");
    let recovery = crate::node::recovery(&store, &mut executor).expect("recovers");
    store.sync().unwrap();
    let replica = Replica::recover(
        CoreConfig::new(CHAIN),
        key.clone(),
        executor,
        recovery,
        now_ms(),
    )
    .expect("replica recovers");
    let (ctx, trigger) = Context::for_tests_with_store(64, store, g.hash());
    let (_tx, inbound) = mpsc::channel(1);
    let driver = Driver::new(ctx.clone(), replica, inbound, ConsensusConfig::default());
    (driver, ctx, trigger)
}

/// Run the chain until `blocks` heights committed, one registration admitted
/// per step; log every announcement. Returns the committed transaction ids by height.
fn run_chain(
    kv: &Arc<LoggingKv>,
    key: &SecretKey,
    writer: &SecretKey,
    g: &Genesis,
    blocks: u64,
) -> Vec<(u64, Digest)> {
    let store = NodeStore::new(kv.clone());
    let (mut d, ctx, _trigger) = driver(store.clone(), key, g);
    let mut announced = ctx.commits.subscribe();
    let mut seq = 0;
    let mut ids = Vec::new();
    let started = Instant::now();
    // Bounded: a healthy single-validator chain commits a block per step.
    for step in 0..(4 * blocks + 16) {
        if store.committed_height().unwrap() >= blocks {
            break;
        }
        // A state flush in the middle, as the flusher does, with writes
        // before and after it: crashes land between its families' flushes.
        if step == 1 {
            store.flush_state().unwrap();
        }
        let next = ctx.committed_next_sequence(&writer.public());
        if seq < next + 2 {
            let tx = register(&g.hash(), writer, seq);
            if ctx.admit(tx.clone(), false).is_ok() {
                ids.push(tx.id());
                seq += 1;
            }
        }
        d.drain().unwrap();
        if d.due.is_some() {
            d.propose();
        }
        d.drain().unwrap();
        while let Ok(h) = announced.try_recv() {
            kv.push(Op::Announce(h));
        }
    }
    assert!(
        store.committed_height().unwrap() >= blocks,
        "the chain committed {} of {blocks} heights in {:?}",
        store.committed_height().unwrap(),
        started.elapsed()
    );
    ids.iter()
        .filter_map(|id| store.tx_location(id).unwrap().map(|l| (l.height, *id)))
        .collect()
}

/// The recovered state's tree is whole: at its height, the root is the
/// ledger's, and every key ever written proves against it (a tree with a
/// family's nodes lost under a commit record that survived does not).
fn tree_proves_every_key(mem: &Arc<MemKv>, store: &NodeStore, cut: usize) {
    use jmt::{JellyfishMerkleTree, KeyHash};
    let h = store.state_height().unwrap().expect("a state");
    let tree_store = crate::storage::KvTreeStore::new(mem.clone());
    let tree = JellyfishMerkleTree::<_, palisade_crypto::JmtHasher>::new(&tree_store);
    let root = tree
        .get_root_hash(h)
        .unwrap_or_else(|e| panic!("crash at {cut}: no root at state height {h}: {e}"));
    if let Some(info) = store.block_info(h).unwrap() {
        assert_eq!(root.0, info.state_root.0, "crash at {cut}: root at {h}");
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
            .unwrap_or_else(|e| panic!("crash at {cut}: key {k:?} at {h}: {e}"));
        proof
            .verify(root, KeyHash(k), value.as_ref())
            .unwrap_or_else(|e| panic!("crash at {cut}: proof of {k:?} at {h}: {e}"));
    }
}

#[test]
fn every_crash_point_keeps_every_announced_commit() {
    let key = SecretKey::from_seed([1; 32]);
    let writer = SecretKey::from_seed([2; 32]);
    let g = genesis(&key, &writer);
    let kv = Arc::new(LoggingKv::default());
    let committed = run_chain(&kv, &key, &writer, &g, 6);
    assert!(!committed.is_empty(), "registrations committed");
    let log = kv.log.lock().unwrap().clone();
    let writes = log.iter().filter(|o| matches!(o, Op::Write(_))).count();
    let syncs = log.iter().filter(|o| matches!(o, Op::Sync)).count();
    let announcements = log.iter().filter(|o| matches!(o, Op::Announce(_))).count();
    assert!(announcements >= 3, "commits announced: {announcements}");
    assert!(
        writes > syncs,
        "several writes share a sync ({writes} writes, {syncs} syncs)"
    );
    // The flush at start and the one in the middle, with state commits
    // before and after the second.
    let flushes: Vec<usize> = (0..log.len())
        .filter(|&i| matches!(log[i], Op::FlushCf(Cf::Meta)))
        .collect();
    let unlogged = |r: std::ops::Range<usize>| log[r].iter().any(|o| matches!(o, Op::Unlogged(_)));
    assert!(
        flushes.len() == 2 && unlogged(0..flushes[1]) && unlogged(flushes[1]..log.len()),
        "a state flush between state commits: flushes of meta at {flushes:?}"
    );
    let mut checked = 0;
    for cut in 0..=log.len() {
        let announced = log[..cut]
            .iter()
            .filter_map(|o| match o {
                Op::Announce(h) => Some(*h),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let crashes = flush_points(&log, cut)
            .into_iter()
            .flat_map(|f| [(f, false), (f, true)]);
        for (flushed, power_loss) in crashes {
            let mem = MemKv::new();
            let kept = survivors(&log[..cut], flushed, power_loss);
            let survived = kept.len();
            for b in kept {
                mem.write(b, false).unwrap();
            }
            let store = NodeStore::new(mem.clone());
            // Recovery succeeds from whatever survived, and the node runs.
            let (mut d, _ctx, _t) = driver(store.clone(), &key, &g);
            d.drain().unwrap();
            tree_proves_every_key(&mem, &store, cut);
            let ledger = store.committed_height().unwrap();
            assert!(
                ledger >= announced,
                "crash at {cut}/{} ({} writes survived): height {announced} was announced, \
                 the ledger recovered only {ledger}",
                log.len(),
                survived
            );
            for (h, id) in committed.iter().filter(|(h, _)| *h <= announced) {
                assert_eq!(
                    store.tx_location(id).unwrap().map(|l| l.height),
                    Some(*h),
                    "crash at {cut}: announced transaction {id} lost"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 2 * writes);
}

/// A QC formed here that makes this node the next leader, with a proposal
/// due at once, leads to the proposal inside the same drain: the commit it
/// caused and the new block become durable in one sync and the proposal
/// does not wait for another turn of the driver's loop. On a single
/// validator every own vote forms the next QC, so one drain carries the
/// transaction's block to its commit (its child and grandchild proposed at
/// once), with one sync before the announcement.
#[test]
fn a_qc_that_makes_this_node_leader_proposes_in_the_same_drain() {
    let key = SecretKey::from_seed([1; 32]);
    let writer = SecretKey::from_seed([2; 32]);
    let g = genesis(&key, &writer);
    let kv = Arc::new(LoggingKv::default());
    let store = NodeStore::new(kv.clone());
    let (mut d, ctx, _trigger) = driver(store.clone(), &key, &g);
    let mut announced = ctx.commits.subscribe();
    d.drain().unwrap();
    assert!(d.due.is_some(), "the only validator leads the first round");
    let tx = register(&g.hash(), &writer, 0);
    ctx.admit(tx.clone(), false).unwrap();
    let before = kv.log.lock().unwrap().len();
    d.propose();
    d.drain().unwrap();
    let log = kv.log.lock().unwrap()[before..].to_vec();
    let syncs = log.iter().filter(|o| matches!(o, Op::Sync)).count();
    let at = store.tx_location(&tx.id()).unwrap().map(|l| l.height);
    assert_eq!(
        at,
        Some(1),
        "the transaction's block committed in this drain"
    );
    assert!(announced.try_recv().unwrap() >= 1, "and was announced");
    assert_eq!(
        syncs, 1,
        "one sync for the proposals and the commit: {log:?}"
    );
}
