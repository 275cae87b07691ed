//! Benches of the registry state machine.
//!
//! - `map_update/{10k,100k,1M}`: one block of 1,000 writes (fresh keys and
//!   overwrites, half each) over a committed tree of that many entries;
//!   throughput is per write. Each tree is built once per size.
//! - `proof/{prove,verify}` at 100k and 1M entries (proof sizes are printed
//!   once per size).
//! - `block/execute_1000_registrations`: a whole block of 1,000 signed
//!   registrations through the executor (signature checks included).
//! - `chain/block_of_32_registrations`: a chain of small blocks, as a loaded
//!   node runs them: 32 identities that already own 150 instances each, one
//!   registration per identity per block; each iteration executes and
//!   commits one block (signing is outside the timing). Throughput is per
//!   registration.
//!
//! - `chain/block_of_32_churn_owning_900`: the same chain where each of the
//!   32 identities owns 900 instances (near the default limit of 1,024);
//!   each block registers one new instance per identity and deregisters
//!   its oldest, so the count stays at 900 however many iterations run.
//!   Throughput is per transaction (64 per block). What a write costs when
//!   its identity already owns many instances (issue 15: the owner index).
//!
//! `cargo bench -p palisade-consensus --bench state -- --warm-up-time 1 --measurement-time 3`

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use palisade_consensus::executor::{ExecutionContext, Executor};
use palisade_consensus::state::{
    compute_update, encode_payload, Authority, BlockReceipts, CommitMeta, Genesis, MemStore,
    RegistryExecutor, StateCommit, StateReader, StateStore, TxOutcome,
};
use palisade_crypto::{
    encode, Digest, Endpoint, Enrollment, Label, PublicKey, Registration, Role, SecretKey,
    StateKey, Transaction, TxBody, Validator,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SIZES: &[(&str, u64)] = &[("10k", 10_000), ("100k", 100_000), ("1M", 1_000_000)];
const BLOCK_WRITES: u64 = 1_000;
const BUILD_CHUNK: u64 = 100_000;

fn entry_key(i: u64) -> StateKey {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&i.to_le_bytes());
    StateKey::Account {
        key: PublicKey(key),
    }
}

fn commit(store: &MemStore, height: u64, writes: Vec<(StateKey, Option<Vec<u8>>)>) -> Digest {
    let (root, tree) = compute_update(store, height, writes).expect("update computes");
    let receipts = BlockReceipts {
        height,
        tx_root: Digest::ZERO,
        receipts: Vec::new(),
    };
    store
        .write_commit(&StateCommit {
            meta: CommitMeta {
                block_id: Digest([height as u8; 32]),
                height,
                epoch: 0,
                timestamp_ms: height,
                state_root: root,
                tx_root: Digest::ZERO,
            },
            tree,
            receipts,
            changed: Vec::new(),
        })
        .expect("commit stores");
    root
}

/// A committed tree of `n` entries (values of 8 bytes), built in chunks.
fn tree_of(n: u64) -> (MemStore, u64, Digest) {
    let store = MemStore::new();
    let mut height = 0;
    let mut root = Digest::ZERO;
    let mut next = 0;
    while next < n {
        let end = (next + BUILD_CHUNK).min(n);
        let writes = (next..end)
            .map(|i| (entry_key(i), Some(i.to_le_bytes().to_vec())))
            .collect();
        root = commit(&store, height, writes);
        height += 1;
        next = end;
    }
    (store, height - 1, root)
}

fn block_writes(n: u64, rng: &mut ChaCha8Rng) -> Vec<(StateKey, Option<Vec<u8>>)> {
    (0..BLOCK_WRITES)
        .map(|j| {
            let i = if j % 2 == 0 {
                rng.gen_range(0..n)
            } else {
                n + rng.gen_range(0..n)
            };
            (entry_key(i), Some(rng.gen::<[u8; 16]>().to_vec()))
        })
        .collect()
}

