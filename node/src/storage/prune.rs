//! Retention: dropping committed history older than a window of heights.
//!
//! One function, [`prune_heights`], over a list of per-height column
//! families (keyed by the height, u64 big-endian): every entry of a pruned
//! height goes, together with the receipts of its transactions (found
//! through its [`HeightRecord`], so [`Cf::Heights`] is read before it is
//! deleted). A column family added later with the same key layout (e.g. a
//! per-height change index) is one more entry of [`PER_HEIGHT_CFS`].
//!
//! Work is done in batches of [`HEIGHTS_PER_BATCH`] heights, each atomic, and
//! the low-water mark (`Meta{"pruned_below"}`) moves in the same batch as the
//! deletions, so a crash leaves either all of a batch's heights or none, and
//! pruning resumes where it stopped. The current state, the epoch-change
//! certificates (kept in [`Cf::Meta`]) and everything at or above the mark
//! are never touched.
//!
//! Superseded tree nodes go with [`prune_stale`]: every commit records
//! jmt's stale-node index ([`Cf::Stale`], keyed by the version since which a
//! node is stale), and a node stale since `v <= mark` is needed only by
//! versions below `v`, all pruned. A stale leaf also names a key whose older
//! values may be superseded: of that key's values at or below the mark only
//! the newest is kept (versions at or above the mark read through it).
//! Nodes still referenced by a kept version are never in the index below
//! the mark, so every key stays provable at every kept height.

use palisade_crypto::decode;

use super::kv::{Batch, Cf, KvBackend};
use super::HeightRecord;
use crate::error::StorageError;

/// The per-height column families (u64 big-endian height keys).
pub const PER_HEIGHT_CFS: &[Cf] = &[Cf::Heights, Cf::Infos, Cf::Log, Cf::Certs, Cf::Changes];

/// Heights removed per atomic batch.
pub const HEIGHTS_PER_BATCH: u64 = 256;

const META_PRUNED_BELOW: &[u8] = b"pruned_below";

/// How much history a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Everything (audits replay from genesis).
    Archive,
    /// The last `n` committed heights.
    Heights(u64),
}

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Heights removed.
    pub heights: u64,
    /// Receipt index entries removed.
    pub receipts: u64,
    /// The new low-water mark: no height below it is kept.
    pub below: u64,
}

/// The lowest height whose per-height change records this node has: above
/// the pruned mark, and above the height of a snapshot it started from (a
/// snapshot install brings the state and the certificate at its height and
/// a tail of blocks below it, but no per-height records for any of them).
/// A watch or change walk resuming below it would skip changes silently.
pub fn history_from(kv: &dyn KvBackend) -> Result<u64, StorageError> {
    let below = pruned_below(kv)?;
    let snapshot = match kv.get(Cf::Meta, crate::snapshot::install::SNAPSHOT_HEIGHT)? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| super::corrupt("meta", "snapshot_height is not 8 bytes"))?,
        ),
        None => return Ok(below),
    };
    Ok(below.max(snapshot.saturating_add(1)))
}

/// The lowest height still kept (0 when nothing was pruned).
pub fn pruned_below(kv: &dyn KvBackend) -> Result<u64, StorageError> {
    Ok(match kv.get(Cf::Meta, META_PRUNED_BELOW)? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| super::corrupt("meta", "pruned_below is not 8 bytes"))?,
        ),
        None => 0,
    })
}

/// Stage the low-water mark `below` into `batch` (a snapshot install keeps
/// nothing below its committed tail).
pub(crate) fn stage_pruned_below(batch: &mut Batch, below: u64) {
    batch.put(Cf::Meta, META_PRUNED_BELOW, below.to_be_bytes());
}

/// Remove every height below `committed + 1 - window` (never height 0's
/// genesis records, never the committed height) from `cfs`, with the
/// receipts of their transactions; at most `max_heights` heights per call.
pub fn prune_heights(
    kv: &dyn KvBackend,
    cfs: &[Cf],
    retention: Retention,
    committed: u64,
    max_heights: u64,
) -> Result<Pruned, StorageError> {
    let from = pruned_below(kv)?.max(1);
    let Retention::Heights(window) = retention else {
        return Ok(Pruned {
            below: from,
            ..Pruned::default()
        });
    };
    let target = committed.saturating_add(1).saturating_sub(window.max(1));
    let target = target.min(from.saturating_add(max_heights));
    let mut out = Pruned {
        below: from,
        ..Pruned::default()
    };
    let mut h = from;
    while h < target {
        let end = (h + HEIGHTS_PER_BATCH).min(target);
        let mut batch = Batch::new();
        for height in h..end {
            let key = height.to_be_bytes();
            if let Some(bytes) = kv.get(Cf::Heights, &key)? {
                let record: HeightRecord =
                    decode(&bytes).map_err(|e| super::corrupt("heights", e))?;
                for id in &record.tx_ids {
                    batch.delete(Cf::Receipts, id.0.to_vec());
                    out.receipts += 1;
                }
            }
            for cf in cfs {
                batch.delete(*cf, key.to_vec());
            }
        }
        batch.put(Cf::Meta, META_PRUNED_BELOW, end.to_be_bytes());
        kv.write(batch, false)?;
        out.heights += end - h;
        out.below = end;
        h = end;
    }
    Ok(out)
}

