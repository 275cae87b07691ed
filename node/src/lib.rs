//! palisade-node: the validator process around the pure consensus core and
//! registry state machine.
//!
//! - [`config`]: the TOML configuration ([`NodeConfig`]).
//! - [`storage`]: RocksDB (and in-memory) storage: blocks, certificates,
//!   safety state, the authenticated map, indexes.
#![forbid(unsafe_code)]

mod api;
pub mod config;
mod context;
mod driver;
mod error;
mod mempool;
mod metrics;
mod net;
mod node;
mod probe;
mod shutdown;
pub mod storage;

pub use config::{ApiConfig, ConsensusConfig, MempoolConfig, NodeConfig, PeerConfig, ProbeConfig};
pub use error::{ConfigError, NodeError, StorageError};
pub use net::peer_id_of;
pub use node::{load_genesis, run, start, NodeHandle};
pub use storage::NodeStore;
