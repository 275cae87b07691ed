//! Node configuration: a TOML file with documented defaults.
//!
//! Relative paths are resolved against the directory of the config file.
//! Unknown fields are refused (a typo must not silently fall back to a
//! default), and every check names the field it refuses.
//!
//! ```toml
//! data_dir = "data"                         # RocksDB lives in data/db
//! key_file = "node0.key"                    # palisade-keys JSON key file (0600)
//! genesis_file = "genesis.json"             # the state machine's genesis document
//! network_file = "network.json"             # peers: every node listed but this one
//! listen_p2p = "/ip4/127.0.0.1/tcp/7000"
//! listen_api = "127.0.0.1:7100"
//! log_level = "info"                        # RUST_LOG wins when set
//! fault_injection = false                   # enables POST /admin/partition and /admin/heal
//! byzantine = []                            # Byzantine test modes, e.g. ["forge-lookups"] (testnets only)
//!
//! [consensus]
//! round_timeout_ms = 1000                   # first round timeout; backs off on repeated timeouts
//! max_block_txs = 500
//! proposal_delay_ms = 0                     # leader waits this long for more txs when the mempool is non-empty
//! commit_linger_ms = 5                      # ... and this long for a first tx when its block would only carry a commit's certificate
//! retain_committed = 1024                   # committed blocks kept in memory for sync; older ones come from RocksDB
//! learner = false                           # start with a key in no known validator set: follow the chain, vote once an epoch names it
//!
//! [mempool]
//! max_txs = 20000
//! max_per_signer = 256
//!
//! [api]
//! max_body_bytes = 262144
//! wait_timeout_ms = 10000                   # bound on POST /v1/tx with wait = true
//! watch_buffer = 256                        # events buffered per watch stream before cut-off
//! max_watch_streams = 1024
//! max_watch_streams_per_client = 16         # per remote IP address (at most max_watch_streams_per_subnet)
//! max_watch_streams_per_subnet = 64         # per IPv4 /24 or IPv6 /48 (at most max_watch_streams)
//! watch_idle_timeout_ms = 30000             # a stream whose consumer reads nothing this long is closed
//! watch_heartbeat_ms = 5000                 # heartbeat events that must drain within watch_idle_timeout_ms
//! watch_max_stream_ms = 300000              # a stream ends after this long; the client resumes from its last synced height
//! max_concurrent_requests = 512             # requests in their handlers at once; more get 503 overloaded
//! watch_inline_max_bytes = 1048576          # larger watch updates are sent as `changed` (the client looks them up)
//!
//! [probes]
//! enabled = true
//! interval_secs = 5                         # default when a probe spec asks for 0
//! backoff_base_secs = 10
//! backoff_max_secs = 300
//! timeout_ms = 2000
//!
//! [storage]
//! retain_heights = 0                        # 0 = archive (keep every height); N = prune blocks, receipts and per-height indexes older than the last N heights
//! snapshot_catch_up = true                  # at start, install a certified snapshot from the network file's nodes when they pruned what this node lacks
//! catch_up_min_gap = 1000                   # ... or when this node is empty and they are more than this many heights ahead (0 = only when pruned)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use palisade_crypto::{NetworkFile, PublicKey};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// A peer given directly in the config (instead of, or besides, a network file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's validator key (hex); its libp2p identity derives from it.
    pub public_key: PublicKey,
    /// Its libp2p address, e.g. `/ip4/127.0.0.1/tcp/7001`.
    pub p2p_addr: String,
}

