//! Scaling of the registry state machine, driven in-process (no network):
//! the real [`RegistryExecutor`] over the in-memory [`MemStore`], filled with
//! signed registrations in blocks of up to 4,096 (the default block bound),
//! up to each asked size. At every size it measures:
//!
//! - memory per instance: growth of this process's RSS since the empty
//!   store, divided by the instances (MemStore keeps every tree version, so
//!   this includes superseded tree nodes; the node's RocksDB store does not
//!   keep them in memory);
//! - a lookup answer's size (record of 20 instances + proof) and the proof alone;
//! - lookup latency (`StateReader::service`: read + prove) and the
//!   client's check of it (proof against the root + decode; the certificate
//!   check is size-independent and benched in crypto);
//! - block execution time of 1,000 more registrations (signature checks
//!   included) and the commit of that block.
//!
//! Layout: 20 instances per service, 1,000 services per namespace, one
//! enrolled identity per 5 services (100 instances): a realistic directory,
//! many small services rather than one huge one, with default parameters.
//! (An identity's record lists the instances it owns and is cloned for every
//! transaction it signs, so a layout of one identity per 20,000 instances
//! made execution O(instances owned) per registration: see BENCHMARKS.md.)

use std::time::{Duration, Instant};

use palisade_consensus::executor::{ExecutionContext, Executor};
use palisade_consensus::state::{
    encode_payload, Authority, Genesis, MemStore, RegistryExecutor, StateReader, TxOutcome,
};
use palisade_crypto::{
    encode, instance_record_hash, Digest, Endpoint, Enrollment, Label, Registration, Role,
    SecretKey, ServiceIndex, ServiceRecord, SignedTransaction, StateKey, Transaction, TxBody,
    Validator,
};

use crate::bench::procfs::rss_bytes;
use crate::bench::stats::Latencies;

const PER_SERVICE: u64 = 20;
const SERVICES_PER_NS: u64 = 1_000;
const PER_NS: u64 = PER_SERVICE * SERVICES_PER_NS;
const PER_IDENTITY: u64 = 100;
const BUILD_BLOCK: u64 = 4_096;
const MEASURE_BLOCK: u64 = 1_000;
const LOOKUPS: u64 = 2_000;
const CHAIN: &str = "scale";

/// Figures at one size.
#[derive(Debug, Clone)]
pub struct ScalePoint {
    /// Registered instances.
    pub instances: u64,
    /// Time to build up to here since the previous point.
    pub build: Duration,
    /// RSS growth per instance since the empty store.
    pub bytes_per_instance: f64,
    /// Tree nodes in the store.
    pub tree_nodes: usize,
    /// Encoded lookup answer (record + proof).
    pub lookup_bytes: usize,
    /// Encoded proof alone.
    pub proof_bytes: usize,
    /// `StateReader::service` latency.
    pub lookup: Latencies,
    /// Proof check + record decode latency.
    pub verify: Latencies,
    /// Execution of a block of 1,000 registrations (per block).
    pub execute: Latencies,
    /// Commit of that block.
    pub commit: Latencies,
}

fn identity_key(id: u64) -> SecretKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&id.to_le_bytes());
    seed[31] = 0x5c;
    SecretKey::from_seed(seed)
}

fn names(i: u64) -> (String, String, String) {
    let (ns, j) = (i / PER_NS, i % PER_NS);
    (
        format!("ns{ns}"),
        format!("svc{}", j / PER_SERVICE),
        format!("i{}", j % PER_SERVICE),
    )
}

fn registration_tx(i: u64, keys: &[SecretKey], genesis_hash: &Digest) -> SignedTransaction {
    let (ns, service, instance) = names(i);
    let key = &keys[(i / PER_IDENTITY) as usize];
    Transaction {
        chain_id: CHAIN.into(),
        genesis_hash: *genesis_hash,
        signer: key.public(),
        sequence: i % PER_IDENTITY,
        body: TxBody::Register(Registration {
            namespace: ns,
            service,
            instance,
            endpoints: vec![Endpoint {
                protocol: "tcp".into(),
                host: format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                port: 8080,
                weight: 1,
            }],
            labels: vec![Label {
                key: "zone".into(),
                value: "eu-1a".into(),
            }],
            version: "1.4.2".into(),
            ttl_secs: 600,
            probe: None,
        }),
    }
    .sign(key)
}

