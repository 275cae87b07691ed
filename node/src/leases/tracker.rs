//! What this validator has heard: the last heartbeat of every owner of a
//! live instance, in memory, and which instances it has not heard from for
//! a whole TTL. Pure (the clock is an argument), so it is tested directly.
//!
//! Bounds: one entry per live instance of committed state and one per owner
//! of one (entries leave with the last instance); a heartbeat from any other
//! key is refused before its signature is checked. Per owner, heartbeats are
//! taken at most once per [`MIN_GAP_MS`] and only with a `sent_at_ms`
//! strictly above the last one taken and within [`WINDOW_MS`] of this
//! validator's clock, so each enrolled owner costs at most one signature
//! check per gap and a captured heartbeat cannot be replayed later.
//!
//! Silence rule (what this validator may sign in a report): an instance is
//! silent at `now` when `now - ttl` is at or past each of: the owner's last
//! heartbeat taken here, this tracker's start (a restarted validator has heard
//! nothing yet and waits a whole TTL) and the instance's last on-chain renewal
//! (`deadline - ttl`); and `now` is past the on-chain deadline (the state
//! machine counts only such reports).

use std::collections::{BTreeMap, HashMap, HashSet};

use palisade_crypto::{PublicKey, SignedHeartbeat};

/// Largest distance between a heartbeat's `sent_at_ms` and this validator's
/// clock.
pub(crate) const WINDOW_MS: u64 = 10_000;
/// Least time between two heartbeats taken from one owner.
pub(crate) const MIN_GAP_MS: u64 = 500;

/// (namespace, service, instance).
pub(crate) type Target = (String, String, String);

/// Why a heartbeat was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeartbeatError {
    /// For another chain.
    #[error("heartbeat for chain {0:?}")]
    WrongChain(String),
    /// The key owns no live instance here.
    #[error("{0} owns no live instance")]
    UnknownOwner(PublicKey),
    /// Not above the last one taken (a replay or a reordering).
    #[error("sent at {got} ms, not after the last taken ({last} ms)")]
    Stale {
        /// Its `sent_at_ms`.
        got: u64,
        /// The last one taken.
        last: u64,
    },
    /// Too far from this validator's clock.
    #[error("sent at {got} ms, more than {WINDOW_MS} ms from this node's {now} ms")]
    OutsideWindow {
        /// Its `sent_at_ms`.
        got: u64,
        /// This validator's clock.
        now: u64,
    },
    /// Less than [`MIN_GAP_MS`] after the last one taken.
    #[error("less than {MIN_GAP_MS} ms after the last heartbeat taken")]
    TooSoon,
    /// The signature does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
}

impl HeartbeatError {
    /// A short code for the API and metrics.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            HeartbeatError::WrongChain(_) => "wrong_chain",
            HeartbeatError::UnknownOwner(_) => "unknown_owner",
            HeartbeatError::Stale { .. } => "stale",
            HeartbeatError::OutsideWindow { .. } => "outside_window",
            HeartbeatError::TooSoon => "too_soon",
            HeartbeatError::BadSignature(_) => "bad_signature",
        }
    }
}

/// A live instance as committed state holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tracked {
    /// Its owner.
    pub(crate) owner: PublicKey,
    /// TTL in milliseconds.
    pub(crate) ttl_ms: u64,
    /// On-chain lease deadline (block time).
    pub(crate) deadline_ms: u64,
}

#[derive(Debug, Default)]
struct Owner {
    instances: u32,
    last_sent_at: u64,
    heard_at: Option<u64>,
}

/// Last-seen memory of one validator.
#[derive(Debug)]
pub(crate) struct LeaseTracker {
    chain_id: String,
    started_at_ms: u64,
    /// (namespace, service) -> instance -> what committed state holds.
    services: HashMap<(String, String), HashMap<String, Tracked>>,
    instances: usize,
    owners: HashMap<PublicKey, Owner>,
}

impl LeaseTracker {
    pub(crate) fn new(chain_id: String, started_at_ms: u64) -> Self {
        LeaseTracker {
            chain_id,
            started_at_ms,
            services: HashMap::new(),
            instances: 0,
            owners: HashMap::new(),
        }
    }

    /// Instances tracked.
    pub(crate) fn len(&self) -> usize {
        self.instances
    }

    /// Owners tracked.
    pub(crate) fn owners(&self) -> usize {
        self.owners.len()
    }

    /// Whether `target` is a live instance of committed state.
    pub(crate) fn contains(&self, (ns, svc, inst): &Target) -> bool {
        self.services
            .get(&(ns.clone(), svc.clone()))
            .is_some_and(|m| m.contains_key(inst))
    }

