//! The authenticated map on its own: apply a batch of puts and deletes to the
//! committed tree and get the new root and the jmt write batch (not yet
//! stored). The executor uses the same path for every block; this entry
//! point serves tools, benches and tests that drive the map directly.

use std::collections::BTreeMap;

use jmt::storage::TreeUpdateBatch;
use palisade_crypto::{Digest, StateKey};

use super::block::put_writes;
use super::error::StateError;
use super::store::{BranchReader, StateStore};

/// Apply `writes` (`None` deletes) on top of `store`'s last commit as version
/// `version` (0 on an empty store, else last height + 1). Later writes of a
/// key win. Returns the new root and the batch to pass to
/// [`StateStore::write_commit`].
pub fn compute_update(
    store: &dyn StateStore,
    version: u64,
    writes: impl IntoIterator<Item = (StateKey, Option<Vec<u8>>)>,
) -> Result<(Digest, TreeUpdateBatch), StateError> {
    let writes: BTreeMap<_, _> = writes.into_iter().collect();
    let reader = BranchReader::committed(store, version.saturating_sub(1));
    let (root, batch, _) = put_writes(&reader, version, writes)?;
    Ok((root, batch))
}
