//! Hot paths of one registration on the wire that the other crates' benches
//! do not cover (certificate and proof verification: crypto/benches;
//! block execution of 1,000 registrations: consensus/benches/state.rs;
//! lookup verification: client/benches):
//!
//! - `write_path/client_sign_and_encode`: what a writer pays before a
//!   registration leaves: sign, borsh, hex, JSON;
//! - `write_path/admission_decode_and_verify`: what a node pays to admit it:
//!   JSON, hex, borsh, `verify_strict` of the signature.
//!
//! `cargo bench -p palisade-testnet --bench wire -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)] // criterion_group! generates undocumented pub fns

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use palisade_client::{parse_endpoint, parse_label, registration, Signer};
use palisade_crypto::api::SubmitRequest;
use palisade_crypto::{Hex, SecretKey, TxBody};

fn body() -> TxBody {
    let mut reg = registration(
        "bench-000001",
        "s3-2",
        "w3-77",
        vec![parse_endpoint("127.0.0.1:8080").unwrap()],
        vec![parse_label("zone=eu-1a").unwrap()],
        600,
    )
    .unwrap();
    reg.version = "1077".into();
    TxBody::Register(reg)
}

/// The genesis the benchmark transactions name.
const GENESIS: palisade_crypto::Digest = palisade_crypto::Digest([5; 32]);

fn write_path(c: &mut Criterion) {
    let signer = Signer::new(SecretKey::from_seed([3; 32]));
    let mut g = c.benchmark_group("write_path");
    g.bench_function("client_sign_and_encode", |b| {
        b.iter(|| {
            let tx = signer.sign("palisade-local", &GENESIS, 1077, body());
            serde_json::to_string(&SubmitRequest {
                tx: Hex::new(&tx),
                wait: true,
            })
            .unwrap()
        })
    });
    let tx = signer.sign("palisade-local", &GENESIS, 1077, body());
    let json = serde_json::to_string(&SubmitRequest {
        tx: Hex::new(&tx),
        wait: true,
    })
    .unwrap();
    g.bench_function("admission_decode_and_verify", |b| {
        b.iter(|| {
            let req: SubmitRequest = serde_json::from_str(black_box(&json)).unwrap();
            let tx = req.tx.decode().unwrap();
            tx.verify("palisade-local", &GENESIS).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, write_path);
criterion_main!(benches);
