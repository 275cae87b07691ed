//! Cross-datacenter links (DESIGN.md "Datacenters"): each node, on its own
//! and off the consensus path, imports other datacenters' certified state
//! into per-link mirrors and serves it read-only with the remote proof.
//!
//! - [`export`]: what a node serves of its own chain (change index reads,
//!   snapshot pages); never a mirror, so records are not re-exported.
//! - [`mirror`]: the remote tree in `data_dir/links/<chain_id>/`, changed only
//!   to roots the remote validators certified.
//! - [`import`]: the polling task: newest certificate from f+1 remote nodes,
//!   verified against the remote trust chain, delta checked by the mirror's
//!   root; node switching, partition and stall detection, equivocation.

pub mod export;
mod import;
mod metrics;
pub mod mirror;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use palisade_crypto::dc::LinkStatus;
use palisade_crypto::{Digest, NetworkFile};

use crate::config::LinkConfig;
use crate::error::StorageError;
use mirror::Mirror;

pub(crate) use import::run_link;
pub use import::{HttpSource, ImportTiming, Importer, RoundOutcome, Source};
pub(crate) use metrics::LinkMetrics;

/// Why a link could not be set up, or an import step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The link's configuration is unusable.
    #[error("link to {datacenter}: {reason}")]
    Config {
        /// The datacenter named.
        datacenter: String,
        /// What is wrong.
        reason: String,
    },
    /// A file or folder could not be used.
    #[error("link storage: {0}")]
    Io(String),
    /// The mirror's store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The mirror could not be read.
    #[error("mirror read failed: {0}")]
    Mirror(String),
    /// A remote node sent a delta that cannot be applied.
    #[error("bad delta: {0}")]
    BadDelta(String),
    /// The delta applied, but to a root the remote validators did not certify.
    #[error("delta for height {height} gives root {computed:?}, certified root is {certified:?}")]
    RootMismatch {
        /// Remote height.
        height: u64,
        /// Root computed from the delta.
        computed: Digest,
        /// Root in the certified block.
        certified: Digest,
    },
    /// A certificate did not verify against the remote trust chain.
    #[error("bad certificate: {0}")]
    BadCertificate(String),
    /// The block-info chain is malformed (a lying node).
    #[error("bad block-info chain: {0}")]
    BadChain(String),
    /// The remote validators certified conflicting blocks.
    #[error("equivocation: {0}")]
    Equivocation(String),
    /// The link is frozen (evidence of equivocation); an operator must act.
    #[error("link frozen: {0}")]
    Frozen(String),
    /// A remote node could not be reached or answered badly.
    #[error("remote node {node}: {reason}")]
    Remote {
        /// The node's URL.
        node: String,
        /// What happened.
        reason: String,
    },
}

impl LinkError {
    /// The refusal reason label used in metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            LinkError::Config { .. } => "config",
            LinkError::Io(_) | LinkError::Storage(_) | LinkError::Mirror(_) => "local",
            LinkError::BadDelta(_) => "bad_delta",
            LinkError::RootMismatch { .. } => "root_mismatch",
            LinkError::BadCertificate(_) => "bad_certificate",
            LinkError::BadChain(_) => "bad_chain",
            LinkError::Equivocation(_) => "equivocation",
            LinkError::Frozen(_) => "frozen",
            LinkError::Remote { .. } => "unreachable",
        }
    }
}

/// One configured link: the remote network, its mirror and its status.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) network: NetworkFile,
    pub(crate) mirror: Mirror,
    pub(crate) status: Mutex<LinkStatus>,
    pub(crate) evidence_dir: std::path::PathBuf,
    /// Bytes read from the remote nodes (answers' bodies).
    pub(crate) bytes_in: Arc<std::sync::atomic::AtomicU64>,
    /// The imported remote height, sent after every round (remote watches
    /// wait on it).
    pub(crate) imported: tokio::sync::watch::Sender<u64>,
}

/// The node's links, by datacenter name.
#[derive(Debug, Default)]
pub(crate) struct Links {
    pub(crate) by_name: BTreeMap<String, Arc<Link>>,
}

