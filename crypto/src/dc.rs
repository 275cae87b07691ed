//! Cross-datacenter wire types: what a node exports of its own chain, and
//! how it serves another datacenter's records that it imported.
//!
//! Routes (under the node's API URL):
//! - `GET /v1/export/head` -> [`ExportHead`]: the newest commit certificate.
//! - `GET /v1/export/changes?from_height=H` -> [`ExportChanges`]: a
//!   certificate at some height `c > H`, the block infos `(H, c]` (each names
//!   its parent's hash) and every leaf changed in `(H, c]` with its value at
//!   `c`, coalesced; bounded per request (a caller asks again from `c`).
//!   410 `snapshot_required` when the change index no longer reaches `H + 1`.
//! - `GET /v1/export/snapshot?height=c[&after=KEY_HASH]` -> [`ExportSnapshot`]:
//!   one page of the leaves of the tree at certified height `c`, in key-hash
//!   order (for a first import).
//! - `GET /v1/remote/{datacenter}/services/{namespace}/{service}` ->
//!   [`RemoteLookupResponse`]: another datacenter's service, proven against
//!   that datacenter's certificate, with the link's (unverified) status.
//! - `GET /v1/links` -> [`LinksResponse`].
//!
//! None of this is trusted by the importer or a client: an importer applies
//! the changes to a mirror of the remote tree and accepts them only when the
//! mirror's root equals the certified root; a client verifies a remote
//! lookup against the remote datacenter's validators.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::api::LookupResponse;
use crate::{BlockInfo, CommitCertificate, Digest, Hex};

/// The media type of the binary export answers: an importer that sends
/// `Accept: application/x-palisade-borsh` gets [`ExportHead`],
/// [`ExportChanges`] and [`ExportSnapshot`] as borsh (hex payloads as raw
/// bytes) instead of JSON; anything else gets JSON.
pub const EXPORT_BINARY_TYPE: &str = "application/x-palisade-borsh";

/// Most leaves in one [`ExportChanges`] or [`ExportSnapshot`] page.
pub const MAX_EXPORT_LEAVES: usize = 4096;
/// Most block infos in one [`ExportChanges`] page.
pub const MAX_EXPORT_INFOS: usize = 1024;
/// Largest encoded leaf list in one page (bytes of borsh, before hex).
pub const MAX_EXPORT_BYTES: usize = 2 << 20;

/// One leaf of the authenticated map: its jmt key hash and its value
/// (`None`: absent, i.e. deleted by the delta).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct LeafChange {
    /// `state_key_hash` of the key.
    pub key_hash: Digest,
    /// The value at the page's height, or `None` when absent.
    pub value: Option<Vec<u8>>,
}

/// The newest certified block of the exporting node's own chain.
#[derive(Debug, Clone, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct ExportHead {
    /// Height of the certified block (unverified; the certificate says).
    pub height: u64,
    /// Its commit certificate.
    pub certificate: Hex<CommitCertificate>,
}

/// Net changes from `from_height` (exclusive) to the certified `height`.
#[derive(Debug, Clone, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct ExportChanges {
    /// The height the delta starts after.
    pub from_height: u64,
    /// The certified height `c` the values are read at.
    pub height: u64,
    /// Commit certificate of `c`.
    pub certificate: Hex<CommitCertificate>,
    /// Block infos `from_height + 1 ..= c`, oldest first.
    pub infos: Vec<Hex<BlockInfo>>,
    /// Every leaf changed in `(from_height, c]`, once, with its value at `c`.
    pub changes: Hex<Vec<LeafChange>>,
}

/// One page of the leaves at a certified height.
#[derive(Debug, Clone, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct ExportSnapshot {
    /// The height read.
    pub height: u64,
    /// Commit certificate of `height`.
    pub certificate: Hex<CommitCertificate>,
    /// Leaves in ascending key-hash order (values never `None`).
    pub leaves: Hex<Vec<LeafChange>>,
    /// Key hash to pass as `after` for the next page; `None` on the last.
    pub next: Option<Digest>,
}

/// Where a link to another datacenter stands (the importing node's word,
/// unverified; the certificate's timestamp is what a client trusts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The remote datacenter's name.
    pub datacenter: String,
    /// Its chain id.
    pub chain_id: String,
    /// `live`, `lagging`, `remote_stalled`, `partitioned`, `frozen` or `syncing`.
    pub state: String,
    /// The remote height imported (served), 0 before the first import.
    pub imported_height: u64,
    /// The imported block's certified timestamp (ms since the Unix epoch).
    pub imported_timestamp_ms: u64,
    /// Newest remote height seen certified (may be ahead while importing).
    pub remote_height: u64,
    /// Milliseconds since a remote node last showed a new certified height.
    pub since_progress_ms: u64,
    /// Why the link is frozen, when it is.
    pub frozen_reason: Option<String>,
}

/// The links a node imports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinksResponse {
    /// One per configured link.
    pub links: Vec<LinkStatus>,
}

/// A remote datacenter's service, served by a node of another one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteLookupResponse {
    /// The link's state (unverified).
    pub link: LinkStatus,
    /// The lookup, proven against the remote datacenter's certificate.
    pub lookup: LookupResponse,
}

/// Evidence that a datacenter's validators certified two different blocks at
/// one height, or a chain that does not reach a block they certified before.
/// Anyone holding that datacenter's network.json can check it offline.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EquivocationEvidence {
    /// Chain id of the equivocating datacenter.
    pub chain_id: String,
    /// Epoch-ending certificates from genesis to the epochs that signed `first`
    /// and `second`, in order.
    pub epoch_changes: Vec<CommitCertificate>,
    /// The certificate imported first.
    pub first: CommitCertificate,
    /// The conflicting certificate.
    pub second: CommitCertificate,
    /// When the conflict is a broken chain: block infos from just above
    /// `first`'s height up to `second`'s block, as served (their hashes do not
    /// reach `first`'s block).
    pub chain: Vec<BlockInfo>,
}