/// Consensus timing and block limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusConfig {
    /// Base round timeout in milliseconds (default 1000).
    pub round_timeout_ms: u64,
    /// Most transactions a leader puts in one block (default 500).
    pub max_block_txs: usize,
    /// How long a leader with a non-empty mempool waits to fill a block
    /// (default 0: propose at once; under load blocks still fill while the
    /// previous round completes). Measured on the 4-node testnet against the
    /// old 20 ms default: 450 vs 341 writes/s, single-client p50 21 vs 71 ms.
    pub proposal_delay_ms: u64,
    /// How long a leader with an empty mempool waits for a transaction when
    /// its block would only carry the QC that committed a block with
    /// transactions (default 5; capped at half the round timeout). Every
    /// replica forms that QC from the broadcast votes anyway, and a
    /// sequential client's next write, sent when its previous one commits,
    /// then rides in this block instead of waiting for the next round.
    pub commit_linger_ms: u64,
    /// Committed blocks the core keeps in memory for sync (default 1024);
    /// older history is served from RocksDB.
    pub retain_committed: usize,
    /// Start even though the key is in no validator set this node knows
    /// (genesis or a later epoch it followed): the node follows the chain as
    /// a non-voting learner and votes once an epoch names its key (default
    /// false, so that a wrong key file is an error, not a silent learner).
    pub learner: bool,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        ConsensusConfig {
            round_timeout_ms: 1000,
            max_block_txs: 500,
            proposal_delay_ms: 0,
            commit_linger_ms: 5,
            retain_committed: 1024,
            learner: false,
        }
    }
}

/// Mempool bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    /// Most transactions held in total (default 20000).
    pub max_txs: usize,
    /// Most transactions held per signer (default 256).
    pub max_per_signer: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 20_000,
            max_per_signer: 256,
        }
    }
}

/// HTTP API limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest accepted request body (default 256 KiB).
    pub max_body_bytes: usize,
    /// Longest a `wait: true` submission waits for its receipt (default 10 s).
    pub wait_timeout_ms: u64,
    /// Events buffered per watch stream; a consumer that falls further behind is cut off (default 256).
    pub watch_buffer: usize,
    /// Most concurrent watch streams (default 1024).
    pub max_watch_streams: usize,
    /// Most concurrent watch streams from one remote IP address (default
    /// 16, a 64th of the default global cap).
    pub max_watch_streams_per_client: usize,
    /// Most concurrent watch streams from one IPv4 /24 or IPv6 /48
    /// (default 64), so that a few neighbouring addresses cannot take every
    /// slot either.
    pub max_watch_streams_per_subnet: usize,
    /// A watch stream whose consumer takes no event for this long is closed
    /// and its slot freed (default 30 s).
    pub watch_idle_timeout_ms: u64,
    /// Every stream carries a heartbeat event this often (default 5 s); like
    /// every event it must be taken within `watch_idle_timeout_ms`, so a
    /// consumer that stopped reading is found even on a quiet namespace.
    pub watch_heartbeat_ms: u64,
    /// A stream ends after this long whatever its consumer does (default
    /// 5 min); the client resumes from its last `synced` height. This bounds
    /// how long any reader, reading or not, holds a slot (socket buffers can
    /// absorb heartbeats for a long time).
    pub watch_max_stream_ms: u64,
    /// Most requests inside their handlers at once (a stream counts only
    /// until its first byte); more are refused with 503 `overloaded` (default 512).
    pub max_concurrent_requests: usize,
    /// Largest watch `update` event sent whole; a larger one is announced as
    /// `changed` and the client looks the service up (default 1 MiB, at most
    /// 4 MiB: clients refuse events over 8 MiB).
    pub watch_inline_max_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 256 * 1024,
            wait_timeout_ms: 10_000,
            watch_buffer: 256,
            max_watch_streams: 1024,
            max_watch_streams_per_client: 16,
            max_watch_streams_per_subnet: 64,
            watch_idle_timeout_ms: 30_000,
            watch_heartbeat_ms: 5_000,
            watch_max_stream_ms: 300_000,
            max_concurrent_requests: 512,
            watch_inline_max_bytes: 1 << 20,
        }
    }
}

/// Active health probing of registered instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Whether this validator probes at all (default true).
    pub enabled: bool,
    /// Interval when a probe spec asks for 0 seconds (default 5).
    pub interval_secs: u64,
    /// First back-off after a failure (default 10 s), doubling up to `backoff_max_secs`.
    pub backoff_base_secs: u64,
    /// Longest back-off (default 300 s).
    pub backoff_max_secs: u64,
    /// Timeout of one probe (default 2000 ms).
    pub timeout_ms: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            enabled: true,
            interval_secs: 5,
            backoff_base_secs: 10,
            backoff_max_secs: 300,
            timeout_ms: 2000,
        }
    }
}