impl Links {
    /// Open every configured link: read its network file, refuse a link to
    /// `own_chain_id`, open its mirror under `data_dir/links/<chain_id>/`.
    pub(crate) fn open(
        configs: &[LinkConfig],
        own_chain_id: &str,
        data_dir: &Path,
    ) -> Result<Self, LinkError> {
        let mut by_name = BTreeMap::new();
        for cfg in configs {
            let bad = |reason: String| LinkError::Config {
                datacenter: cfg.datacenter.clone(),
                reason,
            };
            let text = std::fs::read_to_string(&cfg.network_file)
                .map_err(|e| bad(format!("{}: {e}", cfg.network_file.display())))?;
            let network = NetworkFile::from_json(&text).map_err(bad)?;
            if network.chain_id == own_chain_id {
                return Err(bad(format!(
                    "{} is this node's own chain ({own_chain_id}); a link imports another datacenter",
                    cfg.network_file.display()
                )));
            }
            if network.datacenter != cfg.datacenter {
                return Err(bad(format!(
                    "{} names datacenter {:?}",
                    cfg.network_file.display(),
                    network.datacenter
                )));
            }
            let safe_chain = network
                .chain_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !network.chain_id.starts_with('.');
            if !safe_chain || network.chain_id.is_empty() || network.chain_id.len() > 128 {
                return Err(bad(format!(
                    "chain id {:?} is not usable as a folder name",
                    network.chain_id
                )));
            }
            if by_name.contains_key(&cfg.datacenter) {
                return Err(bad("linked twice".into()));
            }
            let dir = data_dir.join("links").join(&network.chain_id);
            let mirror = Mirror::open(&dir.join("mirror"))?;
            let status = initial_status(&network, &mirror)?;
            let imported = tokio::sync::watch::Sender::new(status.imported_height);
            by_name.insert(
                cfg.datacenter.clone(),
                Arc::new(Link {
                    network,
                    mirror,
                    status: Mutex::new(status),
                    evidence_dir: dir.join("evidence"),
                    bytes_in: Default::default(),
                    imported,
                }),
            );
        }
        Ok(Links { by_name })
    }

    /// Every link's status.
    pub(crate) fn statuses(&self) -> Vec<LinkStatus> {
        self.by_name
            .values()
            .map(|l| l.status.lock().expect("link status lock").clone())
            .collect()
    }
}

/// The operator's act: clear the freeze of the link to `datacenter` in the
/// node configured by `config` (the node must be stopped: its mirror is
/// opened here). Returns the reason it was frozen, if it was.
pub fn unfreeze(config: &crate::NodeConfig, datacenter: &str) -> Result<Option<String>, LinkError> {
    let cfg = config
        .links
        .iter()
        .find(|l| l.datacenter == datacenter)
        .ok_or_else(|| LinkError::Config {
            datacenter: datacenter.to_string(),
            reason: "no such link in this config".into(),
        })?;
    let text = std::fs::read_to_string(&cfg.network_file)
        .map_err(|e| LinkError::Io(format!("{}: {e}", cfg.network_file.display())))?;
    let network = NetworkFile::from_json(&text).map_err(LinkError::Io)?;
    let dir = config
        .data_dir
        .join("links")
        .join(&network.chain_id)
        .join("mirror");
    if !dir.exists() {
        return Ok(None);
    }
    let mirror = Mirror::open(&dir)?;
    let reason = mirror.frozen()?;
    if reason.is_some() {
        mirror.unfreeze()?;
        tracing::warn!(%datacenter, "link unfrozen by the operator");
    }
    Ok(reason)
}

fn initial_status(network: &NetworkFile, mirror: &Mirror) -> Result<LinkStatus, LinkError> {
    let record = mirror.record()?;
    let frozen = mirror.frozen()?;
    Ok(LinkStatus {
        datacenter: network.datacenter.clone(),
        chain_id: network.chain_id.clone(),
        state: match &record {
            _ if frozen.is_some() => "frozen",
            None => "syncing",
            Some(_) => "partitioned",
        }
        .into(),
        imported_height: record.as_ref().map_or(0, |r| r.info.height),
        imported_timestamp_ms: record.as_ref().map_or(0, |r| r.info.timestamp_ms),
        remote_height: record.as_ref().map_or(0, |r| r.info.height),
        since_progress_ms: 0,
        frozen_reason: frozen,
    })
}
