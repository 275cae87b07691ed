//! Leases kept off consensus (chains with `LeaseMode::Attested`).
//!
//! - `tracker`: what this validator heard (owners' last heartbeat, in memory,
//!   bounded by committed state) and which instances it has not heard from
//!   for a whole TTL.
//! - `pool`: the latest silence reports of every validator (its own and its
//!   peers', each peer's replaced wholesale by its next frame).
//! - `reporter`: the task that follows committed state, signs this
//!   validator's reports, sends them to the peers and carries reports of a
//!   quorum into ExpireSilent transactions.
//! - `api`: `POST /v1/heartbeat`.
//!
//! Shape and why (DESIGN.md "Leases at fleet scale"): a renewal costs each
//! validator one signature check and a hash-map write, nothing on the chain
//! and no watch event; only deaths reach consensus, as reports that the state
//! machine counts (`palisade_consensus::state`, module `silence`). An
//! instance that f+1 honest validators hear stays; one that 2f+1 honest
//! validators do not hear leaves, whatever f liars sign or withhold. A chain
//! on block-time leases runs none of this (Heartbeat transactions renew).

mod api;
mod pool;
mod reporter;
mod tracker;

use std::sync::Mutex;

pub(crate) use api::heartbeat;
pub(crate) use pool::ReportPool;
pub(crate) use reporter::Reporter;
pub(crate) use tracker::{HeartbeatError, LeaseTracker};

/// The lease state the API, the transport and the reporter share.
pub(crate) struct Leases {
    /// Whether this chain's leases are attested (else heartbeats are refused).
    pub(crate) enabled: bool,
    pub(crate) tracker: Mutex<LeaseTracker>,
    pub(crate) pool: Mutex<ReportPool>,
}

impl Leases {
    pub(crate) fn new(chain_id: String, enabled: bool, started_at_ms: u64) -> Self {
        Leases {
            enabled,
            tracker: Mutex::new(LeaseTracker::new(chain_id.clone(), started_at_ms)),
            pool: Mutex::new(ReportPool::new(chain_id)),
        }
    }
}

/// Milliseconds since the Unix epoch on this node's clock.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
