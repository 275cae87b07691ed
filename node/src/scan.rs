//! Following committed state service by service: what the lease reporter and
//! the prober re-read after new heights commit. The first scan (and one after
//! a long gap or a missing change-index entry) reads every service; later
//! ones only the services the heights since changed, from the per-height
//! change index, so an idle registry of many services costs nothing.

use std::collections::BTreeSet;

use palisade_consensus::state::StateReader;
use palisade_crypto::{NamespaceRecord, StateKey};

use crate::storage::NodeStore;

/// Heights after which a scan reads every service again instead of the
/// services the heights changed.
pub(crate) const FULL_RESCAN_AFTER: u64 = 10_000;

/// The services to re-read at `reader`'s version.
pub(crate) struct Scan {
    /// The version scanned (what the caller remembers as scanned).
    pub(crate) latest: u64,
    /// `(namespace, service)` pairs, sorted.
    pub(crate) services: Vec<(String, String)>,
    /// Every service was listed: services not listed are gone.
    pub(crate) full: bool,
}

/// What to re-read after `scanned` (`None`: never scanned, or start over);
/// `None` when nothing committed since.
pub(crate) fn since(
    store: &NodeStore,
    reader: &StateReader<'_>,
    scanned: Option<u64>,
) -> Option<Scan> {
    let latest = reader.version();
    let changed = match scanned {
        Some(h) if h == latest => return None,
        Some(h) if h < latest && latest - h <= FULL_RESCAN_AFTER => {
            changed_services(store, h + 1, latest)
        }
        _ => None,
    };
    Some(match changed {
        Some(services) => Scan {
            latest,
            services,
            full: false,
        },
        None => Scan {
            latest,
            services: all_services(reader),
            full: true,
        },
    })
}

/// Services changed in heights `from..=to`, from the change index; `None`
/// when a height's entry is missing (then scan everything).
fn changed_services(store: &NodeStore, from: u64, to: u64) -> Option<Vec<(String, String)>> {
    let mut set = BTreeSet::new();
    for h in from..=to {
        let record = store.height_record(h).ok()??;
        set.extend(record.changed);
    }
    Some(set.into_iter().collect())
}

/// Every service of every namespace.
fn all_services(reader: &StateReader<'_>) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for ns in reader.namespaces().unwrap_or_default() {
        let key = StateKey::Namespace {
            namespace: ns.clone(),
        };
        if let Ok(Some(record)) = reader.get::<NamespaceRecord>(&key) {
            all.extend(record.services.into_iter().map(|svc| (ns.clone(), svc)));
        }
    }
    all
}