/// Sign registrations `from..to` on two threads.
fn sign_range(
    from: u64,
    to: u64,
    keys: &[SecretKey],
    genesis_hash: &Digest,
) -> Vec<SignedTransaction> {
    let mid = from + (to - from) / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            (from..mid)
                .map(|i| registration_tx(i, keys, genesis_hash))
                .collect::<Vec<_>>()
        });
        let b: Vec<_> = (mid..to)
            .map(|i| registration_tx(i, keys, genesis_hash))
            .collect();
        let mut a = a.join().expect("signing thread");
        a.extend(b);
        a
    })
}

struct Builder {
    exec: RegistryExecutor<MemStore>,
    keys: Vec<SecretKey>,
    genesis_hash: Digest,
    height: u64,
    next: u64,
}

impl Builder {
    fn new(max: u64) -> Result<Self, String> {
        let validator = SecretKey::from_seed([1; 32]);
        let identities = max.div_ceil(PER_IDENTITY) + 1;
        let keys: Vec<SecretKey> = (0..identities).map(identity_key).collect();
        let mut genesis = Genesis::new(
            CHAIN,
            1_000,
            vec![Validator {
                key: validator.public(),
                power: 1,
            }],
            Authority {
                members: vec![validator.public()],
                threshold: 1,
            },
        );
        genesis.enrollments = keys
            .iter()
            .enumerate()
            .map(|(n, k)| Enrollment {
                identity: k.public(),
                namespaces: vec![format!("ns{}", n as u64 * PER_IDENTITY / PER_NS)],
                role: Role::Service,
            })
            .collect();
        let exec = RegistryExecutor::open(MemStore::new(), &genesis).map_err(|e| e.to_string())?;
        Ok(Builder {
            exec,
            keys,
            genesis_hash: genesis.hash(),
            height: 0,
            next: 0,
        })
    }

    /// Execute and commit the next `count` registrations as one block;
    /// returns (execute, commit) times.
    fn block(&mut self, count: u64) -> Result<(Duration, Duration), String> {
        let txs = sign_range(self.next, self.next + count, &self.keys, &self.genesis_hash);
        let payload = encode_payload(&txs);
        self.height += 1;
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&self.height.to_le_bytes());
        let ctx = ExecutionContext {
            parent_id: self.exec.committed().0,
            block_id: Digest(id),
            height: self.height,
            epoch: 0,
            timestamp_ms: 1_000 + self.height * 100,
        };
        let t0 = Instant::now();
        self.exec
            .execute(&ctx, &payload)
            .map_err(|e| e.to_string())?;
        let executed = t0.elapsed();
        if let Some(r) = self.exec.speculative_receipts(&ctx.block_id) {
            if let Some(bad) = r.receipts.iter().find(|r| r.outcome != TxOutcome::Applied) {
                return Err(format!("registration refused: {:?}", bad.outcome));
            }
        }
        let t1 = Instant::now();
        self.exec.commit(&ctx.block_id).map_err(|e| e.to_string())?;
        let committed = t1.elapsed();
        self.next += count;
        Ok((executed, committed))
    }
}

