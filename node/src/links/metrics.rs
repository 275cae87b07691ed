//! Per-datacenter link metrics (`palisade_link_*`): lag histogram (local
//! import time minus the remote certified block time), certified age,
//! imported height, state, bytes in, refusals by reason, equivocations.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A linked datacenter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DcLabel {
    pub(crate) datacenter: String,
}

/// A linked datacenter and a reason or state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DcKindLabel {
    pub(crate) datacenter: String,
    pub(crate) kind: String,
}

type HistFamily = Family<DcLabel, Histogram, fn() -> Histogram>;

fn lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every link metric.
#[derive(Debug, Clone)]
pub(crate) struct LinkMetrics {
    lag: HistFamily,
    age_ms: Family<DcLabel, Gauge>,
    imported_height: Family<DcLabel, Gauge>,
    state: Family<DcKindLabel, Gauge>,
    bytes_in: Family<DcLabel, Counter>,
    refusals: Family<DcKindLabel, Counter>,
    equivocations: Family<DcLabel, Counter>,
}

/// The link states a `state` gauge is reported for.
const STATES: [&str; 6] = [
    "live",
    "lagging",
    "remote_stalled",
    "partitioned",
    "frozen",
    "syncing",
];

impl LinkMetrics {
    /// Register into `registry` (the node's, under prefix `link`).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = LinkMetrics {
            lag: Family::new_with_constructor(lag_histogram as fn() -> Histogram),
            age_ms: Family::default(),
            imported_height: Family::default(),
            state: Family::default(),
            bytes_in: Family::default(),
            refusals: Family::default(),
            equivocations: Family::default(),
        };
        registry.register(
            "lag_seconds",
            "Import time minus the remote certified block time, per imported block",
            m.lag.clone(),
        );
        registry.register(
            "age_ms",
            "Now minus the certified block time of the imported remote state",
            m.age_ms.clone(),
        );
        registry.register(
            "imported_height",
            "Remote height served from the mirror",
            m.imported_height.clone(),
        );
        registry.register(
            "state",
            "1 for the link's current state (live, lagging, remote_stalled, partitioned, frozen, syncing)",
            m.state.clone(),
        );
        registry.register(
            "bytes_in",
            "Bytes read from the remote nodes",
            m.bytes_in.clone(),
        );
        registry.register(
            "refusals",
            "Remote answers refused, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "equivocations",
            "Equivocations of the remote datacenter found (the link freezes)",
            m.equivocations.clone(),
        );
        m
    }

    fn dc(datacenter: &str) -> DcLabel {
        DcLabel {
            datacenter: datacenter.to_string(),
        }
    }

    /// Record one round's effects.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
        &self,
        datacenter: &str,
        status: &palisade_crypto::dc::LinkStatus,
        now_ms: u64,
        imported: Option<u64>,
        bytes_delta: u64,
        refusals_delta: &BTreeMap<&'static str, u64>,
    ) {
        let dc = Self::dc(datacenter);
        if imported.is_some() {
            self.lag
                .get_or_create(&dc)
                .observe(now_ms.saturating_sub(status.imported_timestamp_ms) as f64 / 1000.0);
        }
        if status.imported_timestamp_ms > 0 {
            self.age_ms
                .get_or_create(&dc)
                .set(now_ms.saturating_sub(status.imported_timestamp_ms) as i64);
        }
        self.imported_height
            .get_or_create(&dc)
            .set(status.imported_height as i64);
        for s in STATES {
            self.state
                .get_or_create(&DcKindLabel {
                    datacenter: datacenter.to_string(),
                    kind: s.to_string(),
                })
                .set(i64::from(status.state == s));
        }
        self.bytes_in.get_or_create(&dc).inc_by(bytes_delta);
        for (reason, n) in refusals_delta {
            if *reason == "equivocation" {
                self.equivocations.get_or_create(&dc).inc_by(*n);
            }
            self.refusals
                .get_or_create(&DcKindLabel {
                    datacenter: datacenter.to_string(),
                    kind: reason.to_string(),
                })
                .inc_by(*n);
        }
    }
}
