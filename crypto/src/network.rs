//! `network.json`: the client's trust anchor.

use serde::{Deserialize, Serialize};

use crate::{Digest, PublicKey, ValidatorSet};

/// One node's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEndpoint {
    /// Human name (e.g. "node0").
    pub name: String,
    /// The node's validator key.
    pub public_key: PublicKey,
    /// Base URL of its HTTP API, e.g. `http://127.0.0.1:7100`.
    pub api_url: String,
    /// Its libp2p address, e.g. `/ip4/127.0.0.1/tcp/7000`.
    pub p2p_addr: String,
}

/// A datacenter's network file. Clients trust its genesis validator set and
/// nothing else; everything later is followed through certified epoch changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkFile {
    /// Chain id (one per datacenter).
    pub chain_id: String,
    /// Datacenter name, used when another datacenter serves this one's services.
    pub datacenter: String,
    /// Hash of the genesis document.
    pub genesis_hash: Digest,
    /// The genesis validator set (epoch 0).
    pub validators: ValidatorSet,
    /// Where the nodes are.
    pub nodes: Vec<NodeEndpoint>,
}

impl NetworkFile {
    /// Parse and check a network file.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: NetworkFile =
            serde_json::from_str(text).map_err(|e| format!("network file: {e}"))?;
        file.validators
            .validate()
            .map_err(|e| format!("network file validators: {e}"))?;
        if file.nodes.is_empty() {
            return Err("network file lists no nodes".into());
        }
        Ok(file)
    }
}