    /// Follow committed state: `instances` is everything `(namespace,
    /// service)` now holds (empty = the service is gone). An owner keeps
    /// what was heard from it while it owns any instance.
    pub(crate) fn replace_service(
        &mut self,
        namespace: &str,
        service: &str,
        instances: HashMap<String, Tracked>,
    ) {
        let key = (namespace.to_string(), service.to_string());
        for t in instances.values() {
            self.owners.entry(t.owner).or_default().instances += 1;
        }
        self.instances += instances.len();
        let old = if instances.is_empty() {
            self.services.remove(&key)
        } else {
            self.services.insert(key, instances)
        };
        if let Some(old) = old {
            self.instances -= old.len();
            for t in old.values() {
                self.release(&t.owner);
            }
        }
    }

    /// Forget every service not in `keep` (after a full scan).
    pub(crate) fn retain_services(&mut self, keep: &HashSet<(String, String)>) {
        let gone: Vec<(String, String)> = self
            .services
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        for (ns, svc) in gone {
            self.replace_service(&ns, &svc, HashMap::new());
        }
    }

    fn release(&mut self, owner: &PublicKey) {
        if let Some(o) = self.owners.get_mut(owner) {
            o.instances = o.instances.saturating_sub(1);
            if o.instances == 0 {
                self.owners.remove(owner);
            }
        }
    }

    /// The checks that need no signature: chain, owner, counter, window, gap.
    pub(crate) fn precheck(&self, hb: &SignedHeartbeat, now_ms: u64) -> Result<(), HeartbeatError> {
        let h = &hb.heartbeat;
        if h.chain_id != self.chain_id {
            return Err(HeartbeatError::WrongChain(h.chain_id.clone()));
        }
        let owner = self
            .owners
            .get(&h.identity)
            .ok_or(HeartbeatError::UnknownOwner(h.identity))?;
        if h.sent_at_ms <= owner.last_sent_at {
            return Err(HeartbeatError::Stale {
                got: h.sent_at_ms,
                last: owner.last_sent_at,
            });
        }
        if h.sent_at_ms.abs_diff(now_ms) > WINDOW_MS {
            return Err(HeartbeatError::OutsideWindow {
                got: h.sent_at_ms,
                now: now_ms,
            });
        }
        if owner
            .heard_at
            .is_some_and(|at| now_ms < at.saturating_add(MIN_GAP_MS))
        {
            return Err(HeartbeatError::TooSoon);
        }
        Ok(())
    }

    /// Take a heartbeat whose signature was checked (prechecks run again:
    /// another may have been taken meanwhile).
    pub(crate) fn record(
        &mut self,
        hb: &SignedHeartbeat,
        now_ms: u64,
    ) -> Result<(), HeartbeatError> {
        self.precheck(hb, now_ms)?;
        let owner = self
            .owners
            .get_mut(&hb.heartbeat.identity)
            .expect("precheck found the owner");
        owner.last_sent_at = hb.heartbeat.sent_at_ms;
        owner.heard_at = Some(now_ms);
        Ok(())
    }

    /// Precheck, verify, record (the API does the same in three steps, the
    /// signature outside the lock).
    #[cfg(test)]
    pub(crate) fn handle_heartbeat(
        &mut self,
        hb: &SignedHeartbeat,
        now_ms: u64,
    ) -> Result<(), HeartbeatError> {
        self.precheck(hb, now_ms)?;
        hb.verify()
            .map_err(|e| HeartbeatError::BadSignature(e.to_string()))?;
        self.record(hb, now_ms)
    }