/// Stale index entries handled per atomic batch.
const STALE_PER_BATCH: usize = 1024;

/// What one [`prune_stale`] call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrunedTree {
    /// Tree nodes deleted.
    pub nodes: u64,
    /// Superseded values deleted.
    pub values: u64,
}

/// Delete the tree nodes stale since at most `below` (at most `max` index
/// entries per call), with the values their leaves' keys superseded at or
/// below it. Each batch is atomic and deletes its index entries with the
/// nodes, so a crash leaves the rest for the next call.
pub fn prune_stale(kv: &dyn KvBackend, below: u64, max: usize) -> Result<PrunedTree, StorageError> {
    use jmt::storage::Node;
    let mut out = PrunedTree::default();
    let mut done = 0usize;
    while done < max {
        let page = kv.scan(Cf::Stale, &[], STALE_PER_BATCH.min(max - done))?;
        let mut batch = Batch::new();
        let mut keys = std::collections::BTreeSet::new();
        let mut any = false;
        for (k, _) in &page {
            let since = u64::from_be_bytes(
                k.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| super::corrupt("stale", "short key"))?,
            );
            if since > below {
                break;
            }
            any = true;
            let node_key = &k[8..];
            if let Some(bytes) = kv.get(Cf::JmtNodes, node_key)? {
                if let Node::Leaf(leaf) =
                    decode::<Node>(&bytes).map_err(|e| super::corrupt("jmt_nodes", e))?
                {
                    keys.insert(leaf.key_hash());
                }
                batch.delete(Cf::JmtNodes, node_key.to_vec());
                out.nodes += 1;
            }
            batch.delete(Cf::Stale, k.clone());
            done += 1;
        }
        for key_hash in keys {
            out.values += stage_superseded_values(kv, &key_hash, below, &mut batch)?;
        }
        if !any {
            break;
        }
        kv.write(batch, false)?;
        if page.len() < STALE_PER_BATCH {
            break;
        }
    }
    Ok(out)
}

/// Stage the deletion of `key_hash`'s values older than its newest value at
/// or below `below`; returns how many.
fn stage_superseded_values(
    kv: &dyn KvBackend,
    key_hash: &jmt::KeyHash,
    below: u64,
    batch: &mut Batch,
) -> Result<u64, StorageError> {
    let Some((newest, _)) = kv.seek_prev_in_prefix(
        Cf::JmtValues,
        &super::jmt_store::value_key_of(key_hash, below),
        super::kv::VALUE_PREFIX_LEN,
    )?
    else {
        return Ok(0);
    };
    if newest.len() != 40 || newest[..32] != key_hash.0 {
        return Ok(0);
    }
    let mut n = 0;
    let mut start = super::jmt_store::value_key_of(key_hash, 0);
    loop {
        let page = kv.scan(Cf::JmtValues, &start, 256)?;
        let mut last = None;
        for (k, _) in &page {
            if k.len() != 40 || k[..32] != key_hash.0 || *k >= newest {
                return Ok(n);
            }
            batch.delete(Cf::JmtValues, k.clone());
            n += 1;
            last = Some(k.clone());
        }
        match last {
            Some(mut k) if page.len() == 256 => {
                k.push(0);
                start = k;
            }
            _ => return Ok(n),
        }
    }
}

/// One pass: heights below the window, then the tree nodes and values no
/// kept height needs. Archive retention deletes nothing.
pub fn prune(
    kv: &dyn KvBackend,
    retention: Retention,
    committed: u64,
    max_heights: u64,
) -> Result<(Pruned, PrunedTree), StorageError> {
    let heights = prune_heights(kv, PER_HEIGHT_CFS, retention, committed, max_heights)?;
    if retention == Retention::Archive || heights.below <= 1 {
        return Ok((heights, PrunedTree::default()));
    }
    let tree = prune_stale(kv, heights.below, MAX_STALE_PER_PASS)?;
    Ok((heights, tree))
}

/// Stale index entries handled per pass of [`run`].
const MAX_STALE_PER_PASS: usize = 200_000;

