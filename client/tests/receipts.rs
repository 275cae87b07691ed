//! Commit receipts: inclusion, the chain of block infos, the certificate.

use palisade_client::{verify_receipt, ClientError, TrustedChain, VERIFIED_CERTS_KEPT};
use palisade_crypto::{BlockInfo, CommitCertificate, Digest, Hex, TxInclusionProof};

use crate::support::fixture::{block, Chain, CHAIN};
use crate::support::receipt;

fn trust(chain: &Chain) -> TrustedChain {
    TrustedChain::new(CHAIN, chain.set.clone()).unwrap()
}

const TX: Digest = Digest([42; 32]);

#[test]
fn receipt_with_descendants_verifies() {
    let chain = Chain::test();
    for descendants in [0, 1, 3] {
        let r = receipt(&chain, TX, descendants, "applied");
        let v = verify_receipt(&trust(&chain), &TX, &r).unwrap();
        assert_eq!(v.block.height, 10);
        assert_eq!(v.certified_height, 10 + descendants as u64);
        assert!(v.applied());
    }
}

#[test]
fn receipt_for_another_transaction_is_refused() {
    let chain = Chain::test();
    let r = receipt(&chain, Digest([43; 32]), 1, "applied");
    assert!(matches!(
        verify_receipt(&trust(&chain), &TX, &r),
        Err(ClientError::ForgedReceipt(_))
    ));
}

#[test]
fn inclusion_proof_of_another_transaction_is_refused() {
    let chain = Chain::test();
    let mut r = receipt(&chain, TX, 1, "applied");
    // The block holds other transactions; the proof shows one of them.
    let ids = vec![Digest([1; 32]), Digest([2; 32])];
    let mut block: BlockInfo = r.block.decode().unwrap();
    block.tx_root = palisade_crypto::tx_root(&ids);
    r.inclusion = Hex::new(&TxInclusionProof::build(&ids, 1));
    r.block = Hex::new(&block);
    let err = verify_receipt(&trust(&chain), &TX, &r).unwrap_err();
    assert!(
        matches!(err, ClientError::ForgedReceipt(ref m) if m.contains("inclusion")),
        "{err}"
    );
}

#[test]
fn broken_block_chain_is_refused() {
    let chain = Chain::test();
    let mut r = receipt(&chain, TX, 2, "applied");
    // Replace the receipt's block by another one at the same height: its
    // child no longer names it.
    let mut block: BlockInfo = r.block.decode().unwrap();
    block.block_id = Digest([77; 32]);
    r.block = Hex::new(&block);
    let err = verify_receipt(&trust(&chain), &TX, &r).unwrap_err();
    assert!(
        matches!(err, ClientError::ForgedReceipt(ref m) if m.contains("does not extend")),
        "{err}"
    );
}

#[test]
fn certificate_for_another_block_is_refused() {
    let chain = Chain::test();
    let mut r = receipt(&chain, TX, 1, "applied");
    let other = receipt(&chain, TX, 2, "applied");
    r.certificate = other.certificate;
    let err = verify_receipt(&trust(&chain), &TX, &r).unwrap_err();
    assert!(
        matches!(err, ClientError::ForgedReceipt(ref m) if m.contains("certificate is for block")),
        "{err}"
    );
}

#[test]
fn receipt_certified_by_outsiders_is_refused() {
    let chain = Chain::test();
    let impostors = Chain::new(CHAIN, 0, 4, 100);
    let r = receipt(&impostors, TX, 1, "applied");
    assert!(matches!(
        verify_receipt(&trust(&chain), &TX, &r),
        Err(ClientError::UnknownSigner(_))
    ));
}

#[test]
fn receipt_height_must_match_its_block() {
    let chain = Chain::test();
    let mut r = receipt(&chain, TX, 0, "applied");
    r.height = 11;
    assert!(matches!(
        verify_receipt(&trust(&chain), &TX, &r),
        Err(ClientError::ForgedReceipt(_))
    ));
}