    /// Instances silent at `now_ms`, grouped by service, sorted.
    pub(crate) fn silent(&self, now_ms: u64) -> BTreeMap<(String, String), Vec<String>> {
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for ((ns, svc), instances) in &self.services {
            for (inst, t) in instances {
                let heard = self
                    .owners
                    .get(&t.owner)
                    .and_then(|o| o.heard_at)
                    .unwrap_or(0);
                let since = heard
                    .max(self.started_at_ms)
                    .max(t.deadline_ms.saturating_sub(t.ttl_ms));
                if now_ms >= since.saturating_add(t.ttl_ms) && now_ms > t.deadline_ms {
                    out.entry((ns.clone(), svc.clone()))
                        .or_default()
                        .push(inst.clone());
                }
            }
        }
        for list in out.values_mut() {
            list.sort();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use palisade_crypto::{LeaseHeartbeat, SecretKey};

    use super::*;

    const T: u64 = 1_700_000_000_000;
    const TTL: u64 = 30_000;

    fn target(i: &str) -> Target {
        ("shop".into(), "web".into(), i.into())
    }

    fn hb(k: &SecretKey, at: u64) -> SignedHeartbeat {
        LeaseHeartbeat {
            chain_id: "c".into(),
            identity: k.public(),
            sent_at_ms: at,
        }
        .sign(k)
    }

    fn tracked(owner: &SecretKey, names: &[&str]) -> HashMap<String, Tracked> {
        names
            .iter()
            .map(|i| {
                (
                    i.to_string(),
                    Tracked {
                        owner: owner.public(),
                        ttl_ms: TTL,
                        deadline_ms: T + TTL,
                    },
                )
            })
            .collect()
    }

    fn tracker(owner: &SecretKey) -> LeaseTracker {
        let mut t = LeaseTracker::new("c".into(), T);
        t.replace_service("shop", "web", tracked(owner, &["a1", "a2"]));
        t
    }

    #[test]
    fn one_heartbeat_keeps_all_of_an_owners_instances_for_a_ttl() {
        let owner = SecretKey::from_seed([1; 32]);
        let mut t = tracker(&owner);
        assert!(
            t.silent(T + TTL).is_empty(),
            "the on-chain lease still runs"
        );
        t.handle_heartbeat(&hb(&owner, T + 20_000), T + 20_000)
            .unwrap();
        assert!(t.silent(T + 20_000 + TTL - 1).is_empty());
        let silent = t.silent(T + 20_000 + TTL);
        assert_eq!(
            silent.get(&("shop".into(), "web".into())),
            Some(&vec!["a1".to_string(), "a2".to_string()])
        );
    }

    #[test]
    fn a_restarted_validator_waits_a_whole_ttl_from_its_start() {
        let owner = SecretKey::from_seed([1; 32]);
        let mut t = LeaseTracker::new("c".into(), T + 100_000);
        t.replace_service("shop", "web", tracked(&owner, &["a1"]));
        assert!(t.silent(T + 100_000 + TTL - 1).is_empty());
        assert_eq!(t.silent(T + 100_000 + TTL).len(), 1);
    }

    #[test]
    fn replays_forgeries_strangers_and_floods_are_refused() {
        let owner = SecretKey::from_seed([1; 32]);
        let stranger = SecretKey::from_seed([2; 32]);
        let mut t = tracker(&owner);
        let now = T + 5_000;
        let first = hb(&owner, now);
        t.handle_heartbeat(&first, now).unwrap();
        // The same heartbeat again, later: stale.
        assert!(matches!(
            t.handle_heartbeat(&first, now + 20_000),
            Err(HeartbeatError::Stale { .. })
        ));
        // A key that owns nothing here: refused before any signature check.
        assert_eq!(
            t.handle_heartbeat(&hb(&stranger, now + 1_000), now + 1_000),
            Err(HeartbeatError::UnknownOwner(stranger.public()))
        );
        // The owner's key, another signer.
        let mut forged = hb(&stranger, now + 1_000);
        forged.heartbeat.identity = owner.public();
        assert!(matches!(
            t.handle_heartbeat(&forged, now + 1_000),
            Err(HeartbeatError::BadSignature(_))
        ));
        // Sent far from this node's clock (an old capture, or a future one).
        assert!(matches!(
            t.handle_heartbeat(&hb(&owner, now + WINDOW_MS + 5_000), now + 4_000),
            Err(HeartbeatError::OutsideWindow { .. })
        ));
        // Faster than the gap: refused without a signature check.
        assert_eq!(
            t.handle_heartbeat(&hb(&owner, now + 100), now + 100),
            Err(HeartbeatError::TooSoon)
        );
        // Another chain.
        let mut other = LeaseHeartbeat {
            chain_id: "d".into(),
            identity: owner.public(),
            sent_at_ms: now + 2_000,
        }
        .sign(&owner);
        other.heartbeat.chain_id = "d".into();
        assert!(matches!(
            t.handle_heartbeat(&other, now + 2_000),
            Err(HeartbeatError::WrongChain(_))
        ));
        // None of those counted as a heartbeat: silent a TTL after the first.
        assert_eq!(t.silent(now + TTL).len(), 1);
    }

    #[test]
    fn memory_follows_committed_state() {
        let owner = SecretKey::from_seed([1; 32]);
        let mut t = tracker(&owner);
        assert_eq!((t.len(), t.owners()), (2, 1));
        assert!(t.contains(&target("a1")));
        // Re-reading the service keeps what was heard from its owner.
        t.handle_heartbeat(&hb(&owner, T + 40_000), T + 40_000)
            .unwrap();
        t.replace_service("shop", "web", tracked(&owner, &["a1"]));
        assert_eq!((t.len(), t.owners()), (1, 1));
        assert!(!t.contains(&target("a2")));
        assert!(t.silent(T + 40_000 + TTL - 1).is_empty());
        t.retain_services(&HashSet::new());
        assert_eq!((t.len(), t.owners()), (0, 0));
        assert_eq!(
            t.handle_heartbeat(&hb(&owner, T + 1_000), T + 1_000),
            Err(HeartbeatError::UnknownOwner(owner.public()))
        );
    }
}
