//! Typed errors of the node library.

use std::path::PathBuf;

/// Why a configuration was refused. Every variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error, as text.
        reason: String,
    },
    /// The TOML did not parse or a field has the wrong type or is unknown.
    #[error("config: {0}")]
    Parse(String),
    /// A field parsed but its value is unusable.
    #[error("config field `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `consensus.round_timeout_ms`.
        field: &'static str,
        /// What was wrong and what is expected.
        reason: String,
    },
}

/// Why storage failed. Storage errors are fatal to the node: it stops rather
/// than run on a disk it cannot trust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// RocksDB refused an operation.
    #[error("rocksdb: {0}")]
    Rocks(String),
    /// Stored bytes did not decode (corruption or a format change).
    #[error("corrupt record in column family {cf}: {reason}")]
    Corrupt {
        /// Column family.
        cf: &'static str,
        /// Decoder's explanation.
        reason: String,
    },
    /// The store was written in another state layout (`storage::STATE_LAYOUT`).
    #[error(
        "the database holds state layout {found}, this binary reads layout {expected}: the \
         layouts compute different state roots, so this binary cannot continue that chain; \
         run the release that wrote it, or start a new network (new genesis, empty data dirs)"
    )]
    Layout {
        /// The layout the store is marked with (1: written before marks).
        found: u32,
        /// The layout this binary reads.
        expected: u32,
    },
}

impl From<rocksdb::Error> for StorageError {
    fn from(e: rocksdb::Error) -> Self {
        StorageError::Rocks(e.into_string())
    }
}

/// Why the node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Storage failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The key file could not be loaded.
    #[error("key file: {0}")]
    Key(#[from] palisade_keys::KeyError),
    /// The genesis or network file is unusable.
    #[error("{file}: {reason}")]
    Setup {
        /// Which file.
        file: String,
        /// What was wrong.
        reason: String,
    },
    /// A listener or the transport could not start.
    #[error("{what}: {reason}")]
    Io {
        /// What failed (e.g. "API listener on 127.0.0.1:7100").
        what: String,
        /// The error, as text.
        reason: String,
    },
    /// The consensus core or state machine refused to continue.
    #[error("consensus: {0}")]
    Consensus(String),
}
