//! Growing and shrinking a running testnet's validator set
//! (`palisade-testnet add-node` / `remove-node`).
//!
//! Adding: a new key and node folder, its endpoint appended to
//! `network.json` (the running nodes read the file again at each epoch
//! change), the node started as a learner (`consensus.learner = true`: it
//! follows the chain without a vote), then, once it has caught up, the
//! authority's `ChangeValidators` with the newest verified set plus its key;
//! done when the new epoch has begun and names it. Removing: the authority's
//! `ChangeValidators` without the key, the new epoch awaited, then the
//! process stopped and its endpoint dropped from `network.json` (the folder
//! stays, marked removed, for inspection).

use std::time::{Duration, Instant};

use palisade_client::{load_network_file, Client, ClientConfig, Signer};
use palisade_crypto::{NetworkFile, NodeEndpoint, PublicKey, TxBody, Validator};
use palisade_keys::generate_key_file;

use super::layout::write_atomic;
use super::{free_port, stop, NodeRecord, Testnet, TestnetError};

/// How long a learner may take to catch up, and an epoch change to land.
const CATCH_UP: Duration = Duration::from_secs(120);

fn state(index: usize, reason: impl Into<String>) -> TestnetError {
    TestnetError::State {
        index,
        reason: reason.into(),
    }
}

fn client(net: &Testnet, index: usize) -> Result<(Client, Signer), TestnetError> {
    let network = load_network_file(&net.layout().network_file())
        .map_err(|e| state(index, format!("network file: {e}")))?;
    let client = Client::new(network, ClientConfig::default())
        .map_err(|e| state(index, format!("client: {e}")))?;
    let signer = Signer::load(&net.layout().authority_key())
        .map_err(|e| state(index, format!("authority key: {e}")))?;
    Ok((client, signer))
}

fn save_network(net: &Testnet, network: &NetworkFile) -> Result<(), TestnetError> {
    let path = net.layout().network_file();
    write_atomic(
        &path,
        &serde_json::to_string_pretty(network).expect("network encodes"),
    )
}