/// What history the node keeps on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Committed heights kept (blocks, certificates, block infos, receipts,
    /// per-height indexes); older ones are pruned in the background. 0 (the
    /// default) keeps everything: an archive node, which audits need, and
    /// the only choice until nodes catch up from snapshots (a node further
    /// behind than the window cannot be served the blocks it lacks).
    pub retain_heights: u64,
    /// At start, install a certified state snapshot from the network file's
    /// other nodes when they pruned the heights this node lacks, or when it
    /// is empty and they are more than `catch_up_min_gap` heights ahead.
    pub snapshot_catch_up: bool,
    /// See `snapshot_catch_up` (0 = only when the peers pruned).
    pub catch_up_min_gap: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            retain_heights: 0,
            snapshot_catch_up: true,
            catch_up_min_gap: 1000,
        }
    }
}

/// A node's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory for RocksDB and other node state.
    pub data_dir: PathBuf,
    /// The validator key file.
    pub key_file: PathBuf,
    /// The genesis document.
    pub genesis_file: PathBuf,
    /// A network file whose nodes (all but this one) are the peers.
    #[serde(default)]
    pub network_file: Option<PathBuf>,
    /// Peers listed directly.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// libp2p listen address (default `/ip4/127.0.0.1/tcp/7000`).
    #[serde(default = "default_p2p")]
    pub listen_p2p: String,
    /// HTTP API listen address (default `127.0.0.1:7100`).
    #[serde(default = "default_api")]
    pub listen_api: String,
    /// Log filter (default `info`); `RUST_LOG` wins when set.
    #[serde(default = "default_log")]
    pub log_level: String,
    /// Enables the transport filter and its admin routes (testnets only).
    #[serde(default)]
    pub fault_injection: bool,
    /// Byzantine test modes (see [`crate::ByzantineMode`]): ways this node
    /// lies on purpose, so that clients can be shown to reject it. Never set
    /// outside fault-injection testnets.
    #[serde(default)]
    pub byzantine: Vec<crate::ByzantineMode>,
    /// Consensus timing.
    #[serde(default)]
    pub consensus: ConsensusConfig,
    /// Mempool bounds.
    #[serde(default)]
    pub mempool: MempoolConfig,
    /// API limits.
    #[serde(default)]
    pub api: ApiConfig,
    /// Health probes.
    #[serde(default)]
    pub probes: ProbeConfig,
    /// Other datacenters this node imports (`[[links]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkConfig>,
    /// Retention of history.
    #[serde(default)]
    pub storage: StorageConfig,
}

/// A link to another datacenter: its name and its network file (the trust
/// anchor: its genesis validator set; relative paths are relative to the
/// config file, like every path here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The remote datacenter's name (as in its network.json).
    pub datacenter: String,
    /// Its network.json.
    pub network_file: PathBuf,
}

/// A TOML error in one line ("line 3, column 14: unknown variant ..."),
/// without the source excerpt and caret the error's Display draws, so a node
/// that refuses its config says why in one log line.
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map(|span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        // The line itself names the field (`interval_secs = "five"`).
        let source = text.lines().nth(line - 1).unwrap_or("").trim();
        format!("line {line}, column {column} (`{source}`): ")
    });
    format!(
        "{}{}",
        at.unwrap_or_default(),
        e.message().trim().replace('\n', " ")
    )
}

fn default_p2p() -> String {
    "/ip4/127.0.0.1/tcp/7000".into()
}
fn default_api() -> String {
    "127.0.0.1:7100".into()
}
fn default_log() -> String {
    "info".into()
}

impl NodeConfig {
    /// A config with defaults for everything but the three required paths.
    pub fn new(data_dir: PathBuf, key_file: PathBuf, genesis_file: PathBuf) -> Self {
        NodeConfig {
            data_dir,
            key_file,
            genesis_file,
            network_file: None,
            peers: Vec::new(),
            listen_p2p: default_p2p(),
            listen_api: default_api(),
            log_level: default_log(),
            fault_injection: false,
            byzantine: Vec::new(),
            consensus: ConsensusConfig::default(),
            mempool: MempoolConfig::default(),
            api: ApiConfig::default(),
            probes: ProbeConfig::default(),
            links: Vec::new(),
            storage: StorageConfig::default(),
        }
    }

