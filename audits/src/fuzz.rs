//! Fuzz targets: one function per decoder of untrusted bytes or verifier.
//!
//! Each takes arbitrary input and must return normally (a typed refusal is
//! fine); a panic is a finding. Where the decoded value is then verified,
//! the target also checks that mutation cannot forge: whatever verifies
//! after a mutation says exactly what the original said.

use palisade_consensus::hotstuff::{Message, SimExecutor};
use palisade_consensus::state::{decode_payload, Params};
use palisade_crypto::api::{
    BlockResponse, EpochsResponse, LookupResponse, NamespaceResponse, Receipt, StatusResponse,
    SubmitRequest, WatchUpdate,
};
use palisade_crypto::{
    decode, BlockInfo, CommitCertificate, MapProof, NetworkFile, PublicKey, ServiceLookup,
    SignedTransaction, ValidatorSet,
};

use crate::corpus::CHAIN_ID;

/// A consensus message off the wire (`Message::decode`, size cap first).
pub fn consensus_message(bytes: &[u8]) {
    if let Ok(m) = Message::decode(bytes) {
        // What decodes re-encodes to the same bytes (canonical borsh).
        assert_eq!(m.encode(), bytes, "consensus message is not canonical");
    }
}

/// A consensus message handed to a running replica: decode, verify
/// signatures and certificates, run the safety rules, maybe execute.
pub fn replica_input(
    replica: &mut palisade_consensus::hotstuff::Replica<SimExecutor>,
    now: u64,
    from: PublicKey,
    bytes: &[u8],
) {
    let _ = replica.handle_bytes(now, from, bytes);
    let _ = replica.take_outputs();
}

/// A commit certificate: decode, then verify against `set`. If a mutated
/// certificate verifies, it certifies what `original` certified.
pub fn certificate(bytes: &[u8], set: &ValidatorSet, original: &CommitCertificate) {
    let Ok(cert) = decode::<CommitCertificate>(bytes) else {
        return;
    };
    if cert.verify(set, CHAIN_ID).is_ok() {
        assert_eq!(
            cert.ledger_info, original.ledger_info,
            "a mutated certificate verified for another ledger info"
        );
    }
    let _ = cert.next_epoch(set, CHAIN_ID);
}

/// A block info (the chained header the audit and clients follow).
pub fn block_info(bytes: &[u8]) {
    if let Ok(info) = decode::<BlockInfo>(bytes) {
        let _ = info.hash();
    }
}

/// A signed transaction: decode and verify. If a mutated one verifies, it is
/// the original transaction.
pub fn transaction(bytes: &[u8], original: &SignedTransaction) {
    let Ok(tx) = decode::<SignedTransaction>(bytes) else {
        return;
    };
    if tx.verify(CHAIN_ID, &original.tx.genesis_hash).is_ok() {
        assert_eq!(tx.tx, original.tx, "a mutated transaction verified");
    }
}

/// A block payload: the list of transactions a block carries.
pub fn block_payload(bytes: &[u8]) {
    let _ = decode_payload(bytes, &Params::default());
}

/// A service lookup with its proof, and a bare map proof.
pub fn lookup_and_proof(bytes: &[u8]) {
    let _ = decode::<ServiceLookup>(bytes);
    let _ = decode::<MapProof>(bytes);
}

/// `network.json` (serde + validation).
pub fn network_file(text: &str) {
    let _ = NetworkFile::from_json(text);
}

/// Every API body a client or auditor parses from a node.
pub fn api_json(bytes: &[u8]) {
    let _ = serde_json::from_slice::<LookupResponse>(bytes);
    let _ = serde_json::from_slice::<NamespaceResponse>(bytes);
    let _ = serde_json::from_slice::<EpochsResponse>(bytes);
    let _ = serde_json::from_slice::<WatchUpdate>(bytes);
    let _ = serde_json::from_slice::<BlockResponse>(bytes);
    let _ = serde_json::from_slice::<StatusResponse>(bytes);
    let _ = serde_json::from_slice::<Receipt>(bytes);
    let _ = serde_json::from_slice::<SubmitRequest>(bytes);
    // Hex-wrapped borsh inside the JSON is decoded too.
    if let Ok(r) = serde_json::from_slice::<BlockResponse>(bytes) {
        let _ = r.block.decode();
    }
    if let Ok(r) = serde_json::from_slice::<LookupResponse>(bytes) {
        let _ = r.certificate.decode();
        let _ = r.lookup.decode();
    }
}
