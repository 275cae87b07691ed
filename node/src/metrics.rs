//! Prometheus metrics (served at `GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of a rejected transaction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: String,
}

/// Label of an API route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    pub(crate) route: String,
    pub(crate) status: u16,
}

type LatencyFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// Every metric the node exports.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) commits: Counter,
    pub(crate) height: Gauge,
    pub(crate) rounds: Counter,
    pub(crate) round: Gauge,
    pub(crate) timeouts: Counter,
    pub(crate) view_changes: Counter,
    pub(crate) mempool_size: Gauge,
    pub(crate) txs_admitted: Counter,
    pub(crate) txs_rejected: Family<ReasonLabel, Counter>,
    pub(crate) api_latency: LatencyFamily,
    pub(crate) peers: Gauge,
    pub(crate) watch_streams: Gauge,
    pub(crate) frames_dropped: Counter,
    pub(crate) consensus_refused: Family<ReasonLabel, Counter>,
    pub(crate) probes: Family<ReasonLabel, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let m = Metrics {
            registry: Registry::default(),
            commits: Counter::default(),
            height: Gauge::default(),
            rounds: Counter::default(),
            round: Gauge::default(),
            timeouts: Counter::default(),
            view_changes: Counter::default(),
            mempool_size: Gauge::default(),
            txs_admitted: Counter::default(),
            txs_rejected: Family::default(),
            api_latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            peers: Gauge::default(),
            watch_streams: Gauge::default(),
            frames_dropped: Counter::default(),
            consensus_refused: Family::default(),
            probes: Family::default(),
        };
        registry.register("commits", "Blocks committed", m.commits.clone());
        registry.register("height", "Last committed height", m.height.clone());
        registry.register("rounds", "Consensus rounds entered", m.rounds.clone());
        registry.register("round", "Current consensus round", m.round.clone());
        registry.register("timeouts", "Local round timeouts", m.timeouts.clone());
        registry.register(
            "view_changes",
            "Rounds entered through a timeout certificate",
            m.view_changes.clone(),
        );
        registry.register(
            "mempool_size",
            "Transactions pending",
            m.mempool_size.clone(),
        );
        registry.register(
            "txs_admitted",
            "Transactions admitted to the mempool",
            m.txs_admitted.clone(),
        );
        registry.register(
            "txs_rejected",
            "Transactions refused at admission, by reason",
            m.txs_rejected.clone(),
        );
        registry.register(
            "api_request_seconds",
            "API latency by route and status",
            m.api_latency.clone(),
        );
        registry.register("peers", "Connected validator peers", m.peers.clone());
        registry.register(
            "watch_streams",
            "Open watch streams",
            m.watch_streams.clone(),
        );
        registry.register(
            "frames_dropped",
            "Inbound frames dropped (queue full or undecodable)",
            m.frames_dropped.clone(),
        );
        registry.register(
            "consensus_refused",
            "Consensus messages refused, by reason (e.g. Equivocation: one key sent two \
             different votes or proposals in a round; Signature: forgery; StaleRound: \
             late, harmless)",
            m.consensus_refused.clone(),
        );
        registry.register("probes", "Health probes run, by result", m.probes.clone());
        Metrics { registry, ..m }
    }

    /// Where the libp2p transport registers its byte counters
    /// (`palisade_p2p_libp2p_bandwidth_bytes_total{protocols,direction}`).
    pub(crate) fn p2p_registry(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("p2p")
    }

    /// Count a rejected transaction.
    pub(crate) fn reject(&self, reason: &str) {
        self.txs_rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Count a refused consensus message by its error variant.
    pub(crate) fn refuse_consensus(&self, error: &palisade_consensus::hotstuff::ConsensusError) {
        self.consensus_refused
            .get_or_create(&ReasonLabel {
                reason: error.kind(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