    /// Read, parse, resolve relative paths and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut config = Self::from_toml(&text)?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parse and validate TOML text (paths stay as written).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: NodeConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(one_line(text, &e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a node config always serializes")
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.key_file);
        fix(&mut self.genesis_file);
        if let Some(n) = self.network_file.as_mut() {
            fix(n);
        }
        for link in &mut self.links {
            fix(&mut link.network_file);
        }
    }

    /// Check every field that parsing alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &'static str, reason: String| Err(ConfigError::Invalid { field, reason });
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty".into());
        }
        if self.key_file.as_os_str().is_empty() {
            return invalid("key_file", "must not be empty".into());
        }
        if self.genesis_file.as_os_str().is_empty() {
            return invalid("genesis_file", "must not be empty".into());
        }
        self.p2p_multiaddr()?;
        self.api_socket_addr()?;
        for peer in &self.peers {
            if peer.p2p_addr.parse::<Multiaddr>().is_err() {
                return invalid(
                    "peers.p2p_addr",
                    format!(
                        "{:?} is not a multiaddr like /ip4/127.0.0.1/tcp/7001",
                        peer.p2p_addr
                    ),
                );
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return invalid(
                "log_level",
                format!(
                    "{:?} is not a tracing filter (try \"info\")",
                    self.log_level
                ),
            );
        }
        let c = &self.consensus;
        if !(10..=600_000).contains(&c.round_timeout_ms) {
            return invalid(
                "consensus.round_timeout_ms",
                format!("{} is outside 10..=600000", c.round_timeout_ms),
            );
        }
        if !(1..=10_000).contains(&c.max_block_txs) {
            return invalid(
                "consensus.max_block_txs",
                format!("{} is outside 1..=10000", c.max_block_txs),
            );
        }
        if c.retain_committed < 4 {
            return invalid("consensus.retain_committed", "must be at least 4".into());
        }
        if c.proposal_delay_ms >= c.round_timeout_ms {
            return invalid(
                "consensus.proposal_delay_ms",
                "must be below consensus.round_timeout_ms".into(),
            );
        }
        if c.commit_linger_ms >= c.round_timeout_ms {
            return invalid(
                "consensus.commit_linger_ms",
                format!(
                    "{} is not below consensus.round_timeout_ms ({}); a linger acts as at most half the round timeout",
                    c.commit_linger_ms, c.round_timeout_ms
                ),
            );
        }
        let m = &self.mempool;
        if m.max_txs == 0 {
            return invalid("mempool.max_txs", "must be at least 1".into());
        }
        if m.max_per_signer == 0
            || m.max_per_signer > m.max_txs
            || m.max_per_signer as u64 > palisade_crypto::MAX_SEQUENCE_STEP
        {
            return invalid(
                "mempool.max_per_signer",
                format!(
                    "must be in 1..=mempool.max_txs ({}) and at most the consensus sequence step ({})",
                    m.max_txs,
                    palisade_crypto::MAX_SEQUENCE_STEP
                ),
            );
        }
        let a = &self.api;
        if !(1024..=16 << 20).contains(&a.max_body_bytes) {
            return invalid(
                "api.max_body_bytes",
                format!("{} is outside 1024..=16777216", a.max_body_bytes),
            );
        }
        if a.wait_timeout_ms == 0 || a.wait_timeout_ms > 120_000 {
            return invalid(
                "api.wait_timeout_ms",
                format!("{} is outside 1..=120000", a.wait_timeout_ms),
            );
        }
        if a.watch_buffer == 0 {
            return invalid("api.watch_buffer", "must be at least 1".into());
        }
        if a.max_watch_streams_per_client == 0 {
            return invalid(
                "api.max_watch_streams_per_client",
                "must be at least 1".into(),
            );
        }
        if a.max_watch_streams_per_subnet < a.max_watch_streams_per_client
            || a.max_watch_streams_per_subnet > a.max_watch_streams.max(1)
        {
            return invalid(
                "api.max_watch_streams_per_subnet",
                format!(
                    "{} is outside max_watch_streams_per_client..=max_watch_streams ({}..={})",
                    a.max_watch_streams_per_subnet,
                    a.max_watch_streams_per_client,
                    a.max_watch_streams
                ),
            );
        }
        if !(100..=3_600_000).contains(&a.watch_idle_timeout_ms) {
            return invalid(
                "api.watch_idle_timeout_ms",
                format!("{} is outside 100..=3600000", a.watch_idle_timeout_ms),
            );
        }
        if !(50..=a.watch_idle_timeout_ms).contains(&a.watch_heartbeat_ms) {
            return invalid(
                "api.watch_heartbeat_ms",
                format!(
                    "{} is outside 50..=watch_idle_timeout_ms ({})",
                    a.watch_heartbeat_ms, a.watch_idle_timeout_ms
                ),
            );
        }
        if !(500..=86_400_000).contains(&a.watch_max_stream_ms) {
            return invalid(
                "api.watch_max_stream_ms",
                format!("{} is outside 500..=86400000", a.watch_max_stream_ms),
            );
        }
        if !(256..=4 << 20).contains(&a.watch_inline_max_bytes) {
            return invalid(
                "api.watch_inline_max_bytes",
                format!("{} is outside 256..=4194304", a.watch_inline_max_bytes),
            );
        }
        if a.max_concurrent_requests == 0 {
            return invalid("api.max_concurrent_requests", "must be at least 1".into());
        }
        let p = &self.probes;
        if p.interval_secs == 0 {
            return invalid("probes.interval_secs", "must be at least 1".into());
        }
        if p.backoff_base_secs == 0 || p.backoff_base_secs > p.backoff_max_secs {
            return invalid(
                "probes.backoff_base_secs",
                "must be in 1..=probes.backoff_max_secs".into(),
            );
        }
        if p.timeout_ms == 0 {
            return invalid("probes.timeout_ms", "must be at least 1".into());
        }
        Ok(())
    }

    /// The libp2p listen address.
    pub fn p2p_multiaddr(&self) -> Result<Multiaddr, ConfigError> {
        self.listen_p2p.parse().map_err(|_| ConfigError::Invalid {
            field: "listen_p2p",
            reason: format!(
                "{:?} is not a multiaddr like /ip4/127.0.0.1/tcp/7000",
                self.listen_p2p
            ),
        })
    }

    /// The API listen address.
    pub fn api_socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen_api.parse().map_err(|_| ConfigError::Invalid {
            field: "listen_api",
            reason: format!(
                "{:?} is not an address like 127.0.0.1:7100",
                self.listen_api
            ),
        })
    }

    /// Every peer: those listed directly plus the network file's nodes, less
    /// `me`. The node reads it again at each epoch change, so that nodes an
    /// operator added to the network file since are dialled (validators
    /// joining, learners following).
    pub fn resolve_peers(&self, me: &PublicKey) -> Result<Vec<PeerConfig>, ConfigError> {
        let mut peers = self.peers.clone();
        if let Some(path) = &self.network_file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let file = NetworkFile::from_json(&text).map_err(|reason| ConfigError::Invalid {
                field: "network_file",
                reason,
            })?;
            for node in file.nodes {
                if node.p2p_addr.parse::<Multiaddr>().is_err() {
                    return Err(ConfigError::Invalid {
                        field: "network_file",
                        reason: format!(
                            "node {} has p2p_addr {:?}, not a multiaddr",
                            node.name, node.p2p_addr
                        ),
                    });
                }
                if !peers.iter().any(|p| p.public_key == node.public_key) {
                    peers.push(PeerConfig {
                        public_key: node.public_key,
                        p2p_addr: node.p2p_addr,
                    });
                }
            }
        }
        peers.retain(|p| &p.public_key != me);
        Ok(peers)
    }
}
