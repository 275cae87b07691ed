//! palisade-node: the validator process, an I/O shell around the pure
//! consensus core (`palisade_consensus::hotstuff`) and the registry state
//! machine (`palisade_consensus::state`).
//!
//! - [`config`]: the TOML configuration ([`NodeConfig`]), documented defaults,
//!   errors that name the field.
//! - [`snapshot`]: catch-up at start from a certified state snapshot when
//!   the peers pruned what this node lacks (chunks proven against the
//!   certified root, installed atomically beside the database).
//! - [`storage`]: RocksDB column families (blocks, committed log,
//!   certificates, safety state, jmt nodes and values, receipts, indexes) and
//!   the same store in memory; implements the state machine's `StateStore`.
//! - the libp2p transport (TCP + Noise + Yamux, capped frames; the sender of a
//!   message is the authenticated validator), the mempool, the consensus
//!   driver (persist before send), the HTTP/JSON API with SSE watch and
//!   Prometheus metrics, and the health prober: internal, started by [`start`].
//!
//! Starting a node from a program (the testnet does this with generated
//! configs; `palisade-node run --config FILE` does it from a file):
//!
//! ```no_run
//! # async fn demo() -> Result<(), palisade_node::NodeError> {
//! use palisade_node::{NodeConfig, PeerConfig};
//! let mut config = NodeConfig::new("data/node0".into(), "node0.key".into(), "genesis.json".into());
//! config.listen_p2p = "/ip4/127.0.0.1/tcp/7000".into();
//! config.listen_api = "127.0.0.1:0".into(); // any free port
//! config.network_file = Some("network.json".into()); // or config.peers.push(PeerConfig { .. })
//! let node = palisade_node::start(config).await?;
//! println!("API on http://{}", node.api_addr());
//! node.stop().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod api;
mod byzantine;
pub mod config;
mod context;
mod driver;
mod error;
mod leases;
pub mod links;
mod mempool;
mod metrics;
mod net;
mod node;
mod probe;
mod scan;
mod shutdown;
pub mod snapshot;
pub mod storage;
mod verdicts;

pub use byzantine::ByzantineMode;
pub use config::{
    ApiConfig, ConsensusConfig, LinkConfig, MempoolConfig, NodeConfig, PeerConfig, ProbeConfig,
    StorageConfig,
};
pub use error::{ConfigError, NodeError, StorageError};
pub use net::peer_id_of;
pub use node::{load_genesis, run, start, NodeHandle};
pub use storage::NodeStore;
