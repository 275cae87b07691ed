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
    decode, BlockInfo, CommitCertificate, Digest, MapProof, NetworkFile, PublicKey, ServiceLookup,
    SignedHeartbeat, SignedSilenceReport, SignedTransaction, TxInclusionProof, ValidatorSet,
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

/// A transaction (or receipt) inclusion proof from a node: decode, then
/// verify for `id` (and its outcome `code`) under `root`. If a mutated proof
/// verifies, it places the transaction where the original did.
pub fn inclusion_proof(
    bytes: &[u8],
    root: &Digest,
    receipt_root: &Digest,
    id: &Digest,
    code: u16,
    original: &TxInclusionProof,
) {
    let Ok(proof) = decode::<TxInclusionProof>(bytes) else {
        return;
    };
    if proof.verify(root, id).is_ok() {
        assert_eq!(
            proof.index, original.index,
            "a mutated proof moved the transaction"
        );
    }
    if proof.verify_receipt(receipt_root, id, code).is_ok() {
        assert_eq!(
            proof.index, original.index,
            "a mutated receipt proof moved it"
        );
    }
    // The same proof never proves another outcome.
    assert!(
        proof.verify_receipt(receipt_root, id, code ^ 1).is_err(),
        "a receipt proof verified for another outcome"
    );
}

/// A signed lease heartbeat from a service: decode and verify. If a mutated
/// one verifies, it is the original heartbeat.
pub fn heartbeat(bytes: &[u8], original: &SignedHeartbeat) {
    let Ok(h) = decode::<SignedHeartbeat>(bytes) else {
        return;
    };
    if h.verify().is_ok() {
        assert_eq!(
            h.heartbeat, original.heartbeat,
            "a mutated heartbeat verified"
        );
    }
}

/// A signed silence report from a validator: decode, check its shape and
/// verify. If a mutated one verifies, it is the original report.
pub fn silence_report(bytes: &[u8], original: &SignedSilenceReport) {
    let Ok(r) = decode::<SignedSilenceReport>(bytes) else {
        return;
    };
    let _ = r.report.well_formed();
    if r.verify().is_ok() {
        assert_eq!(
            r.report, original.report,
            "a mutated silence report verified"
        );
    }
}

/// Hex text from a config file, a key file or an API body: keys and digests.
/// What parses is the canonical lowercase hex of what it parsed to, except
/// that a key may be surrounded by whitespace (`PublicKey::from_hex` trims:
/// keys are pasted into CLI arguments and files; found by this target).
pub fn hex_text(text: &str) {
    if let Ok(key) = PublicKey::from_hex(text) {
        assert_eq!(
            key.to_hex(),
            text.trim().to_ascii_lowercase(),
            "key hex is not canonical"
        );
    }
    if let Ok(d) = Digest::from_hex(text) {
        assert_eq!(
            d.to_hex(),
            text.to_ascii_lowercase(),
            "digest hex is not canonical"
        );
    }
}

/// A key file's contents (`palisade_keys::load_key_file`), written with
/// mode 0600 to `path`, which must not exist yet. Returns the loaded key's
/// public half; whatever loads is consistent (its public key is the one
/// its seed gives).
pub fn key_file(path: &std::path::Path, bytes: &[u8]) -> Option<PublicKey> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("fuzz key file path is fresh");
    file.write_all(bytes).expect("fuzz key file written");
    drop(file);
    let loaded = palisade_keys::load_key_file(path).ok().map(|k| k.public());
    std::fs::remove_file(path).expect("fuzz key file removed");
    loaded
}
