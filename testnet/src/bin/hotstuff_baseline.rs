//! `hotstuff-baseline`: hotstuff_rs 0.4 with 4 validators in one process
//! (in-memory channels, in-memory store, an app with empty blocks), blocks
//! committed per second healthy and with one validator never started, and
//! the process's CPU. The baseline Palisade's consensus is compared against
//! (DESIGN.md, "Why not hotstuff_rs").
//!
//! Built only with the `baseline-hotstuff-rs` feature:
//! `cargo run --release -p palisade-testnet --features baseline-hotstuff-rs --bin hotstuff-baseline -- [SECS] [VIEW_MS]`
//!
//! The harness follows hotstuff_rs's own integration tests (`tests/common`):
//! a channel network stub, a `HashMap` store, a replica per key.
#![allow(clippy::print_stdout)] // a bench binary prints its figures

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hotstuff_rs::app::{
    App, ProduceBlockRequest, ProduceBlockResponse, ValidateBlockRequest, ValidateBlockResponse,
};
use hotstuff_rs::block_tree::pluggables::{KVGet, KVStore, WriteBatch};
use hotstuff_rs::networking::{messages::Message, network::Network};
use hotstuff_rs::replica::{Configuration, Replica, ReplicaSpec};
use hotstuff_rs::types::crypto_primitives::{CryptoHasher, Digest, SigningKey, VerifyingKey};
use hotstuff_rs::types::data_types::{
    BufferSize, ChainID, CryptoHash, Data, Datum, EpochLength, Power,
};
use hotstuff_rs::types::update_sets::{AppStateUpdates, ValidatorSetUpdates};
use hotstuff_rs::types::validator_set::{ValidatorSet, ValidatorSetState};
use palisade_testnet::bench::procfs::Snapshot;

#[derive(Clone)]
struct MemDb(Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>);

struct MemBatch {
    set: HashMap<Vec<u8>, Vec<u8>>,
    del: HashSet<Vec<u8>>,
}

impl WriteBatch for MemBatch {
    fn new() -> Self {
        MemBatch {
            set: HashMap::new(),
            del: HashSet::new(),
        }
    }
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.del.remove(key);
        self.set.insert(key.to_vec(), value.to_vec());
    }
    fn delete(&mut self, key: &[u8]) {
        self.set.remove(key);
        self.del.insert(key.to_vec());
    }
}

struct MemSnapshot<'a>(MutexGuard<'a, HashMap<Vec<u8>, Vec<u8>>>);

impl KVGet for MemSnapshot<'_> {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).cloned()
    }
}

impl KVGet for MemDb {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.lock().expect("db").get(key).cloned()
    }
}

impl KVStore for MemDb {
    type WriteBatch = MemBatch;
    type Snapshot<'a> = MemSnapshot<'a>;
    fn write(&mut self, wb: MemBatch) {
        let mut map = self.0.lock().expect("db");
        for (k, v) in wb.set {
            map.insert(k, v);
        }
        for k in wb.del {
            map.remove(&k);
        }
    }
    fn clear(&mut self) {
        self.0.lock().expect("db").clear();
    }
    fn snapshot(&self) -> MemSnapshot<'_> {
        MemSnapshot(self.0.lock().expect("db"))
    }
}

#[derive(Clone)]
struct Stub {
    me: VerifyingKey,
    peers: HashMap<VerifyingKey, Sender<(VerifyingKey, Message)>>,
    inbox: Arc<Mutex<Receiver<(VerifyingKey, Message)>>>,
}

impl Network for Stub {
    fn init_validator_set(&mut self, _: ValidatorSet) {}
    fn update_validator_set(&mut self, _: ValidatorSetUpdates) {}
    fn send(&mut self, peer: VerifyingKey, message: Message) {
        if let Some(p) = self.peers.get(&peer) {
            let _ = p.send((self.me, message));
        }
    }
    fn broadcast(&mut self, message: Message) {
        for p in self.peers.values() {
            let _ = p.send((self.me, message.clone()));
        }
    }
    fn recv(&mut self) -> Option<(VerifyingKey, Message)> {
        // Empty or disconnected (a peer never started): nothing to deliver.
        self.inbox.lock().expect("inbox").try_recv().ok()
    }
}

fn network(keys: &[VerifyingKey]) -> Vec<Stub> {
    let mut peers = HashMap::new();
    let inboxes: Vec<_> = keys
        .iter()
        .map(|k| {
            let (tx, rx) = mpsc::channel();
            peers.insert(*k, tx);
            (*k, rx)
        })
        .collect();
    inboxes
        .into_iter()
        .map(|(me, rx)| Stub {
            me,
            peers: peers.clone(),
            inbox: Arc::new(Mutex::new(rx)),
        })
        .collect()
}

