//! The export side of a cross-datacenter link: what a node serves of its
//! OWN chain (never a mirrored one, so records are never re-exported).
//!
//! - [`export_changes`]: a certificate at some `c > H`, the block infos
//!   `(H, c]` and every leaf changed in `(H, c]` with its value at `c`,
//!   coalesced (a key changed at many heights ships once). `c` is the highest
//!   certified height whose delta stays within [`MAX_EXPORT_LEAVES`] keys and
//!   [`MAX_EXPORT_INFOS`] heights; the importer asks again from `c`.
//! - [`export_snapshot`]: one page of the leaves at a certified height, in
//!   key-hash order, for a first import (or when the change index was pruned).
//!
//! Both are bounded per request in count and bytes.

use std::collections::BTreeSet;
use std::sync::Arc;

use jmt::storage::TreeReader;
use jmt::{JellyfishMerkleIterator, KeyHash};
use palisade_crypto::dc::{
    ExportChanges, ExportHead, ExportSnapshot, LeafChange, MAX_EXPORT_BYTES, MAX_EXPORT_INFOS,
    MAX_EXPORT_LEAVES,
};
use palisade_crypto::{state_key_hash, Digest, Hex, StateKey};

use crate::error::StorageError;
use crate::storage::NodeStore;

/// Why an export read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// Nothing is certified yet.
    #[error("no block is certified yet")]
    NothingCertified,
    /// The asked height is above what this node has committed.
    #[error("height {asked} is above this node's certified height {certified}")]
    AheadOfNode {
        /// Asked.
        asked: u64,
        /// This node's newest certified height.
        certified: u64,
    },
    /// The change index no longer (or never did) reach the height.
    #[error("the change index does not reach height {missing}: import a snapshot")]
    SnapshotRequired {
        /// First height without an index entry.
        missing: u64,
    },
    /// No certified height within the per-request bounds.
    #[error("no certified height within {MAX_EXPORT_INFOS} heights and {MAX_EXPORT_LEAVES} keys after {from}: import a snapshot")]
    DeltaTooLarge {
        /// The height asked from.
        from: u64,
    },
    /// The snapshot height has no certificate here.
    #[error("height {0} has no commit certificate here")]
    NotCertified(u64),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The tree could not be read.
    #[error("tree read failed: {0}")]
    Tree(String),
}

/// The newest certified height and its certificate.
pub fn export_head(store: &NodeStore) -> Result<ExportHead, ExportError> {
    let (height, cert) = store.latest_cert()?.ok_or(ExportError::NothingCertified)?;
    Ok(ExportHead {
        height,
        certificate: Hex::new(&cert),
    })
}

fn value_at(store: &NodeStore, height: u64, hash: KeyHash) -> Result<Option<Vec<u8>>, ExportError> {
    store
        .tree()
        .get_value_option(height, hash)
        .map_err(|e| ExportError::Tree(format!("{e:#}")))
}

/// The net delta from `from` (exclusive) to the highest certified height
/// reachable within the per-request bounds.
pub fn export_changes(store: &NodeStore, from: u64) -> Result<ExportChanges, ExportError> {
    let (latest, latest_cert) = store.latest_cert()?.ok_or(ExportError::NothingCertified)?;
    if from > latest {
        return Err(ExportError::AheadOfNode {
            asked: from,
            certified: latest,
        });
    }
    let mut keys: BTreeSet<StateKey> = BTreeSet::new();
    let mut chosen: Option<(u64, usize)> = None;
    let mut per_height: Vec<Vec<StateKey>> = Vec::new();
    let mut h = from;
    while h < latest && per_height.len() < MAX_EXPORT_INFOS {
        h += 1;
        let changed = store
            .changes_at(h)?
            .ok_or(ExportError::SnapshotRequired { missing: h })?;
        keys.extend(changed.iter().cloned());
        per_height.push(changed);
        if keys.len() > MAX_EXPORT_LEAVES {
            break;
        }
        if h == latest || store.cert_at(h)?.is_some() {
            chosen = Some((h, per_height.len()));
        }
    }
    let (height, cert) = match chosen {
        // Nothing new: an empty delta at the newest certificate.
        None if from == latest => (latest, latest_cert),
        None => return Err(ExportError::DeltaTooLarge { from }),
        Some((c, _)) if c == latest => (latest, latest_cert),
        Some((c, _)) => (c, store.cert_at(c)?.ok_or(ExportError::NotCertified(c))?),
    };
    let used = chosen.map_or(0, |(_, n)| n);
    let keys: BTreeSet<&StateKey> = per_height[..used].iter().flatten().collect();
    let mut changes = Vec::with_capacity(keys.len());
    let mut bytes = 0usize;
    for key in keys {
        let hash = state_key_hash(key);
        let value = value_at(store, height, hash)?;
        bytes += 36 + value.as_ref().map_or(0, Vec::len);
        if bytes > MAX_EXPORT_BYTES {
            return Err(ExportError::DeltaTooLarge { from });
        }
        changes.push(LeafChange {
            key_hash: Digest(hash.0),
            value,
        });
    }
    let infos = (from + 1..=height)
        .map(|h| {
            store
                .block_info(h)?
                .map(|i| Hex::new(&i))
                .ok_or(ExportError::SnapshotRequired { missing: h })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ExportChanges {
        from_height: from,
        height,
        certificate: Hex::new(&cert),
        infos,
        changes: Hex::new(&changes),
    })
}

/// One page of the leaves at certified height `height`, after key hash
/// `after` (exclusive), in key-hash order.
pub fn export_snapshot(
    store: &NodeStore,
    height: u64,
    after: Option<Digest>,
) -> Result<ExportSnapshot, ExportError> {
    let cert = store
        .cert_at(height)?
        .ok_or(ExportError::NotCertified(height))?;
    let start = KeyHash(after.map_or([0; 32], |d| d.0));
    let reader = Arc::new(store.tree().clone());
    let iter = JellyfishMerkleIterator::new(reader, height, start)
        .map_err(|e| ExportError::Tree(format!("{e:#}")))?;
    let mut leaves = Vec::new();
    let mut bytes = 0usize;
    let mut next = None;
    for item in iter {
        let (hash, value) = item.map_err(|e| ExportError::Tree(format!("{e:#}")))?;
        if Some(Digest(hash.0)) == after {
            continue;
        }
        if leaves.len() == MAX_EXPORT_LEAVES || bytes + 36 + value.len() > MAX_EXPORT_BYTES {
            next = leaves.last().map(|l: &LeafChange| l.key_hash);
            break;
        }
        bytes += 36 + value.len();
        leaves.push(LeafChange {
            key_hash: Digest(hash.0),
            value: Some(value),
        });
    }
    Ok(ExportSnapshot {
        height,
        certificate: Hex::new(&cert),
        leaves: Hex::new(&leaves),
        next,
    })
}