/// Heights pruned per pass of [`run`] (bounds the work of one pass).
const MAX_HEIGHTS_PER_PASS: u64 = 20_000;
/// Time between passes.
const PASS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Prune `store` to `retention` every [`PASS_INTERVAL`] until shutdown (off
/// the async runtime: a pass reads and deletes many keys), never at or above
/// a height a snapshot download has pinned.
pub(crate) async fn run(
    store: super::NodeStore,
    retention: Retention,
    pins: crate::snapshot::pin::Pins,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let mut ticker = tokio::time::interval(PASS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = ticker.tick() => {
                let (store, pins) = (store.clone(), pins.clone());
                let pass = tokio::task::spawn_blocking(move || {
                    // Never a height whose block may be needed to rebuild
                    // the state after a crash (above the state known
                    // durable): flush first when the state on disk lags the
                    // ledger, so the window is kept as configured (a pass
                    // every 10 s, not at the flusher's 30 s).
                    let ledger = store.committed_height()?;
                    if store.durable_state_height() < ledger {
                        store.flush_state()?;
                    }
                    let mut committed = ledger.min(store.durable_state_height());
                    if let Retention::Heights(window) = retention {
                        committed = pins.hold(committed, window, std::time::Instant::now());
                    }
                    prune(store.kv().as_ref(), retention, committed, MAX_HEIGHTS_PER_PASS)
                })
                .await;
                match pass {
                    Ok(Ok((p, t))) if p.heights > 0 || t.nodes > 0 => tracing::info!(
                        heights = p.heights,
                        receipts = p.receipts,
                        below = p.below,
                        nodes = t.nodes,
                        values = t.values,
                        "pruned history"
                    ),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "pruning failed"),
                    Err(e) => tracing::warn!(error = %e, "pruning task failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use palisade_crypto::{encode, Digest};

    use super::*;
    use crate::storage::MemKv;

    fn filled(heights: u64) -> std::sync::Arc<MemKv> {
        let kv = MemKv::new();
        let mut batch = Batch::new();
        for h in 0..=heights {
            let id = Digest([h as u8; 32]);
            let record = HeightRecord {
                tx_ids: vec![id],
                outcomes: vec!["applied".into()],
                codes: vec![palisade_crypto::OUTCOME_APPLIED],
                changed: vec![],
            };
            batch.put(Cf::Heights, h.to_be_bytes(), encode(&record));
            batch.put(Cf::Receipts, id.0, b"loc".to_vec());
            for cf in [Cf::Infos, Cf::Log, Cf::Certs, Cf::Changes] {
                batch.put(cf, h.to_be_bytes(), b"x".to_vec());
            }
        }
        kv.write(batch, false).unwrap();
        kv
    }

    fn kept(kv: &MemKv, cf: Cf) -> Vec<u64> {
        kv.scan(cf, &[], 10_000)
            .unwrap()
            .into_iter()
            .map(|(k, _)| u64::from_be_bytes(k.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn a_window_keeps_the_last_heights_and_genesis_and_resumes() {
        let kv = filled(100);
        // Bounded per call: 30 heights, then the rest.
        let p =
            prune_heights(kv.as_ref(), PER_HEIGHT_CFS, Retention::Heights(10), 100, 30).unwrap();
        assert_eq!((p.heights, p.receipts, p.below), (30, 30, 31));
        let p = prune_heights(
            kv.as_ref(),
            PER_HEIGHT_CFS,
            Retention::Heights(10),
            100,
            1_000,
        )
        .unwrap();
        assert_eq!((p.heights, p.below), (60, 91));
        assert_eq!(pruned_below(kv.as_ref()).unwrap(), 91);
        let want: Vec<u64> = std::iter::once(0).chain(91..=100).collect();
        for cf in PER_HEIGHT_CFS {
            assert_eq!(kept(&kv, *cf), want, "{cf:?}");
        }
        assert_eq!(kv.scan(Cf::Receipts, &[], 1_000).unwrap().len(), 11);
        // Nothing more to do until the chain grows.
        let p = prune_heights(
            kv.as_ref(),
            PER_HEIGHT_CFS,
            Retention::Heights(10),
            100,
            1_000,
        )
        .unwrap();
        assert_eq!(p.heights, 0);
    }

    #[test]
    fn archive_keeps_everything_and_another_cf_is_one_more_entry() {
        let kv = filled(20);
        let p = prune_heights(kv.as_ref(), PER_HEIGHT_CFS, Retention::Archive, 20, 1_000).unwrap();
        assert_eq!(p.heights, 0);
        assert_eq!(kept(&kv, Cf::Log).len(), 21);
        // Only the listed families are pruned.
        prune_heights(
            kv.as_ref(),
            &[Cf::Heights, Cf::Log],
            Retention::Heights(5),
            20,
            1_000,
        )
        .unwrap();
        assert_eq!(kept(&kv, Cf::Log).len(), 6);
        assert_eq!(kept(&kv, Cf::Infos).len(), 21);
    }

    /// A tree written version by version as commits write it (nodes, values
    /// and the stale index), with the expected map at every version.
    type Maps = Vec<std::collections::BTreeMap<[u8; 32], Vec<u8>>>;

    fn tree_history(versions: u64) -> (std::sync::Arc<MemKv>, Maps) {
        use jmt::{JellyfishMerkleTree, KeyHash};
        let kv = MemKv::new();
        let store = crate::storage::KvTreeStore::new(kv.clone());
        let mut expected = Vec::new();
        let mut map: std::collections::BTreeMap<[u8; 32], Vec<u8>> = Default::default();
        for v in 0..versions {
            let mut set = Vec::new();
            // 40 keys; each version rewrites a few, deletes one, adds one.
            for j in 0..4u64 {
                let k = [((v * 7 + j * 11) % 40) as u8; 32];
                let value = format!("v{v}-{j}").into_bytes();
                set.push((KeyHash(k), Some(value.clone())));
                map.insert(k, value);
            }
            if v % 5 == 4 {
                let k = [((v * 3) % 40) as u8; 32];
                if !set.iter().any(|(h, _)| h.0 == k) {
                    set.push((KeyHash(k), None));
                    map.remove(&k);
                }
            }
            let tree = JellyfishMerkleTree::<_, palisade_crypto::JmtHasher>::new(&store);
            let (_, update) = tree.put_value_set(set, v).unwrap();
            let mut batch = Batch::new();
            crate::storage::KvTreeStore::stage(&update.node_batch, &mut batch);
            crate::storage::KvTreeStore::stage_stale(&update.stale_node_index_batch, &mut batch);
            kv.write(batch, false).unwrap();
            store.committed(&update);
            expected.push(map.clone());
        }
        (kv, expected)
    }

    /// Every key (present or absent) proves at `v` against the root, with
    /// the expected value; read through a fresh tree store (no cache).
    fn proves_everything(
        kv: &std::sync::Arc<MemKv>,
        v: u64,
        map: &std::collections::BTreeMap<[u8; 32], Vec<u8>>,
    ) {
        use jmt::{JellyfishMerkleTree, KeyHash};
        let store = crate::storage::KvTreeStore::new(kv.clone());
        let tree = JellyfishMerkleTree::<_, palisade_crypto::JmtHasher>::new(&store);
        let root = tree.get_root_hash(v).unwrap();
        for i in 0..40u8 {
            let k = [i; 32];
            let (value, proof) = tree.get_with_proof(KeyHash(k), v).unwrap();
            assert_eq!(value.as_ref(), map.get(&k), "key {i} at {v}");
            proof.verify(root, KeyHash(k), value.as_ref()).unwrap();
        }
    }

    #[test]
    fn stale_nodes_go_past_the_window_and_every_kept_height_still_proves() {
        let (kv, expected) = tree_history(60);
        let nodes_before = kv.scan(Cf::JmtNodes, &[], 1_000_000).unwrap().len();
        let values_before = kv.scan(Cf::JmtValues, &[], 1_000_000).unwrap().len();
        let below = 45;
        let t = prune_stale(kv.as_ref(), below, usize::MAX).unwrap();
        assert!(t.nodes > 0 && t.values > 0, "{t:?}");
        let nodes_after = kv.scan(Cf::JmtNodes, &[], 1_000_000).unwrap().len();
        let values_after = kv.scan(Cf::JmtValues, &[], 1_000_000).unwrap().len();
        assert_eq!(nodes_before - nodes_after, t.nodes as usize);
        assert_eq!(values_before - values_after, t.values as usize);
        for v in below..60 {
            proves_everything(&kv, v, &expected[v as usize]);
        }
        // Nothing stale since at most the mark is left; again is a no-op.
        assert_eq!(
            prune_stale(kv.as_ref(), below, usize::MAX).unwrap(),
            PrunedTree::default()
        );
    }

    #[test]
    fn archive_deletes_no_tree_node_and_a_bounded_pass_resumes() {
        let (kv, expected) = tree_history(30);
        let nodes = kv.scan(Cf::JmtNodes, &[], 1_000_000).unwrap().len();
        let (_, t) = prune(kv.as_ref(), Retention::Archive, 29, 1_000).unwrap();
        assert_eq!(t, PrunedTree::default());
        assert_eq!(kv.scan(Cf::JmtNodes, &[], 1_000_000).unwrap().len(), nodes);
        for v in 0..30 {
            proves_everything(&kv, v, &expected[v as usize]);
        }
        // Bounded: a few entries per call, then the rest, same result.
        let first = prune_stale(kv.as_ref(), 20, 3).unwrap();
        assert!(first.nodes <= 3);
        prune_stale(kv.as_ref(), 20, usize::MAX).unwrap();
        for v in 20..30 {
            proves_everything(&kv, v, &expected[v as usize]);
        }
    }
}