/// Empty blocks: consensus alone.
struct EmptyApp;

fn data_hash(data: &Data) -> CryptoHash {
    let mut h = CryptoHasher::new();
    h.update(data.vec()[0].bytes());
    CryptoHash::new(h.finalize().into())
}

impl App<MemDb> for EmptyApp {
    fn produce_block(&mut self, _: ProduceBlockRequest<MemDb>) -> ProduceBlockResponse {
        let data = Data::new(vec![Datum::new(Vec::new())]);
        ProduceBlockResponse {
            data_hash: data_hash(&data),
            data,
            app_state_updates: None,
            validator_set_updates: None,
        }
    }
    fn validate_block(&mut self, r: ValidateBlockRequest<MemDb>) -> ValidateBlockResponse {
        self.validate_block_for_sync(r)
    }
    fn validate_block_for_sync(&mut self, r: ValidateBlockRequest<MemDb>) -> ValidateBlockResponse {
        let block = r.proposed_block();
        if block.data.vec().len() == 1 && block.data_hash == data_hash(&block.data) {
            ValidateBlockResponse::Valid {
                app_state_updates: None,
                validator_set_updates: None,
            }
        } else {
            ValidateBlockResponse::Invalid
        }
    }
}

/// Run 4 validators (the first `started` of them started) for `secs`;
/// returns blocks committed per replica and the process's CPU in cores.
fn run(started: usize, secs: u64, view: Duration) -> (Vec<u64>, f64) {
    let keys: Vec<SigningKey> = (1..=4u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let vks: Vec<VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    let stubs = network(&vks);
    let mut vs_updates = ValidatorSetUpdates::new();
    for vk in &vks {
        vs_updates.insert(*vk, Power::new(1));
    }
    let commits: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let me = [std::process::id()];
    let cpu0 = Snapshot::take(&me);
    let replicas: Vec<Replica<MemDb>> = keys
        .into_iter()
        .zip(stubs)
        .zip(&commits)
        .take(started)
        .map(|((key, stub), count)| {
            let db = MemDb(Arc::new(Mutex::new(HashMap::new())));
            let mut vs = ValidatorSet::new();
            vs.apply_updates(&vs_updates);
            Replica::initialize(
                db.clone(),
                AppStateUpdates::new(),
                ValidatorSetState::new(vs.clone(), vs, None, true),
            );
            let config = Configuration::builder()
                .me(key)
                .chain_id(ChainID::new(0))
                .block_sync_request_limit(10)
                .block_sync_server_advertise_time(Duration::from_secs(10))
                .block_sync_response_timeout(Duration::from_secs(3))
                .block_sync_blacklist_expiry_time(Duration::from_secs(10))
                .block_sync_trigger_min_view_difference(2)
                .block_sync_trigger_timeout(Duration::from_secs(60))
                .progress_msg_buffer_capacity(BufferSize::new(1024))
                .epoch_length(EpochLength::new(50))
                .max_view_time(view)
                .log_events(false)
                .build();
            let count = count.clone();
            ReplicaSpec::builder()
                .app(EmptyApp)
                .network(stub)
                .kv_store(db)
                .configuration(config)
                .on_commit_block(move |_| {
                    count.fetch_add(1, Ordering::Relaxed);
                })
                .build()
                .start()
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let counts: Vec<u64> = commits[..started]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    let cores = cpu0.usage_since(&me).total_cores();
    let _ = t0;
    drop(replicas);
    (counts, cores)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let view_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let view = Duration::from_millis(view_ms);
    println!("hotstuff_rs 0.4, 4 validators in one process, empty blocks, max_view_time {view_ms} ms, {secs} s per run");
    let (healthy, cores_h) = run(4, secs, view);
    let rate = |c: &[u64]| c.iter().copied().max().unwrap_or(0) as f64 / secs as f64;
    println!(
        "healthy:               commits per replica {healthy:?} -> {:.1} blocks/s, process CPU {:.2} cores",
        rate(&healthy),
        cores_h
    );
    let (degraded, cores_d) = run(3, secs, view);
    println!(
        "1 of 4 never started:  commits per replica {degraded:?} -> {:.1} blocks/s, process CPU {:.2} cores",
        rate(&degraded),
        cores_d
    );
    let ratio = if rate(&healthy) > 0.0 {
        rate(&degraded) / rate(&healthy)
    } else {
        0.0
    };
    println!("degraded/healthy: {ratio:.2}");
}
