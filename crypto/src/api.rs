//! JSON types of the node's HTTP API, shared by the node and the client so the
//! two cannot drift. Everything a client verifies travels as [`Hex`] borsh, so
//! the verified bytes are exactly the signed and hashed bytes; fields marked
//! "unverified" are conveniences for humans and scripts.
//!
//! Routes (all under the node's API URL):
//! - `POST /v1/tx` [`SubmitRequest`] -> [`SubmitResponse`]
//! - `GET /v1/tx/{id}` -> [`SubmitResponse`]
//! - `GET /v1/services/{namespace}/{service}[?record=false]` -> [`LookupResponse`] (absent services too; `record=false` leaves out the unverified decoded `record`)
//! - `GET /v1/namespaces/{namespace}` -> [`NamespaceResponse`]
//! - `GET /v1/epochs?from=E` -> [`EpochsResponse`]
//! - `GET /v1/accounts/{public_key_hex}` -> [`AccountResponse`] (proven committed sequence)
//! - `GET /v1/watch?namespace=N[&service=S][&from_height=H]` -> server-sent events:
//!   `event: update` with data [`WatchUpdate`] (proven at the batch's certified height
//!   `c`), `event: changed` with data `namespace/service` (an update too large for an
//!   event: look it up), `event: synced` with data the hex [`crate::CommitCertificate`]
//!   of `c` as a JSON string (every change up to `c` was sent; resume from `c + 1`),
//!   `event: cutoff` with data [`ApiError`]. `synced` is a [`WatchSynced`]: the
//!   certificate and the watched subject proven at `c` (a service's lookup, or a
//!   namespace's change chain).
//! - `GET /v1/namespaces/{namespace}/changes?height=H&from_height=L` -> [`ChangesResponse`]
//! - `GET /v1/blocks/{height}` -> [`BlockResponse`] (committed blocks only)
//! - `GET /v1/status` -> [`StatusResponse`]
//! - `POST /v1/heartbeat` [`HeartbeatRequest`] -> [`HeartbeatResponse`] (chains with
//!   attested leases: off consensus, send it to every node)
//! - `GET /metrics` -> Prometheus text
//!
//! Errors are 4xx/5xx with an [`ApiError`] body.

use serde::{Deserialize, Serialize};

use crate::{
    BlockInfo, CommitCertificate, Digest, Hex, InstanceRecord, MapProof, NamespaceLink,
    NamespaceRecord, ServiceLookup, ServiceProof, ServiceRecord, SignedHeartbeat,
    SignedTransaction, TxInclusionProof,
};

/// A commit certificate as plain JSON, for people and scripts (unverified:
/// the node's word; clients verify the hex `certificate` beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    /// Chain the signers certify.
    pub chain_id: String,
    /// The genesis the chain grew from (network.json's `genesis_hash`).
    pub genesis_hash: Digest,
    /// Epoch whose validators signed.
    pub epoch: u64,
    /// The committed block (absent for a certificate that commits nothing).
    pub block: Option<BlockInfo>,
    /// Keys of the validators whose signatures it carries.
    pub signers: Vec<crate::PublicKey>,
}

impl From<&CommitCertificate> for CertificateView {
    fn from(c: &CommitCertificate) -> Self {
        CertificateView {
            chain_id: c.ledger_info.chain_id.clone(),
            genesis_hash: c.ledger_info.genesis_hash,
            epoch: c.ledger_info.epoch,
            block: c.ledger_info.commit.clone(),
            signers: c.signatures.iter().map(|(k, _)| *k).collect(),
        }
    }
}

/// A committed transaction as plain JSON (unverified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxView {
    /// Transaction id (its signing digest).
    pub id: Digest,
    /// Signer.
    pub signer: crate::PublicKey,
    /// Signer's sequence number.
    pub sequence: u64,
    /// What it does (`register`, `heartbeat`, ...).
    pub kind: String,
    /// What it acts on (`namespace/service/instance`, an identity key, ...).
    pub target: Option<String>,
    /// The state machine's verdict, as this node recorded it.
    pub outcome: Option<String>,
}

/// Most heartbeats one [`HeartbeatRequest`] may carry (an agent may forward
/// those of many identities).
pub const MAX_HEARTBEATS_PER_REQUEST: usize = 1024;

/// Signed heartbeats for one node (it verifies each once and keeps them in
/// memory; nothing is committed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// 1 to [`MAX_HEARTBEATS_PER_REQUEST`] heartbeats.
    pub heartbeats: Vec<Hex<SignedHeartbeat>>,
}

