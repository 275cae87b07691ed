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
//! Not pruned here (written down in the notes): superseded tree nodes and
//! values, which need jmt's stale-node index persisted at commit.

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

/// Heights pruned per pass of [`run`] (bounds the work of one pass).
const MAX_HEIGHTS_PER_PASS: u64 = 20_000;
/// Time between passes.
const PASS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Prune `store` to `retention` every [`PASS_INTERVAL`] until shutdown (off
/// the async runtime: a pass reads and deletes many keys).
pub(crate) async fn run(
    store: super::NodeStore,
    retention: Retention,
    mut shutdown: crate::shutdown::Shutdown,
) {
    let mut ticker = tokio::time::interval(PASS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = ticker.tick() => {
                let store = store.clone();
                let pass = tokio::task::spawn_blocking(move || {
                    let committed = store.committed_height()?;
                    prune_heights(store.kv().as_ref(), PER_HEIGHT_CFS, retention, committed, MAX_HEIGHTS_PER_PASS)
                })
                .await;
                match pass {
                    Ok(Ok(p)) if p.heights > 0 => tracing::info!(
                        heights = p.heights,
                        receipts = p.receipts,
                        below = p.below,
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
}
