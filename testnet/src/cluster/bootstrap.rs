//! `up`: generate a testnet's keys, genesis, network file and node configs,
//! then start the nodes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_consensus::state::{Authority, Genesis, LeaseMode};
use palisade_crypto::{NetworkFile, NodeEndpoint, Validator};
use palisade_keys::{generate_key_file, load_key_file};

use crate::cluster::{free_port, Layout, NodeRecord, Testnet, TestnetError, TestnetRecord};

/// What `up` builds.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Testnet directory (created).
    pub dir: PathBuf,
    /// Number of validators.
    pub nodes: usize,
    /// Extra processes sharing the keys of validators 0..twins (Twins).
    pub twins: usize,
    /// Byzantine test modes per validator: `(index, mode)` with the node
    /// config's spelling (`forge-lookups`, ...); the node refuses a mode it
    /// does not know, naming the ones it does.
    pub byzantine: Vec<(usize, String)>,
    /// The `palisade-node` binary.
    pub node_binary: PathBuf,
    /// Chain id.
    pub chain_id: String,
    /// Base round timeout handed to every node.
    pub round_timeout_ms: u64,
    /// Datacenter name written to network.json (`local` by default).
    pub datacenter: String,
    /// How leases run out (`palisade-testnet up --leases`).
    pub lease_mode: LeaseMode,
    /// `[storage] retain_heights` of every node (0 = archive, the default).
    pub retain_heights: u64,
}