/// A heartbeat the node did not take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRefusal {
    /// Its position in the request.
    pub index: usize,
    /// Why: `wrong_chain`, `unknown_owner`, `stale`, `outside_window`,
    /// `too_soon`, `bad_signature`.
    pub code: String,
}

/// What became of a [`HeartbeatRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Heartbeats taken.
    pub accepted: usize,
    /// The others, with the reason.
    pub refused: Vec<HeartbeatRefusal>,
}

/// Submit a signed transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// The transaction.
    pub tx: Hex<SignedTransaction>,
    /// Wait (bounded by the node) for the commit receipt.
    #[serde(default)]
    pub wait: bool,
}

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Admitted to the mempool, not yet committed.
    Pending,
    /// Committed and applied.
    Committed,
    /// Committed in a block but refused by the state machine (see `reason`).
    Rejected,
}

/// A committed transaction's receipt, provable against a certified block.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    /// Transaction id.
    pub tx_id: Digest,
    /// Height of the block that holds it.
    pub height: u64,
    /// That block's info (`tx_root` proves inclusion).
    pub block: Hex<BlockInfo>,
    /// Inclusion proof against `block.tx_root`.
    pub inclusion: Hex<TxInclusionProof>,
    /// Block infos from `height + 1` up to the certified block, each naming
    /// its parent's hash in `parent_info`; empty when `certificate` is for `block`.
    pub descendants: Vec<Hex<BlockInfo>>,
    /// A commit certificate for the last block of the chain.
    pub certificate: Hex<CommitCertificate>,
    /// The state machine's verdict as text ("applied" or the rejection
    /// reason; unverified, for people).
    pub outcome: String,
    /// The verdict's stable code ([`crate::OUTCOME_APPLIED`] or a rejection
    /// code): what the inclusion proof binds, so the client verifies it.
    pub outcome_code: u16,
    /// `block` as plain JSON (unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_info: Option<BlockInfo>,
    /// `certificate` as plain JSON (unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified: Option<CertificateView>,
}

/// Answer to a submission or a receipt query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// Transaction id.
    pub tx_id: Digest,
    /// Where it stands.
    pub status: TxStatus,
    /// Present once committed.
    pub receipt: Option<Receipt>,
}

/// A service lookup with its proof and certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LookupResponse {
    /// Height of the certified block (unverified; the certificate says).
    pub height: u64,
    /// Commit certificate of the block whose state answers.
    pub certificate: Hex<CommitCertificate>,
    /// The service's index leaf (or absence) and its proof.
    pub lookup: Hex<ServiceLookup>,
    /// Every instance record the index lists, in its order (each checked
    /// against the index's hash; see [`crate::ServiceProof`]).
    pub instances: Vec<Hex<InstanceRecord>>,
    /// The decoded record (unverified).
    pub record: Option<ServiceRecord>,
    /// `certificate` as plain JSON (unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified: Option<CertificateView>,
}

impl LookupResponse {
    /// The proof material to verify: the index leaf's proof and the instance
    /// records (see [`ServiceProof::verify`]).
    pub fn proof(&self) -> Result<ServiceProof, crate::DecodeError> {
        Ok(ServiceProof {
            lookup: self.lookup.decode()?,
            instances: self.instances.iter().map(|i| i.bytes().to_vec()).collect(),
        })
    }
}

/// The services of a namespace with proof.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceResponse {
    /// Namespace.
    pub namespace: String,
    /// Commit certificate.
    pub certificate: Hex<CommitCertificate>,
    /// Canonical encoding of the [`NamespaceRecord`], absent if none.
    pub value: Option<Hex<NamespaceRecord>>,
    /// Proof for `StateKey::Namespace`.
    pub proof: Hex<MapProof>,
    /// `value` decoded (unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<NamespaceRecord>,
    /// `certificate` as plain JSON (unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified: Option<CertificateView>,
}

/// Epoch-ending certificates from a given epoch on, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochsResponse {
    /// Certificate of the last block of each epoch, starting at the asked one.
    pub changes: Vec<Hex<CommitCertificate>>,
    /// `changes` as plain JSON (unverified): each names the next validators.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<CertificateView>,
}

impl EpochsResponse {
    /// The certificates, decoded in order (not yet verified).
    pub fn certificates(&self) -> Result<Vec<CommitCertificate>, crate::DecodeError> {
        self.changes.iter().map(Hex::decode).collect()
    }
}

/// One watch event: the new state of a service, provable like a lookup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchUpdate {
    /// Namespace.
    pub namespace: String,
    /// Service.
    pub service: String,
    /// The lookup at the height of the change.
    pub lookup: LookupResponse,
}

