//! Hot paths of the crypto crate: signing, strict and batch verification,
//! certificate verification, hashing.
#![allow(missing_docs)] // criterion_group! generates undocumented pub fns

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use palisade_crypto::{
    hash, tx_root, verify_batch, BlockInfo, CommitCertificate, Digest, Domain, LedgerInfo,
    SecretKey, TxInclusionProof, Validator, ValidatorSet,
};

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            SecretKey::from_seed(seed)
        })
        .collect()
}

fn signatures(c: &mut Criterion) {
    let key = &keys(1)[0];
    let digest = hash(Domain::Transaction, b"bench");
    let sig = key.sign_digest(&digest);
    let mut g = c.benchmark_group("ed25519");
    g.bench_function("sign", |b| b.iter(|| key.sign_digest(&digest)));
    g.bench_function("verify_strict", |b| {
        b.iter(|| key.public().verify_digest(&digest, &sig).unwrap())
    });
    for n in [16usize, 64, 256] {
        let items: Vec<_> = keys(n)
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let d = hash(Domain::Transaction, &(i as u64).to_le_bytes());
                (k.public(), d, k.sign_digest(&d))
            })
            .collect();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("verify_batch", n), &items, |b, items| {
            b.iter(|| verify_batch(items).unwrap())
        });
        g.bench_with_input(
            BenchmarkId::new("verify_strict_each", n),
            &items,
            |b, items| {
                b.iter(|| {
                    for (k, d, s) in items {
                        k.verify_digest(d, s).unwrap();
                    }
                })
            },
        );
    }
    g.finish();
}

fn certificates(c: &mut Criterion) {
    let mut g = c.benchmark_group("commit_certificate");
    for n in [4usize, 7, 31, 100] {
        let ks = keys(n);
        let set = ValidatorSet {
            epoch: 0,
            validators: ks
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        };
        let li = LedgerInfo {
            chain_id: "bench".into(),
            genesis_hash: Digest::ZERO,
            epoch: 0,
            commit: Some(BlockInfo {
                round: 1,
                height: 1,
                block_id: Digest([1; 32]),
                state_root: Digest([2; 32]),
                tx_root: Digest([3; 32]),
                timestamp_ms: 1,
                next_validators: None,
                parent_info: Digest::ZERO,
            }),
            consensus_data_hash: Digest([4; 32]),
        };
        let d = li.digest();
        let quorum = set.quorum_power() as usize;
        let cert = CommitCertificate {
            ledger_info: li,
            signatures: ks[..quorum]
                .iter()
                .map(|k| (k.public(), k.sign_digest(&d)))
                .collect(),
        };
        g.bench_with_input(BenchmarkId::new("verify", n), &cert, |b, cert| {
            b.iter(|| cert.verify(&set, "bench").unwrap())
        });
    }
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("blake3");
    let data = [7u8; 64];
    g.bench_function("domain_hash_64B", |b| {
        b.iter(|| hash(Domain::Transaction, &data))
    });
    let ids: Vec<Digest> = (0..1000u32)
        .map(|i| hash(Domain::Transaction, &i.to_le_bytes()))
        .collect();
    g.bench_function("tx_root_1000", |b| b.iter(|| tx_root(&ids)));
    let root = tx_root(&ids);
    let proof = TxInclusionProof::build(&ids, 437);
    g.bench_function("tx_inclusion_verify_1000", |b| {
        b.iter(|| proof.verify(&root, &ids[437]).unwrap())
    });
    g.finish();
}

criterion_group!(benches, signatures, certificates, hashing);
criterion_main!(benches);