impl UpOptions {
    /// Defaults: 4 validators, no twins, chain `palisade-local`.
    pub fn new(dir: &Path, node_binary: &Path) -> Self {
        UpOptions {
            dir: dir.to_path_buf(),
            nodes: 4,
            twins: 0,
            byzantine: Vec::new(),
            node_binary: node_binary.to_path_buf(),
            chain_id: "palisade-local".into(),
            round_timeout_ms: 1000,
            datacenter: "local".into(),
            lease_mode: LeaseMode::BlockTime,
            retain_heights: 0,
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn write(path: &Path, text: &str) -> Result<(), TestnetError> {
    fs::write(path, text).map_err(|e| TestnetError::io(path, e))
}

/// Generate every file of a new testnet in `opts.dir` (which must not hold
/// one already) and return it, not yet started.
pub fn generate(opts: &UpOptions) -> Result<Testnet, TestnetError> {
    let layout = Layout::new(&opts.dir);
    if layout.record_file().exists() {
        return Err(TestnetError::State {
            index: 0,
            reason: format!(
                "{} already holds a testnet; use it, or `down` and remove the directory",
                opts.dir.display()
            ),
        });
    }
    if opts.nodes == 0 || opts.twins > opts.nodes {
        return Err(TestnetError::State {
            index: 0,
            reason: format!(
                "need at least 1 node and at most one twin per node (nodes {}, twins {})",
                opts.nodes, opts.twins
            ),
        });
    }
    fs::create_dir_all(layout.keys_dir()).map_err(|e| TestnetError::io(&layout.keys_dir(), e))?;
    let key_err = |path: &Path, e: palisade_keys::KeyError| TestnetError::State {
        index: 0,
        reason: format!("{}: {e}", path.display()),
    };

    let authority = generate_key_file(&layout.authority_key())
        .map_err(|e| key_err(&layout.authority_key(), e))?;
    generate_key_file(&layout.demo_key()).map_err(|e| key_err(&layout.demo_key(), e))?;
    let mut validators = Vec::new();
    for i in 0..opts.nodes {
        let key =
            generate_key_file(&layout.node_key(i)).map_err(|e| key_err(&layout.node_key(i), e))?;
        validators.push(Validator {
            key: key.public(),
            power: 1,
        });
    }
    let mut genesis = Genesis::new(
        opts.chain_id.clone(),
        now_ms(),
        validators.clone(),
        Authority {
            members: vec![authority.public()],
            threshold: 1,
        },
    );
    genesis.params.lease_mode = opts.lease_mode;
    genesis.validate().map_err(|e| TestnetError::State {
        index: 0,
        reason: format!("generated genesis is invalid: {e}"),
    })?;
    write(
        &layout.genesis_file(),
        &serde_json::to_string_pretty(&genesis).expect("genesis encodes"),
    )?;

    let total = opts.nodes + opts.twins;
    let mut records = Vec::new();
    for i in 0..total {
        let twin_of = (i >= opts.nodes).then(|| i - opts.nodes);
        let key_index = twin_of.unwrap_or(i);
        let p2p = format!("/ip4/127.0.0.1/tcp/{}", free_port()?);
        let api = format!("127.0.0.1:{}", free_port()?);
        records.push(NodeRecord {
            index: i,
            public_key: validators[key_index].key.to_hex(),
            api_url: format!("http://{api}"),
            p2p_addr: p2p,
            pid: None,
            twin_of,
            removed: false,
        });
    }
    let network = NetworkFile {
        chain_id: opts.chain_id.clone(),
        datacenter: opts.datacenter.clone(),
        genesis_hash: genesis.hash(),
        validators: genesis.validators.clone(),
        nodes: records[..opts.nodes]
            .iter()
            .map(|r| NodeEndpoint {
                name: format!("node{}", r.index),
                public_key: validators[r.index].key,
                api_url: r.api_url.clone(),
                p2p_addr: r.p2p_addr.clone(),
            })
            .collect(),
    };
    write(
        &layout.network_file(),
        &serde_json::to_string_pretty(&network).expect("network encodes"),
    )?;

    for r in &records {
        let dir = layout.node_dir(r.index);
        fs::create_dir_all(&dir).map_err(|e| TestnetError::io(&dir, e))?;
        let key_file = layout.node_key(r.twin_of.unwrap_or(r.index));
        write(
            &layout.node_config(r.index),
            &node_toml(&layout, r, &key_file, opts),
        )?;
    }
    let record = TestnetRecord {
        node_binary: crate::cluster::layout::absolute(&opts.node_binary),
        chain_id: opts.chain_id.clone(),
        nodes: records,
    };
    layout.save(&record)?;
    // The key files must load back (mode and format) before any node tries.
    load_key_file(&layout.authority_key()).map_err(|e| key_err(&layout.authority_key(), e))?;
    Ok(Testnet::from_parts(layout, record))
}

fn node_toml(layout: &Layout, r: &NodeRecord, key_file: &Path, opts: &UpOptions) -> String {
    let api = r.api_url.trim_start_matches("http://");
    let mut t = toml::Table::new();
    // Relative to this config's folder, the node's one rule (Layout docs).
    let s = |p: &Path| toml::Value::String(layout.relative_to_node_config(p).display().to_string());
    t.insert("data_dir".into(), "data".into());
    t.insert("key_file".into(), s(key_file));
    t.insert("genesis_file".into(), s(&layout.genesis_file()));
    t.insert("network_file".into(), s(&layout.network_file()));
    t.insert("listen_p2p".into(), r.p2p_addr.clone().into());
    t.insert("listen_api".into(), api.to_string().into());
    t.insert("log_level".into(), "info".into());
    t.insert("fault_injection".into(), true.into());
    let modes: Vec<toml::Value> = opts
        .byzantine
        .iter()
        .filter(|(i, _)| *i == r.index)
        .map(|(_, m)| toml::Value::String(m.clone()))
        .collect();
    if !modes.is_empty() {
        t.insert("byzantine".into(), modes.into());
    }
    let mut consensus = toml::Table::new();
    consensus.insert(
        "round_timeout_ms".into(),
        toml::Value::Integer(opts.round_timeout_ms as i64),
    );
    t.insert("consensus".into(), consensus.into());
    let mut probes = toml::Table::new();
    probes.insert("enabled".into(), true.into());
    t.insert("probes".into(), probes.into());
    if opts.retain_heights > 0 {
        let mut storage = toml::Table::new();
        storage.insert(
            "retain_heights".into(),
            toml::Value::Integer(opts.retain_heights as i64),
        );
        t.insert("storage".into(), storage.into());
    }
    format!(
        "# Generated by palisade-testnet for node {}{}.\n# Paths are relative to this file's folder.\n{}",
        r.index,
        r.twin_of
            .map(|o| format!(" (a twin sharing node {o}'s key)"))
            .unwrap_or_default(),
        toml::to_string_pretty(&t).expect("config encodes")
    )
}

/// Poll until at least `quorum` nodes report a committed height of at least
/// `height`, or `timeout` passes. `tick` sees the best height so far. Stops
/// at once, naming the node and showing its log's last lines, when a node
/// process exits meanwhile.
pub fn wait_for_height(
    net: &Testnet,
    height: u64,
    quorum: usize,
    timeout: Duration,
    mut tick: impl FnMut(u64),
) -> Result<u64, TestnetError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(exited) = net.exited_node() {
            return Err(exited);
        }
        let heights: Vec<u64> = net
            .status()
            .iter()
            .filter_map(|s| s.status.as_ref().ok().map(|st| st.height))
            .collect();
        let best = heights.iter().copied().max().unwrap_or(0);
        tick(best);
        if heights.iter().filter(|h| **h >= height).count() >= quorum {
            return Ok(best);
        }
        if Instant::now() > deadline {
            return Err(TestnetError::State {
                index: 0,
                reason: format!(
                    "only {} of {} nodes reached height {height} within {:?} (heights {heights:?}); see DIR/nodeI/node.log",
                    heights.iter().filter(|h| **h >= height).count(),
                    net.record().nodes.len(),
                    timeout
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
