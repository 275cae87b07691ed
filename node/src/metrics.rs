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
    pub(crate) commit_latency: Histogram,
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
            commit_latency: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
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
        registry.register(
            "commit_latency_seconds",
            "Time from a block's proposal (its leader's timestamp) to its commit on this node",
            m.commit_latency.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Where the libp2p transport registers its byte counters
    /// (`palisade_p2p_libp2p_bandwidth_bytes_total{protocols,direction}`).
    pub(crate) fn p2p_registry(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("p2p")
    }

    /// Where the cross-DC links register theirs (`palisade_link_*`).
    pub(crate) fn links_registry(&mut self) -> &mut Registry {
        self.registry.sub_registry_with_prefix("link")
    }

    /// Count committed blocks: height, commits and proposal-to-commit latency.
    pub(crate) fn committed(&self, timestamps_ms: impl Iterator<Item = u64>, top: u64) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut n = 0;
        for ts in timestamps_ms {
            self.commit_latency
                .observe(now_ms.saturating_sub(ts) as f64 / 1000.0);
            n += 1;
        }
        self.commits.inc_by(n);
        self.height.set(top as i64);
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

    /// The OpenMetrics 1.0 text exposition.
    pub(crate) fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The Prometheus text format 0.0.4, which every scraper and
    /// `promtool check metrics` read (see [`openmetrics_to_text`]).
    pub(crate) fn encode(&self) -> String {
        openmetrics_to_text(&self.encode_openmetrics())
    }
}

/// OpenMetrics text to the Prometheus text format 0.0.4. The two differ where
/// a family's name is not its samples' name: an OpenMetrics counter family
/// `x` has samples `x_total`, and its HELP and TYPE lines name `x`, which a
/// 0.0.4 parser reads as a different metric (promtool: "no help text" for
/// every counter). Here HELP and TYPE name the samples (`x_total`, `x_info`),
/// types 0.0.4 lacks become `gauge` or `untyped`, and `# UNIT` and `# EOF` go.
pub(crate) fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // HELP precedes TYPE in OpenMetrics; hold it until the type is known.
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (sample_name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                "stateset" | "gaugehistogram" => (name.to_string(), "gauge"),
                _ => (name.to_string(), "untyped"),
            };
            if let Some((help_name, text)) = help.take() {
                if help_name == name {
                    out += &format!("# HELP {sample_name} {}\n", text.replace("\\\"", "\""));
                }
            }
            out += &format!("# TYPE {sample_name} {kind}\n");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out += line;
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_help_and_type_name_their_samples() {
        let m = Metrics::new();
        m.commits.inc();
        m.reject("bad signature");
        let text = m.encode();
        assert!(
            text.contains("# HELP palisade_commits_total Blocks committed"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE palisade_commits_total counter\npalisade_commits_total 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE palisade_height gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        // Every sample has a TYPE line for exactly its family.
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = typed.last().expect("a sample after a TYPE line");
                assert!(
                    name == family
                        || ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(family.as_str())),
                    "{name} under TYPE {family}"
                );
            }
        }
    }
}
