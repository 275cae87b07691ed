//! Commit receipts: inclusion, the chain of block infos, the certificate.

use palisade_client::{verify_receipt, ClientError, TrustedChain};
use palisade_crypto::{BlockInfo, Digest, Hex, TxInclusionProof};

use crate::support::fixture::{Chain, CHAIN};
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
