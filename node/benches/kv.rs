//! The newest value of a state key, as the tree store reads it on a value
//! cache miss (`KvTreeStore::get_value_option`): a whole-order reverse seek
//! against a prefix-mode seek answered by the key-hash prefix filter. Most
//! misses under the write bench are keys never written (a registration's
//! new instance), so "absent" is the case that matters.
//!
//! `cargo bench -p palisade-node --bench kv`

use std::sync::Arc;

use criterion::{criterion_main, Criterion};
use palisade_node::storage::{Batch, Cf, KvBackend, RocksKv, VALUE_PREFIX_LEN};

/// Keys written: half flushed to table files, half left in memtables.
const KEYS: u64 = 200_000;

fn key_hash(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_be_bytes()).as_bytes()
}

fn value_key(hash: &[u8; 32], version: u64) -> Vec<u8> {
    let mut k = hash.to_vec();
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn store(dir: &std::path::Path) -> Arc<RocksKv> {
    let kv = RocksKv::open(&dir.join("db")).expect("open");
    for chunk in 0..KEYS / 10_000 {
        let mut b = Batch::new();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            b.put(
                Cf::JmtValues,
                value_key(&key_hash(i), 1 + i % 7),
                vec![0u8; 200],
            );
        }
        kv.write_unlogged(b).expect("write");
        if chunk == KEYS / 20_000 {
            kv.flush_cf(Cf::JmtValues).expect("flush");
        }
    }
    kv
}

fn newest_value(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let kv = store(dir.path());
    let mut g = c.benchmark_group("newest_value");
    let mut n = 0u64;
    let mut absent = || {
        n += 1;
        value_key(&key_hash(KEYS + n), u64::MAX)
    };
    g.bench_function("absent/seek_prev", |b| {
        b.iter(|| {
            let k = absent();
            kv.seek_prev(Cf::JmtValues, &k)
                .expect("seek")
                .filter(|(found, _)| found[..32] == k[..32])
        })
    });
    g.bench_function("absent/seek_prev_in_prefix", |b| {
        b.iter(|| {
            kv.seek_prev_in_prefix(Cf::JmtValues, &absent(), VALUE_PREFIX_LEN)
                .expect("seek")
        })
    });
    let mut m = 0u64;
    let mut present = || {
        m = (m + 7_919) % KEYS;
        value_key(&key_hash(m), u64::MAX)
    };
    g.bench_function("present/seek_prev", |b| {
        b.iter(|| kv.seek_prev(Cf::JmtValues, &present()).expect("seek"))
    });
    g.bench_function("present/seek_prev_in_prefix", |b| {
        b.iter(|| {
            kv.seek_prev_in_prefix(Cf::JmtValues, &present(), VALUE_PREFIX_LEN)
                .expect("seek")
        })
    });
    g.finish();
}

// `criterion_group!` defines an undocumented public function.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::newest_value);
}
criterion_main!(group::benches);
