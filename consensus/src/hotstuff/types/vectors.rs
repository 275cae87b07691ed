//! Known-answer vectors: the hashes and signing digests of the consensus
//! wire formats are fixed forever (a change breaks every stored block and
//! every peer). Inputs are built from constants only.

use palisade_crypto::{tx_root, BlockInfo, Digest, Signature};

use super::*;
use crate::hotstuff::types::timeout_digest;

fn genesis() -> BlockInfo {
    BlockInfo {
        round: 0,
        height: 0,
        block_id: Digest([7; 32]),
        state_root: Digest([8; 32]),
        tx_root: tx_root(&[]),
        timestamp_ms: 1_000,
        next_validators: None,
        parent_info: Digest::ZERO,
    }
}

fn block() -> Block {
    let g = genesis();
    Block {
        epoch: 0,
        round: 1,
        height: 1,
        parent_qc: QuorumCert::root("kat", Digest([9; 32]), 0, &g, 0),
        payload: b"payload".to_vec(),
        proposer: palisade_crypto::PublicKey([9; 32]),
        timestamp_ms: 2_000,
        state_root: Digest([10; 32]),
        tx_root: tx_root(&[]),
        next_validators: None,
        parent_info: g.hash(),
    }
}

fn hex(d: Digest) -> String {
    d.to_hex()
}

#[test]
fn consensus_hashes_are_fixed() {
    let b = block();
    let vectors = [
        ("root qc data", hex(b.parent_qc.vote_data.hash())),
        ("block id", hex(b.id())),
        ("block info", hex(b.info().hash())),
        ("proposal digest", hex(b.signing_digest("kat"))),
        (
            "timeout digest",
            hex(timeout_digest("kat", &Digest([7; 32]), 0, 5, 3)),
        ),
    ];
    let expected = [
        ("root qc data", KAT[0]),
        ("block id", KAT[1]),
        ("block info", KAT[2]),
        ("proposal digest", KAT[3]),
        ("timeout digest", KAT[4]),
    ];
    let got: Vec<(&str, &str)> = vectors.iter().map(|(n, h)| (*n, h.as_str())).collect();
    assert_eq!(got, expected, "all vectors: {vectors:#?}");
}

#[test]
fn messages_round_trip_and_the_enum_tags_are_fixed() {
    let vote = Vote {
        vote_data: block().parent_qc.vote_data,
        ledger_info: block().parent_qc.ledger_info,
        signature: Signature([3; 64]),
    };
    let messages = [
        Message::Proposal(Proposal {
            block: block(),
            tc: None,
            signature: Signature([1; 64]),
        }),
        Message::Vote(vote),
        Message::BlockRequest(BlockRequest {
            block_id: Digest([4; 32]),
            max_blocks: 3,
        }),
        Message::CommitRequest(CommitRequest {
            epoch: 2,
            from_height: 9,
        }),
    ];
    for (m, tag) in messages.iter().zip([0u8, 1, 4, 6]) {
        let bytes = m.encode();
        assert_eq!(bytes[0], tag, "{}", m.kind());
        assert_eq!(&Message::decode(&bytes).unwrap(), m);
        // Trailing bytes are refused.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Message::decode(&longer).is_err());
    }
}

/// Recorded when the formats were introduced (regression vectors: they pin
/// the encodings; the hashing itself is cross-checked in palisade-crypto).
const KAT: [&str; 5] = [
    "9a7378a8c72830fa923f820f0969e42a7efa4eaa27b5860d6c1151500f70adb1",
    "2c86065dc9251ffc62722d00bb7207f66fb57dc0d2bc878b7a8c834994dd5112",
    "c76886c655a1507a18528ec8c0d60805e9e02e106138082f9d1a039612aba175",
    "25ef457471644433db938c1ac9d12bd46ff1bf037f99f7e3e08e3865476f4ad8",
    "bff0067f5ebc858ef9ed02da7e41b2bcf887feb9c6dea1fb82cf17751748bd1b",
];