/// Submit the authority's `ChangeValidators` for `validators` and wait (bounded)
/// until every node in `watch` reports the epoch after `from_epoch`.
fn change(
    net: &Testnet,
    (client, signer): &mut (Client, Signer),
    index: usize,
    validators: Vec<Validator>,
    from_epoch: u64,
    watch: &[usize],
) -> Result<(), TestnetError> {
    client
        .execute(signer, TxBody::ChangeValidators { validators })
        .map_err(|e| state(index, format!("ChangeValidators: {e}")))?;
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let behind: Vec<usize> = watch
            .iter()
            .copied()
            .filter(|&i| net.node_status(i).map_or(true, |s| s.epoch <= from_epoch))
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(state(
                index,
                format!(
                    "epoch {} not reached by nodes {behind:?} within {CATCH_UP:?}",
                    from_epoch + 1
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Testnet {
    /// Nodes that are validators or learners now (not removed, not twins).
    pub fn members(&self) -> Vec<usize> {
        self.record
            .nodes
            .iter()
            .filter(|n| !n.removed && n.twin_of.is_none())
            .map(|n| n.index)
            .collect()
    }

    /// Add a node: start it as a learner, let it catch up, make it a
    /// validator from the next epoch on. Returns its index.
    pub fn add_node(&mut self) -> Result<usize, TestnetError> {
        let index = self.record.nodes.len();
        let template = self
            .members()
            .first()
            .copied()
            .ok_or_else(|| state(index, "the testnet has no node to copy settings from"))?;
        let key_path = self.layout.node_key(index);
        let key = generate_key_file(&key_path)
            .map_err(|e| state(index, format!("{}: {e}", key_path.display())))?;
        let p2p_addr = format!("/ip4/127.0.0.1/tcp/{}", free_port()?);
        let api = format!("127.0.0.1:{}", free_port()?);

        // Its config: the first member's, with its own key, ports and no
        // Byzantine mode, as a learner.
        let text = std::fs::read_to_string(self.layout.node_config(template))
            .map_err(|e| TestnetError::io(&self.layout.node_config(template), e))?;
        let mut config: toml::Table = text
            .parse()
            .map_err(|e| state(index, format!("node{template}'s config: {e}")))?;
        let relative = self.layout.relative_to_node_config(&key_path);
        config.insert("key_file".into(), relative.display().to_string().into());
        config.insert("listen_p2p".into(), p2p_addr.clone().into());
        config.insert("listen_api".into(), api.clone().into());
        config.remove("byzantine");
        let consensus = config
            .entry("consensus")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = consensus {
            t.insert("learner".into(), true.into());
        }
        let dir = self.layout.node_dir(index);
        std::fs::create_dir_all(&dir).map_err(|e| TestnetError::io(&dir, e))?;
        write_atomic(
            &self.layout.node_config(index),
            &format!(
                "# Generated by palisade-testnet add-node for node {index} (a learner until an epoch names its key).\n# Paths are relative to this file's folder.\n{}",
                toml::to_string_pretty(&config).expect("config encodes")
            ),
        )?;

        // Its endpoint in network.json before anything else: the running
        // nodes dial it at the epoch change, clients find it.
        let mut network = load_network_file(&self.layout.network_file())
            .map_err(|e| state(index, format!("network file: {e}")))?;
        network.nodes.push(NodeEndpoint {
            name: format!("node{index}"),
            public_key: key.public(),
            api_url: format!("http://{api}"),
            p2p_addr: p2p_addr.clone(),
        });
        save_network(self, &network)?;
        self.record.nodes.push(NodeRecord {
            index,
            public_key: key.public().to_hex(),
            api_url: format!("http://{api}"),
            p2p_addr,
            pid: None,
            twin_of: None,
            removed: false,
        });
        self.layout.save(&self.record)?;
        self.start(index)?;
        self.wait_api(index, Duration::from_secs(30))?;

        // Make it a validator; the set grows at the next epoch.
        let mut authority = client(self, index)?;
        let current = authority
            .0
            .validators()
            .map_err(|e| state(index, format!("current validators: {e}")))?;
        let power = current
            .validators
            .iter()
            .map(|v| v.power)
            .min()
            .unwrap_or(1);
        let mut next = current.validators.clone();
        next.push(Validator {
            key: key.public(),
            power,
        });
        let mut watch = self.members();
        watch.retain(|&i| self.record.nodes[i].pid.is_some_and(super::alive));
        change(self, &mut authority, index, next, current.epoch, &watch)?;
        Ok(index)
    }

    /// Remove node `index` from the validators (from the next epoch on),
    /// then stop it and drop it from `network.json`.
    pub fn remove_node(&mut self, index: usize) -> Result<(), TestnetError> {
        let node = self.node(index)?.clone();
        if node.removed {
            return Err(state(index, "already removed"));
        }
        if node.twin_of.is_some() {
            return Err(state(
                index,
                "a twin shares another node's key; stop it instead",
            ));
        }
        let key = PublicKey::from_hex(&node.public_key)
            .map_err(|e| state(index, format!("recorded key: {e}")))?;
        let mut authority = client(self, index)?;
        let current = authority
            .0
            .validators()
            .map_err(|e| state(index, format!("current validators: {e}")))?;
        if current.index_of(&key).is_none() {
            return Err(state(
                index,
                format!("not a validator of epoch {}", current.epoch),
            ));
        }
        let next: Vec<Validator> = current
            .validators
            .iter()
            .filter(|v| v.key != key)
            .cloned()
            .collect();
        if next.is_empty() {
            return Err(state(index, "the last validator cannot be removed"));
        }
        let mut watch = self.members();
        watch.retain(|&i| i != index && self.record.nodes[i].pid.is_some_and(super::alive));
        change(self, &mut authority, index, next, current.epoch, &watch)?;

        if let Some(pid) = node.pid.filter(|p| super::alive(*p)) {
            stop(pid, Duration::from_secs(10))?;
        }
        let mut network = load_network_file(&self.layout.network_file())
            .map_err(|e| state(index, format!("network file: {e}")))?;
        network.nodes.retain(|n| n.public_key != key);
        save_network(self, &network)?;
        let record = &mut self.record.nodes[index];
        record.pid = None;
        record.removed = true;
        self.layout.save(&self.record)?;
        Ok(())
    }
}
