//! Fuzzing on the stable toolchain: proptest drives every target of
//! `palisade_audits::fuzz` with arbitrary bytes and with structured
//! mutations (bit flips, byte overwrites, truncation, splices, insertions)
//! of real encodings from `palisade_audits::corpus`. Case counts are bounded
//! for CI (`FUZZ_CASES`, default 2,000 per target); run longer with e.g.
//! `FUZZ_CASES=200000 cargo nextest run -p palisade-audits --test fuzz`.
//! Failing inputs are shrunk and saved by proptest under
//! `tests/fuzz.proptest-regressions`.

use std::sync::OnceLock;

use palisade_audits::corpus::Corpus;
use palisade_audits::fuzz;
use proptest::prelude::*;

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(Corpus::generate)
}

fn config() -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One structured mutation of `seed`.
#[derive(Debug, Clone)]
enum Edit {
    FlipBit(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Edit::Set(i, v)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Remove(i, n)),
        (any::<usize>(), 1usize..32).prop_map(|(i, n)| Edit::Duplicate(i, n)),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let len = b.len().max(1);
        match e {
            Edit::FlipBit(i, bit) if !b.is_empty() => b[i % len] ^= 1 << bit,
            Edit::Set(i, v) if !b.is_empty() => b[i % len] = *v,
            Edit::Truncate(i) => b.truncate(i % (b.len() + 1)),
            Edit::Insert(i, v) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, v.iter().copied());
            }
            Edit::Remove(i, n) if !b.is_empty() => {
                let at = i % len;
                let end = (at + n).min(b.len());
                b.drain(at..end);
            }
            Edit::Duplicate(i, n) if !b.is_empty() => {
                let at = i % len;
                let end = (at + n).min(b.len());
                let part: Vec<u8> = b[at..end].to_vec();
                b.splice(end..end, part);
            }
            _ => {}
        }
    }
    b
}

