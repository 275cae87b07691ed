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
    /// Every write so far persisted (memtables flushed).
    Flush,
    /// Waiters were told that `height` committed.
    Announce(u64),
}

/// What a crash after `log` leaves, as RocksDB recovers it: the table files
/// of the last flush (every write before it, logged or not), then the WAL's
/// writes after it that reached the OS (kill -9: all; power loss: those
/// before the last sync). Unlogged writes after the flush lived in the
/// process's memtables only: lost. Besides the flushes in the log (the
/// store's own), RocksDB may flush at any write (a full memtable): `flushed`
/// says it did after `log[..flushed]`.
fn survivors(log: &[Op], flushed: usize, power_loss: bool) -> Vec<Batch> {
    let flushed = log
        .iter()
        .rposition(|o| matches!(o, Op::Flush))
        .map_or(0, |p| p + 1)
        .max(flushed);
    let wal_end = if power_loss {
        log.iter()
            .rposition(|o| matches!(o, Op::Sync))
            .map_or(0, |p| p + 1)
            .max(flushed)
    } else {
        log.len()
    };
    log.iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Op::Write(b) if i < wal_end => Some(b.clone()),
            Op::Unlogged(b) if i < flushed => Some(b.clone()),
            _ => None,
        })
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
    fn flush(&self) -> Result<(), StorageError> {
        self.push(Op::Flush);
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
    for _ in 0..(4 * blocks + 16) {
        if store.committed_height().unwrap() >= blocks {
            break;
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