/// Issue 13 item 7: the outcome is bound into the certified transaction
/// root, so a node flipping "applied" and "rejected" is caught.
#[test]
fn a_forged_outcome_is_refused_in_either_direction() {
    let chain = Chain::test();
    let honest = receipt(&chain, TX, 1, "applied");
    assert!(verify_receipt(&trust(&chain), &TX, &honest)
        .unwrap()
        .applied());
    let mut forged = honest.clone();
    forged.outcome = "rejected: not enrolled".into();
    assert!(matches!(
        verify_receipt(&trust(&chain), &TX, &forged),
        Err(ClientError::ForgedReceipt(m)) if m.contains("outcome")
    ));
    // Text and code both flipped: the certified code does not match.
    forged.outcome_code = crate::support::outcome_code("rejected: not enrolled");
    assert!(matches!(
        verify_receipt(&trust(&chain), &TX, &forged),
        Err(ClientError::ForgedReceipt(m)) if m.contains("outcome code")
    ));
    let honest = receipt(&chain, TX, 0, "rejected: service is full (256 instances)");
    let v = verify_receipt(&trust(&chain), &TX, &honest).unwrap();
    assert!(!v.applied());
    let mut forged = honest;
    forged.outcome = "applied".into();
    forged.outcome_code = palisade_crypto::OUTCOME_APPLIED;
    assert!(matches!(
        verify_receipt(&trust(&chain), &TX, &forged),
        Err(ClientError::ForgedReceipt(_))
    ));
}

/// A receipt block at height `u64::MAX` with a descendant: refused as
/// forged, without an arithmetic overflow on node-supplied heights.
#[test]
fn a_block_at_the_last_height_with_a_descendant_is_refused() {
    let chain = Chain::test();
    let mut r = receipt(&chain, TX, 1, "applied");
    let mut block: BlockInfo = r.block.decode().unwrap();
    block.height = u64::MAX;
    r.block = Hex::new(&block);
    r.height = u64::MAX;
    let mut child: BlockInfo = r.descendants[0].decode().unwrap();
    child.parent_info = block.hash();
    child.height = 0;
    r.descendants[0] = Hex::new(&child);
    assert!(matches!(
        verify_receipt(&trust(&chain), &TX, &r),
        Err(ClientError::ForgedReceipt(_))
    ));
}

/// One block's certificate comes back in each of its receipts: it is
/// checked once, and an identical copy is taken from the chain's memory.
/// A copy with another signature in it is checked in full, and refused.
#[test]
fn an_identical_certificate_is_checked_once_and_a_changed_signature_is_checked_again() {
    let chain = Chain::test();
    let trust = trust(&chain);
    let r = receipt(&chain, TX, 1, "applied");
    verify_receipt(&trust, &TX, &r).unwrap();
    assert_eq!(trust.certificates_remembered(), 1);
    verify_receipt(&trust, &TX, &r).unwrap();
    assert_eq!(
        trust.certificates_remembered(),
        1,
        "the second copy was checked again"
    );

    let mut forged = r.clone();
    let mut cert: CommitCertificate = forged.certificate.decode().unwrap();
    cert.signatures[0].1 = cert.signatures[1].1;
    forged.certificate = Hex::new(&cert);
    let err = verify_receipt(&trust, &TX, &forged).unwrap_err();
    assert!(matches!(err, ClientError::ForgedSignature(_)), "{err}");
    // With a signer fewer than a quorum, the same ledger info is refused too.
    let mut short = cert.clone();
    short.signatures = cert.signatures[1..].to_vec();
    assert!(trust.verify(&short).is_err());
    assert_eq!(trust.certificates_remembered(), 1);
}

/// The memory of verified certificates is bounded: the oldest is dropped.
#[test]
fn the_verified_certificates_remembered_are_bounded() {
    let chain = Chain::test();
    let trust = trust(&chain);
    for h in 0..VERIFIED_CERTS_KEPT as u64 + 10 {
        let cert = chain.quorum(block(h + 1, Digest([3; 32]), 1_000 + h));
        trust.verify(&cert).unwrap();
    }
    assert_eq!(trust.certificates_remembered(), VERIFIED_CERTS_KEPT);
    // The first is forgotten: a copy of it is checked (and passes) again.
    let first = chain.quorum(block(1, Digest([3; 32]), 1_000));
    trust.verify(&first).unwrap();
    assert_eq!(trust.certificates_remembered(), VERIFIED_CERTS_KEPT);
}