fn map_update(c: &mut Criterion) {
    let mut group = c.benchmark_group("map_update");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BLOCK_WRITES));
    for (name, n) in SIZES {
        let (store, height, _) = tree_of(*n);
        let mut rng = ChaCha8Rng::seed_from_u64(*n);
        group.bench_function(*name, |b| {
            b.iter_batched(
                || block_writes(*n, &mut rng),
                |writes| compute_update(&store, height + 1, writes).expect("update computes"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

#[allow(clippy::print_stdout)] // A bench report: proof sizes are not timings.
fn report_proof_size(name: &str, store: &MemStore, height: u64, n: u64) {
    let reader = StateReader::at(store, height);
    let mut sizes: Vec<usize> = (0..200u64)
        .map(|i| encode(&reader.prove(&entry_key(i * (n / 200))).unwrap().1).len())
        .collect();
    sizes.sort();
    let (absent_value, absent) = reader.prove(&entry_key(n + 7)).unwrap();
    assert!(absent_value.is_none());
    println!(
        "proof size at {name}: median {} B, max {} B (inclusion); absence {} B",
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1],
        encode(&absent).len()
    );
}

fn proofs(c: &mut Criterion) {
    let mut group = c.benchmark_group("proof");
    for (name, n) in &SIZES[1..] {
        let (store, height, root) = tree_of(*n);
        report_proof_size(name, &store, height, *n);
        let reader = StateReader::at(&store, height);
        let key = entry_key(n / 3);
        group.bench_function(format!("prove_{name}"), |b| {
            b.iter(|| reader.prove(black_box(&key)).unwrap())
        });
        let (value, proof) = reader.prove(&key).unwrap();
        group.bench_function(format!("verify_{name}"), |b| {
            b.iter(|| {
                proof
                    .verify(black_box(&root), &key, value.as_deref())
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn registration(signer: usize, i: u64) -> Registration {
    Registration {
        namespace: "bench".into(),
        service: format!("svc{}", i % 20),
        instance: format!("s{signer}-i{i}"),
        endpoints: vec![Endpoint {
            protocol: "http".into(),
            host: format!("10.0.{}.{}", signer, i % 250),
            port: 8080,
            weight: 1,
        }],
        labels: vec![Label {
            key: "zone".into(),
            value: "eu-1a".into(),
        }],
        version: "1.4.2".into(),
        ttl_secs: 30,
        probe: None,
    }
}

/// A one-validator genesis enrolling `n` service identities in namespace
/// `bench`, and their keys.
fn bench_genesis(n: u8) -> (Genesis, Vec<SecretKey>) {
    let validator = SecretKey::from_seed([1; 32]);
    let signers: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::from_seed([100 + i; 32]))
        .collect();
    let mut genesis = Genesis::new(
        "bench",
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
    genesis.enrollments = signers
        .iter()
        .map(|k| Enrollment {
            identity: k.public(),
            namespaces: vec!["bench".into()],
            role: Role::Service,
        })
        .collect();
    (genesis, signers)
}

fn block_execution(c: &mut Criterion) {
    let (genesis, signers) = bench_genesis(10);
    let genesis_hash = genesis.hash();
    let txs: Vec<_> = (0..1_000u64)
        .map(|i| {
            let s = (i % 10) as usize;
            Transaction {
                chain_id: "bench".into(),
                genesis_hash,
                signer: signers[s].public(),
                sequence: i / 10,
                body: TxBody::Register(registration(s, i)),
            }
            .sign(&signers[s])
        })
        .collect();
    let payload = encode_payload(&txs);
    let fresh = || RegistryExecutor::open(MemStore::new(), &genesis).unwrap();
    let context = |exec: &RegistryExecutor<MemStore>| ExecutionContext {
        parent_id: exec.committed().0,
        block_id: Digest([7; 32]),
        height: 1,
        epoch: 0,
        timestamp_ms: 2_000,
    };
    // Every registration must apply, or the bench measures rejections.
    let mut check = fresh();
    let ctx = context(&check);
    check.execute(&ctx, &payload).unwrap();
    let receipts = check.speculative_receipts(&ctx.block_id).unwrap();
    assert!(receipts
        .receipts
        .iter()
        .all(|r| r.outcome == TxOutcome::Applied));
    let mut group = c.benchmark_group("block");
    group.sample_size(10);
    group.throughput(Throughput::Elements(txs.len() as u64));
    group.bench_function("execute_1000_registrations", |b| {
        b.iter_batched(
            || {
                let exec = fresh();
                let ctx = context(&exec);
                (exec, ctx)
            },
            |(mut exec, ctx)| exec.execute(&ctx, &payload).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The context of the block at `height` on top of what `exec` committed.
fn next_context(exec: &RegistryExecutor<MemStore>, height: u64) -> ExecutionContext {
    ExecutionContext {
        parent_id: exec.committed().0,
        block_id: Digest([height as u8; 32]),
        height,
        epoch: 0,
        timestamp_ms: 1_000 + height,
    }
}

fn chain_of_small_blocks(c: &mut Criterion) {
    const SIGNERS: usize = 32;
    const OWNED: u64 = 150;
    let (genesis, signers) = bench_genesis(SIGNERS as u8);
    let genesis_hash = genesis.hash();
    let mut exec = RegistryExecutor::open(MemStore::new(), &genesis).unwrap();
    let mut next = vec![0u64; SIGNERS];
    let mut height = 0;
    // One block of one registration per signer, per signer and instance.
    let mut block = |exec: &mut RegistryExecutor<MemStore>, per_signer: u64| {
        let mut txs = Vec::new();
        for (s, key) in signers.iter().enumerate() {
            for _ in 0..per_signer {
                txs.push(
                    Transaction {
                        chain_id: "bench".into(),
                        genesis_hash,
                        signer: key.public(),
                        sequence: next[s],
                        body: TxBody::Register(Registration {
                            // Each signer's own services, within the
                            // per-service bound.
                            service: format!("svc{s}-{}", next[s] % 8),
                            ..registration(s, next[s])
                        }),
                    }
                    .sign(key),
                );
                next[s] += 1;
            }
        }
        height += 1;
        (next_context(exec, height), encode_payload(&txs))
    };
    for _ in 0..(OWNED / 50) {
        let (ctx, payload) = block(&mut exec, 50);
        exec.execute(&ctx, &payload).unwrap();
        exec.commit(&ctx.block_id).unwrap();
    }
    let mut group = c.benchmark_group("chain");
    group.sample_size(20);
    group.throughput(Throughput::Elements(SIGNERS as u64));
    group.bench_function("block_of_32_registrations", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let (ctx, payload) = block(&mut exec, 1);
                let started = std::time::Instant::now();
                exec.execute(&ctx, &payload).unwrap();
                exec.commit(&ctx.block_id).unwrap();
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

fn chain_churn_owning_many(c: &mut Criterion) {
    const SIGNERS: usize = 32;
    const OWNED: u64 = 900;
    let (genesis, signers) = bench_genesis(SIGNERS as u8);
    let genesis_hash = genesis.hash();
    let mut exec = RegistryExecutor::open(MemStore::new(), &genesis).unwrap();
    // Per signer: next sequence, next instance to register, oldest live.
    let mut seq = [0u64; SIGNERS];
    let mut newest = [0u64; SIGNERS];
    let mut oldest = [0u64; SIGNERS];
    let mut height = 0;
    let instance = |s: usize, i: u64| Registration {
        service: format!("svc{s}-{}", i % 8),
        ..registration(s, i)
    };
    // A block where each signer registers `add` instances and deregisters
    // its `drop` oldest.
    let mut block = |exec: &mut RegistryExecutor<MemStore>, add: u64, drop: u64| {
        let mut txs = Vec::new();
        for (s, key) in signers.iter().enumerate() {
            let mut bodies = Vec::new();
            for _ in 0..add {
                bodies.push(TxBody::Register(instance(s, newest[s])));
                newest[s] += 1;
            }
            for _ in 0..drop {
                let r = instance(s, oldest[s]);
                bodies.push(TxBody::Deregister {
                    namespace: r.namespace,
                    service: r.service,
                    instance: r.instance,
                });
                oldest[s] += 1;
            }
            for body in bodies {
                txs.push(
                    Transaction {
                        chain_id: "bench".into(),
                        genesis_hash,
                        signer: key.public(),
                        sequence: seq[s],
                        body,
                    }
                    .sign(key),
                );
                seq[s] += 1;
            }
        }
        height += 1;
        (next_context(exec, height), encode_payload(&txs))
    };
    for _ in 0..(OWNED / 100) {
        let (ctx, payload) = block(&mut exec, 100, 0);
        exec.execute(&ctx, &payload).unwrap();
        exec.commit(&ctx.block_id).unwrap();
    }
    // Every churn transaction must apply, or the bench measures rejections.
    let (ctx, payload) = block(&mut exec, 1, 1);
    exec.execute(&ctx, &payload).unwrap();
    let receipts = exec.speculative_receipts(&ctx.block_id).unwrap();
    assert!(receipts
        .receipts
        .iter()
        .all(|r| r.outcome == TxOutcome::Applied));
    exec.commit(&ctx.block_id).unwrap();
    let mut group = c.benchmark_group("chain");
    group.sample_size(20);
    group.throughput(Throughput::Elements(2 * SIGNERS as u64));
    group.bench_function("block_of_32_churn_owning_900", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let (ctx, payload) = block(&mut exec, 1, 1);
                let started = std::time::Instant::now();
                exec.execute(&ctx, &payload).unwrap();
                exec.commit(&ctx.block_id).unwrap();
                spent += started.elapsed();
            }
            spent
        })
    });
    group.finish();
}

// `criterion_group!` defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = map_update, proofs, block_execution, chain_of_small_blocks, chain_churn_owning_many
    }
}
criterion_main!(group::benches);
