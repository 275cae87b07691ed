//! Where a testnet keeps its files, and the record of its processes.
//!
//! ```text
//! DIR/network.json           the clients' trust anchor (chain id, genesis hash, validators, endpoints)
//! DIR/genesis.json           the genesis document every node starts from
//! DIR/testnet.json           this tool's record: nodes, ports, pids, node binary
//! DIR/keys/authority.key     the enrollment authority (1-of-1 on a testnet)
//! DIR/keys/demo.key          the demo service identity
//! DIR/keys/nodeI.key         validator keys
//! DIR/nodeI/node.toml        node configuration
//! DIR/nodeI/data/            RocksDB
//! DIR/nodeI/node.log         the node's log
//! ```
//!
//! One rule for paths: a [`Layout`] holds its root as an absolute path
//! (resolved once, against the working directory of the command that was
//! given `--dir`), so every command works from any directory with a relative
//! `--dir`; and a generated `node.toml` names its files relative to its own
//! folder (`data`, `../keys/node0.key`, `../genesis.json`), which is how
//! `palisade-node` resolves them, so the files mean the same thing wherever a
//! node is started from and the whole directory can be moved.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::TestnetError;

/// One node as recorded in `testnet.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Index, from 0.
    pub index: usize,
    /// Validator public key (hex).
    pub public_key: String,
    /// HTTP API base URL.
    pub api_url: String,
    /// libp2p listen address.
    pub p2p_addr: String,
    /// Pid of the running process, if started.
    pub pid: Option<u32>,
    /// True for an extra process sharing another validator's key (Twins).
    #[serde(default)]
    pub twin_of: Option<usize>,
    /// Removed from the validators by `remove-node` (never started again).
    #[serde(default)]
    pub removed: bool,
}

/// The whole `testnet.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestnetRecord {
    /// The `palisade-node` binary the nodes run.
    pub node_binary: PathBuf,
    /// Chain id.
    pub chain_id: String,
    /// Nodes (validators first, then twins).
    pub nodes: Vec<NodeRecord>,
}

/// `path` made absolute against the current directory (the one place a
/// relative `--dir` or `--node-bin` is resolved); an empty path stays as it is.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Paths inside a testnet directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `dir` (not created), made absolute against the
    /// current directory.
    pub fn new(dir: &Path) -> Self {
        Layout {
            root: absolute(dir),
        }
    }

    /// `path` (inside this layout) as a node config names it: relative to the
    /// folder of `DIR/nodeI/node.toml`.
    pub fn relative_to_node_config(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.root) {
            Ok(rel) => Path::new("..").join(rel),
            Err(_) => path.to_path_buf(),
        }
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `DIR/network.json`.
    pub fn network_file(&self) -> PathBuf {
        self.root.join("network.json")
    }
    /// `DIR/genesis.json`.
    pub fn genesis_file(&self) -> PathBuf {
        self.root.join("genesis.json")
    }
    /// `DIR/testnet.json`.
    pub fn record_file(&self) -> PathBuf {
        self.root.join("testnet.json")
    }
    /// `DIR/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// `DIR/keys/authority.key`.
    pub fn authority_key(&self) -> PathBuf {
        self.keys_dir().join("authority.key")
    }
    /// `DIR/keys/demo.key`.
    pub fn demo_key(&self) -> PathBuf {
        self.keys_dir().join("demo.key")
    }
    /// `DIR/keys/nodeI.key`.
    pub fn node_key(&self, i: usize) -> PathBuf {
        self.keys_dir().join(format!("node{i}.key"))
    }
    /// `DIR/nodeI`.
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{i}"))
    }
    /// `DIR/nodeI/node.toml`.
    pub fn node_config(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("node.toml")
    }
    /// `DIR/nodeI/node.log`.
    pub fn node_log(&self, i: usize) -> PathBuf {
        self.node_dir(i).join("node.log")
    }

    /// Read `testnet.json`.
    pub fn load(&self) -> Result<TestnetRecord, TestnetError> {
        let path = self.record_file();
        let text = fs::read_to_string(&path).map_err(|e| TestnetError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| TestnetError::Record {
            path,
            reason: e.to_string(),
        })
    }

    /// Write `testnet.json` atomically (write then rename).
    pub fn save(&self, record: &TestnetRecord) -> Result<(), TestnetError> {
        let text = serde_json::to_string_pretty(record).expect("record encodes");
        write_atomic(&self.record_file(), &text)
    }
}

/// Write `text` to `path` atomically (a temporary file beside it, then a
/// rename), so a reader (a node re-reading `network.json`) never sees half.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), TestnetError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, text).map_err(|e| TestnetError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| TestnetError::io(path, e))
}
