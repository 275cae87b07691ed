//! Leases and the mass-expiry bound.
//!
//! Every instance holds a lease deadline `lease_expires_at_ms` (block time of
//! its registration or latest heartbeat plus its TTL). An instance is live
//! while the block time is `<= deadline`; it is removed at the start of the
//! first block whose timestamp is `> deadline`, before that block's
//! transactions run (so a heartbeat in that very block finds no instance).
//! Only block time counts, never a local clock.
//!
//! **Mass-expiry bound** (Eureka's self-preservation, made deterministic):
//! expiries are metered per window of `expiry_window_ms` of block time. When
//! a window opens (the first block at or after `window_start + window`), its
//! budget is fixed at `max(min_expiry_per_window, live * max_expiry_permille /
//! 1000)`, `live` being the live instance count then. A block expires due
//! instances in deadline order (ties by namespace, service, instance) until
//! the window's budget is spent; the rest stay in discovery, overdue (their
//! records show `lease_expires_at_ms` below the block time, so a client can
//! tell), and a heartbeat still renews them. They expire in later windows as
//! budget allows. So one network event that silences every heartbeat removes
//! at most ~15% (default) of the registry per minute instead of all of it,
//! while instances that really died still leave, slowly. Deregistration and
//! revocation are deliberate acts and do not count against the budget.
//! The bookkeeping lives in the authenticated map (`System{"expiry"}`), so
//! every replica and any auditor reaches the same verdict.
//!
//! The index from deadlines to instances is derived data kept in memory: the
//! committed [`LeaseIndex`] plus one [`LeaseDelta`] per speculative block.
//! It is rebuilt from the map when an executor opens a store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::records::InstanceRef;

/// Lease changes of one block: instance -> new deadline, `None` = gone.
pub(crate) type LeaseDelta = BTreeMap<InstanceRef, Option<u64>>;

/// Deadlines of the committed state's instances.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LeaseIndex {
    by_deadline: BTreeSet<(u64, InstanceRef)>,
    deadline_of: HashMap<InstanceRef, u64>,
}

impl LeaseIndex {
    pub(crate) fn set(&mut self, instance: InstanceRef, deadline: Option<u64>) {
        if let Some(old) = self.deadline_of.remove(&instance) {
            self.by_deadline.remove(&(old, instance.clone()));
        }
        if let Some(d) = deadline {
            self.deadline_of.insert(instance.clone(), d);
            self.by_deadline.insert((d, instance));
        }
    }

    pub(crate) fn apply(&mut self, delta: &LeaseDelta) {
        for (instance, deadline) in delta {
            self.set(instance.clone(), *deadline);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.deadline_of.len()
    }
}

/// The lease index as a speculative branch sees it.
pub(crate) struct LeaseView<'a> {
    base: &'a LeaseIndex,
    /// Deltas of uncommitted ancestors, oldest first.
    deltas: Vec<&'a LeaseDelta>,
}

impl<'a> LeaseView<'a> {
    pub(crate) fn new(base: &'a LeaseIndex, deltas: Vec<&'a LeaseDelta>) -> Self {
        LeaseView { base, deltas }
    }

    fn resolve(&self, instance: &InstanceRef) -> Option<u64> {
        for delta in self.deltas.iter().rev() {
            if let Some(d) = delta.get(instance) {
                return *d;
            }
        }
        self.base.deadline_of.get(instance).copied()
    }

    /// Up to `limit` instances whose deadline is `< now_ms`, in (deadline,
    /// instance) order.
    pub(crate) fn due(&self, now_ms: u64, limit: usize) -> Vec<(u64, InstanceRef)> {
        if limit == 0 {
            return Vec::new();
        }
        let overridden: BTreeSet<&InstanceRef> =
            self.deltas.iter().flat_map(|d| d.keys()).collect();
        let mut out: Vec<(u64, InstanceRef)> = overridden
            .iter()
            .filter_map(|i| self.resolve(i).map(|d| (d, (*i).clone())))
            .filter(|(d, _)| *d < now_ms)
            .collect();
        out.sort();
        out.truncate(limit);
        let from_base = self
            .base
            .by_deadline
            .iter()
            .take_while(|(d, _)| *d < now_ms)
            .filter(|(_, i)| !overridden.contains(i))
            .take(limit)
            .cloned();
        out.extend(from_base);
        out.sort();
        out.truncate(limit);
        out
    }
}

/// The budget of a window opened with `live` instances.
pub(crate) fn window_budget(live: u64, permille: u32, floor: u32) -> u64 {
    (live.saturating_mul(permille as u64) / 1000).max(floor as u64)
}
