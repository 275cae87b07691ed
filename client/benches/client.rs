//! What a verified answer costs a client: pure verification of a lookup and
//! of a commit receipt, and a whole lookup over loopback HTTP against a
//! stand-in node (request, JSON, hex, borsh, certificate and proof checks).

#![allow(missing_docs, unreachable_pub)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use palisade_client::{
    verify_lookup, verify_receipt, Client, ClientConfig, Freshness, TrustedChain,
};
use palisade_crypto::Digest;

use support::fixture::{now_ms, Chain, World, CHAIN};
use support::receipt;
use support::server::{MockNode, Reply};

fn verification(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    let world = World::new();
    let trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    let answer = world.answer("prod", "api", 5);
    let fresh = Freshness {
        max_age: Duration::from_secs(3600),
        ..Freshness::default()
    };
    g.bench_function("lookup_4_validators_3_signatures", |b| {
        b.iter(|| verify_lookup(&trust, "prod", "api", &answer, now_ms(), Some(&fresh)).unwrap())
    });
    let chain = Chain::test();
    let tx = Digest([42; 32]);
    let r = receipt(&chain, tx, 3, "applied");
    g.bench_function("receipt_3_descendants", |b| {
        b.iter(|| verify_receipt(&trust, &tx, &r).unwrap())
    });
    g.finish();
}

fn loopback(c: &mut Criterion) {
    let mut g = c.benchmark_group("loopback");
    let world = World::new();
    let answer = world.answer("prod", "api", 5);
    let node = MockNode::start(move |_| Reply::ok(&answer));
    let config = ClientConfig {
        freshness: Freshness {
            max_age: Duration::from_secs(3600),
            ..Freshness::default()
        },
        ..ClientConfig::default()
    };
    let client = Client::new(world.chain.network(std::slice::from_ref(&node.url)), config).unwrap();
    g.bench_function("verified_lookup_one_node", |b| {
        b.iter(|| client.lookup("prod", "api").unwrap())
    });
    g.finish();
}

/// Against a running network (e.g. `palisade-testnet up`), when
/// `PALISADE_BENCH_NETWORK` names its network file and
/// `PALISADE_BENCH_SERVICE` a registered `namespace/service`
/// (default `demo/echo`, which the testnet's demo registers).
fn real_network(c: &mut Criterion) {
    let Some(path) = std::env::var_os("PALISADE_BENCH_NETWORK") else {
        return;
    };
    let target = std::env::var("PALISADE_BENCH_SERVICE").unwrap_or_else(|_| "demo/echo".into());
    let (ns, svc) = palisade_client::parse_service_path(&target).unwrap();
    let network = palisade_client::load_network_file(path.as_ref()).unwrap();
    let mut g = c.benchmark_group("network");
    let one = Client::new(network.clone(), ClientConfig::default()).unwrap();
    g.bench_function("verified_lookup", |b| {
        b.iter(|| one.lookup(&ns, &svc).unwrap())
    });
    let all = Client::new(
        network.clone(),
        ClientConfig {
            read_quorum: network.nodes.len(),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    g.bench_function("verified_lookup_all_nodes", |b| {
        b.iter(|| all.lookup(&ns, &svc).unwrap())
    });
    g.finish();
}

criterion_group!(benches, verification, loopback, real_network);
criterion_main!(benches);