/// Build up to each of `sizes` (ascending) and measure; `progress` is told
/// of every point as it is measured.
pub fn run(
    sizes: &[u64],
    mut progress: impl FnMut(&ScalePoint),
) -> Result<Vec<ScalePoint>, String> {
    let max = sizes.iter().copied().max().unwrap_or(0);
    let me = std::process::id();
    let rss0 = rss_bytes(me).unwrap_or(0);
    let mut b = Builder::new(max + 10 * MEASURE_BLOCK)?;
    let mut points = Vec::new();
    for &size in sizes {
        let t = Instant::now();
        while b.next < size {
            let count = BUILD_BLOCK.min(size - b.next);
            b.block(count)?;
        }
        let build = t.elapsed();
        let rss = rss_bytes(me).unwrap_or(0);
        let bytes_per_instance = rss.saturating_sub(rss0) as f64 / size.max(1) as f64;
        let tree_nodes = b.exec.store().node_count();

        let reader: StateReader<'_> = b.exec.reader();
        let root = reader.root().map_err(|e| e.to_string())?;
        let services = size / PER_SERVICE;
        let (mut lookup, mut verify) = (Latencies::new(), Latencies::new());
        let mut sizes_seen = (0, 0);
        for k in 0..LOOKUPS.min(services.max(1)) {
            // Spread over the whole directory.
            let i = (k * 7_919 % services.max(1)) * PER_SERVICE;
            let (ns, service, _) = names(i);
            let t0 = Instant::now();
            let answer = reader.service(&ns, &service).map_err(|e| e.to_string())?;
            lookup.push(t0.elapsed());
            let key = StateKey::Service {
                namespace: ns.clone(),
                service: service.clone(),
            };
            let t1 = Instant::now();
            let index = &answer.lookup;
            index
                .proof
                .verify(&root, &key, index.value.as_deref())
                .map_err(|e| e.to_string())?;
            let index: ServiceIndex =
                palisade_crypto::decode(index.value.as_deref().ok_or("service absent")?)
                    .map_err(|e| e.to_string())?;
            let mut record = ServiceRecord {
                namespace: index.namespace.clone(),
                service: index.service.clone(),
                instances: Vec::new(),
            };
            for (entry, bytes) in index.instances.iter().zip(&answer.instances) {
                if instance_record_hash(bytes) != entry.record_hash {
                    return Err(format!("{ns}/{service}: record hash mismatch"));
                }
                record
                    .instances
                    .push(palisade_crypto::decode(bytes).map_err(|e| e.to_string())?);
            }
            verify.push(t1.elapsed());
            if record.instances.len() as u64 != PER_SERVICE {
                return Err(format!(
                    "{ns}/{service}: {} instances",
                    record.instances.len()
                ));
            }
            if k == 0 {
                let records: usize = answer.instances.iter().map(Vec::len).sum();
                sizes_seen = (
                    encode(&answer.lookup).len() + records,
                    encode(&answer.lookup.proof).len(),
                );
            }
        }
        let (mut execute, mut commit) = (Latencies::new(), Latencies::new());
        for _ in 0..3 {
            let (e, c) = b.block(MEASURE_BLOCK)?;
            execute.push(e);
            commit.push(c);
        }
        let point = ScalePoint {
            instances: size,
            build,
            bytes_per_instance,
            tree_nodes,
            lookup_bytes: sizes_seen.0,
            proof_bytes: sizes_seen.1,
            lookup,
            verify,
            execute,
            commit,
        };
        progress(&point);
        points.push(point);
    }
    Ok(points)
}

/// The points as a markdown table.
pub fn table(points: &[ScalePoint]) -> String {
    let mut out = String::from(
        "| instances | build (s) | RSS/instance (B) | tree nodes | lookup answer (B) | proof (B) | lookup p50/p99 (µs) | client check p50 (µs) | execute 1,000 regs p50 (ms) | commit p50 (ms) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let us = |l: &Latencies, p: f64| {
        l.percentile_ms(p)
            .map_or("-".into(), |v| format!("{:.0}", v * 1000.0))
    };
    for p in points {
        out.push_str(&format!(
            "| {} | {:.1} | {:.0} | {} | {} | {} | {}/{} | {} | {:.1} | {:.1} |\n",
            p.instances,
            p.build.as_secs_f64(),
            p.bytes_per_instance,
            p.tree_nodes,
            p.lookup_bytes,
            p.proof_bytes,
            us(&p.lookup, 50.0),
            us(&p.lookup, 99.0),
            us(&p.verify, 50.0),
            p.execute.p50().unwrap_or(0.0),
            p.commit.p50().unwrap_or(0.0),
        ));
    }
    out
}