/// A mutated member of `seeds` (index and edits drawn by proptest).
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = (usize, Vec<u8>)> {
    let n = seeds.len();
    (0..n, prop::collection::vec(edit(), 1..4))
        .prop_map(move |(i, edits)| (i, apply(&seeds[i], &edits)))
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

#[test]
fn corpus_is_real() {
    let c = corpus();
    assert!(c.messages.len() >= 10, "{} messages", c.messages.len());
    assert!(c.certificates.len() >= 6);
    for (bytes, cert) in &c.certificates {
        cert.verify(&c.validators, palisade_audits::corpus::CHAIN_ID)
            .expect("corpus certificate verifies");
        fuzz::certificate(bytes, &c.validators, cert);
    }
    for (bytes, tx) in &c.transactions {
        tx.verify(palisade_audits::corpus::CHAIN_ID, &c.genesis.block_id)
            .expect("corpus tx verifies");
        fuzz::transaction(bytes, tx);
    }
    for m in &c.messages {
        palisade_consensus::hotstuff::Message::decode(m).expect("corpus message decodes");
    }
    palisade_crypto::NetworkFile::from_json(&c.network_json).expect("corpus network file parses");
    let (txs, receipts) = c.proof_roots;
    for ((bytes, proof), (id, code)) in c.inclusion_proofs.iter().zip(&c.receipts) {
        proof
            .verify_receipt(&receipts, id, *code)
            .expect("corpus receipt proof verifies");
        fuzz::inclusion_proof(bytes, &txs, &receipts, id, *code, proof);
    }
    for (_, h) in &c.heartbeats {
        h.verify().expect("corpus heartbeat verifies");
    }
    for (_, r) in &c.silence_reports {
        assert!(r.report.well_formed());
        r.verify().expect("corpus silence report verifies");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        fuzz::key_file(&dir.path().join("k"), c.key_file.as_bytes()),
        Some(c.key.public()),
        "the corpus key file loads"
    );
}

/// Found by `fuzz_hex_text`: a key with a trailing tab parses (keys are
/// trimmed); the target's canonicality check now allows exactly that.
#[test]
fn key_hex_with_surrounding_whitespace_is_the_key() {
    let hex = corpus().key.public().to_hex();
    for text in [format!("{hex}\t"), format!(" {hex}\n")] {
        fuzz::hex_text(&text);
    }
}

/// A fresh path for each key-file case (proptest runs cases in one thread).
fn key_path(dir: &std::path::Path) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    dir.join(format!("k{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_consensus_message(b in prop_oneof![bytes(), mutated(corpus().messages.clone()).prop_map(|(_, b)| b)]) {
        fuzz::consensus_message(&b);
    }

    #[test]
    fn fuzz_replica_input((_, b) in mutated(corpus().messages.clone())) {
        let c = corpus();
        let mut replica = c.replica(1_000);
        fuzz::replica_input(&mut replica, 1_050, c.key.public(), &b);
    }

    #[test]
    fn fuzz_certificate((i, b) in mutated(corpus().certificates.iter().map(|(b, _)| b.clone()).collect())) {
        let c = corpus();
        fuzz::certificate(&b, &c.validators, &c.certificates[i].1);
    }

    #[test]
    fn fuzz_block_info(b in prop_oneof![bytes(), mutated(corpus().block_infos.clone()).prop_map(|(_, b)| b)]) {
        fuzz::block_info(&b);
    }

    #[test]
    fn fuzz_transaction((i, b) in mutated(corpus().transactions.iter().map(|(b, _)| b.clone()).collect())) {
        fuzz::transaction(&b, &corpus().transactions[i].1);
    }

    #[test]
    fn fuzz_block_payload(b in prop_oneof![bytes(), mutated(corpus().transactions.iter().map(|(b, _)| {
        // A payload is a borsh list of transactions: seed with one-element lists.
        let mut p = 1u32.to_le_bytes().to_vec();
        p.extend_from_slice(b);
        p
    }).collect()).prop_map(|(_, b)| b)]) {
        fuzz::block_payload(&b);
    }

    #[test]
    fn fuzz_lookup_and_proof(b in bytes()) {
        fuzz::lookup_and_proof(&b);
    }

    #[test]
    fn fuzz_network_file((_, b) in mutated(vec![corpus().network_json.clone().into_bytes()])) {
        fuzz::network_file(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn fuzz_api_json(b in prop_oneof![bytes(), mutated(corpus().api_json.iter().map(|s| s.clone().into_bytes()).collect()).prop_map(|(_, b)| b)]) {
        fuzz::api_json(&b);
    }

    #[test]
    fn fuzz_inclusion_proof((i, b) in mutated(corpus().inclusion_proofs.iter().map(|(b, _)| b.clone()).collect())) {
        let c = corpus();
        let (id, code) = c.receipts[i];
        fuzz::inclusion_proof(&b, &c.proof_roots.0, &c.proof_roots.1, &id, code, &c.inclusion_proofs[i].1);
    }

    #[test]
    fn fuzz_heartbeat((i, b) in mutated(corpus().heartbeats.iter().map(|(b, _)| b.clone()).collect())) {
        fuzz::heartbeat(&b, &corpus().heartbeats[i].1);
    }

    #[test]
    fn fuzz_silence_report((i, b) in mutated(corpus().silence_reports.iter().map(|(b, _)| b.clone()).collect())) {
        fuzz::silence_report(&b, &corpus().silence_reports[i].1);
    }

    #[test]
    fn fuzz_hex_text((_, b) in mutated(corpus().hex.iter().map(|s| s.clone().into_bytes()).collect())) {
        fuzz::hex_text(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn fuzz_key_file(b in prop_oneof![bytes(), mutated(vec![corpus().key_file.clone().into_bytes()]).prop_map(|(_, b)| b)]) {
        static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
        let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
        fuzz::key_file(&key_path(dir.path()), &b);
    }
}