/// The data of a watch `synced` event: the certificate of the height `c` the
/// stream has sent every change up to, and, for a service watch, the
/// service's state proven at `c`, so that a node cannot move the watcher's
/// resume point past a change it did not send (the client compares the
/// proven state with what it last delivered).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSynced {
    /// Commit certificate of `c`.
    pub certificate: Hex<CommitCertificate>,
    /// A service watch's service, looked up at `c`; `None` for a namespace
    /// watch, or when the lookup would not fit in an event (the client then
    /// looks it up, at `c` or later).
    pub service: Option<LookupResponse>,
    /// A namespace watch's change chain at `c`; `None` for a service watch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<NamespaceChanges>,
}

/// A namespace's change chain proven at a certified height `c`: the head
/// ([`crate::StateKey::NamespaceLog`], absent when the namespace never
/// changed) and the links from the head down to the stream's first height,
/// each with the services it lists. A client checks that every service the
/// links name was delivered at or above the link's height, and looks up
/// those that were not (a node cannot hide a change: the chain is hashed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceChanges {
    /// Canonical encoding of the head link at `c`, absent if none.
    pub value: Option<Hex<NamespaceLink>>,
    /// Proof for `StateKey::NamespaceLog` against `c`'s state root.
    pub proof: Hex<MapProof>,
    /// The links, newest first, from the head down to the first link whose
    /// height is below the stream's first height (exclusive); `None` when
    /// they would not fit in an event (the client then fetches them from
    /// `GET /v1/namespaces/{namespace}/changes`).
    pub links: Option<Vec<ChangeLink>>,
}

/// One link of a namespace's change chain with the services it lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeLink {
    /// Canonical encoding of the [`NamespaceLink`].
    pub link: Hex<NamespaceLink>,
    /// The services it lists (their hash is the link's `services_hash`).
    pub services: Vec<String>,
}

/// `GET /v1/namespaces/{namespace}/changes?height=H&from_height=L`: the
/// links of the namespace's change chain, newest first, starting with the
/// link of height `H` and going down while heights are at least `L`, as
/// many as fit in one answer (at least one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangesResponse {
    /// The links.
    pub links: Vec<ChangeLink>,
}

/// A signer's account: its committed next sequence number, proven against
/// a certified state root, and the node's (unverified) suggestion for the
/// next transaction.
///
/// A client signs with the proven number, or with the suggestion only when
/// it lies within [`crate::MAX_SEQUENCE_STEP`] above it (the consensus rule),
/// so a lying node can neither forge a sequence nor steer the signer towards
/// the end of the sequence space.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountResponse {
    /// The signer.
    pub key: crate::PublicKey,
    /// Unverified: the committed next sequence plus this node's pending
    /// transactions of the signer (so a client can submit several in a row);
    /// an unknown signer gets 0.
    pub next_sequence: u64,
    /// Height of the certified state (unverified; the certificate says).
    pub height: u64,
    /// Commit certificate of the state the proof is against.
    pub certificate: Hex<CommitCertificate>,
    /// Canonical encoding of the `StateKey::Account` value (the committed
    /// next sequence, a `u64`); absent for a signer with no applied
    /// transaction (next is 0).
    pub value: Option<Hex<u64>>,
    /// Proof of `StateKey::Account` against the certified root.
    pub proof: Hex<MapProof>,
}

/// A committed block's info, so that anyone can compare replicas height by
/// height (the fault-injection checker does).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockResponse {
    /// Height asked for.
    pub height: u64,
    /// The committed block's info (chained by `parent_info`).
    pub block: Hex<BlockInfo>,
    /// `block` as plain JSON (unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<BlockInfo>,
    /// The certificate this node keeps for the height, as plain JSON (unverified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified: Option<CertificateView>,
    /// The block's transactions, in order, as plain JSON (unverified; the
    /// audit route serves the block itself).
    #[serde(default)]
    pub transactions: Vec<TxView>,
}

/// Node status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Chain id.
    pub chain_id: String,
    /// This node's validator key.
    pub node_key: String,
    /// Last committed height.
    pub height: u64,
    /// Current round.
    pub round: u64,
    /// Current epoch.
    pub epoch: u64,
    /// Leader of the current round.
    pub leader: String,
    /// Connected validator peers.
    pub peers: usize,
    /// Transactions waiting in the mempool.
    pub mempool: usize,
    /// State root at `height`.
    pub state_root: Digest,
}

/// An error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `bad_signature`, `unknown_namespace`.
    pub code: String,
    /// Human explanation.
    pub message: String,
}
