//! Starting and stopping a node: storage, recovery, transport, API, driver.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use libp2p::Multiaddr;
use palisade_consensus::hotstuff::{Config as CoreConfig, Recovery, Replica, SafetyState};
use palisade_consensus::state::{Genesis, RegistryExecutor, StateReader};
use palisade_crypto::{PublicKey, SecretKey};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::NodeConfig;
use crate::context::{Context, Progress};
use crate::driver::{now_ms, report, Driver};
use crate::error::NodeError;
use crate::mempool::{Mempool, MempoolLimits};
use crate::metrics::Metrics;
use crate::net::{self, MAX_FRAME};
use crate::shutdown::ShutdownTrigger;
use crate::storage::NodeStore;
use crate::verdicts::VerdictCache;
use crate::{api, probe};

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    api_addr: SocketAddr,
    p2p_addr: Multiaddr,
    public_key: PublicKey,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
    behind: Arc<Notify>,
}

impl NodeHandle {
    /// The bound API address (useful with port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }
    /// The bound libp2p address.
    pub fn p2p_addr(&self) -> &Multiaddr {
        &self.p2p_addr
    }
    /// This validator's key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }
    /// Resolves when the node finds itself behind its peers' retention
    /// window while running (it can no longer sync blocks): restarting it
    /// catches up from a snapshot. `run` does that restart.
    pub async fn wait_behind(&self) {
        self.behind.notified().await;
    }
    /// Stop every task and wait for them (RocksDB is closed when the last
    /// store handle drops).
    pub async fn stop(self) {
        self.trigger.trigger();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn setup(file: &std::path::Path, reason: impl std::fmt::Display) -> NodeError {
    NodeError::Setup {
        file: file.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Read and check a genesis file (JSON, the state machine's [`Genesis`]).
pub fn load_genesis(path: &std::path::Path) -> Result<Genesis, NodeError> {
    let text = std::fs::read_to_string(path).map_err(|e| setup(path, e))?;
    let genesis: Genesis = serde_json::from_str(&text).map_err(|e| setup(path, e))?;
    genesis.validate().map_err(|e| setup(path, e))?;
    Ok(genesis)
}

/// Rebuild the replica's [`Recovery`] from the store. The executor may be
/// ahead of the ledger index (a crash between the state commit and the ledger
/// write): the missing heights are rebuilt from the stored blocks. It may be
/// behind it (the state commit is written without the WAL, and a crash
/// loses what no flush persisted): the committed blocks above it are
/// executed again first ([`replay_committed`]).
pub(crate) fn recovery(
    store: &NodeStore,
    executor: &mut RegistryExecutor<NodeStore>,
) -> Result<Recovery, NodeError> {
    replay_committed(store, executor)?;
    // The genesis state or the heights just executed again: durable before
    // anything runs (one flush at start).
    store.flush_state()?;
    let meta = executor.committed_meta().clone();
    let inconsistent = |what: String| NodeError::Consensus(format!("store inconsistent: {what}"));
    let hs = meta.height;
    let hl = store.committed_height()?;
    if hl > hs {
        return Err(inconsistent(format!("ledger at {hl} above state at {hs}")));
    }
    let root = if hs == 0 {
        meta.genesis_info()
    } else if hl == hs {
        store
            .block_info(hs)?
            .ok_or_else(|| inconsistent(format!("no block info at {hs}")))?
    } else {
        let mut infos = Vec::new();
        let mut id = meta.block_id;
        for h in (hl + 1..=hs).rev() {
            let block = store
                .pending_block(&id)?
                .ok_or_else(|| inconsistent(format!("committed block {id} at {h} missing")))?;
            id = block.parent_id();
            infos.push(block.info());
        }
        infos.reverse();
        store.commit_ledger(&infos, None)?;
        store.sync()?;
        info!(
            from = hl + 1,
            to = hs,
            "rebuilt the ledger index after a crash"
        );
        infos.pop().expect("at least one height")
    };
    let validators = StateReader::at(store, hs)
        .validators()
        .map_err(|e| inconsistent(e.to_string()))?;
    let mut committed = Vec::new();
    let mut h = hs;
    while h > 0 && committed.len() < 64 {
        match store.committed_block(h)? {
            Some(c) if c.info.height == h => committed.push(c),
            _ => break,
        }
        h -= 1;
    }
    committed.reverse();
    if committed.last().is_some_and(|c| c.info != root) {
        committed.clear();
    }
    let blocks = store
        .pending_blocks()?
        .into_iter()
        .filter(|b| b.height > hs)
        .collect();
    let safety = store
        .safety_state()?
        .unwrap_or_else(|| SafetyState::new(validators.epoch));
    Ok(Recovery {
        safety,
        root,
        root_qc: None,
        validators,
        committed,
        blocks,
    })
}

/// Bound on the heights executed again at start: far above what a flush
/// period leaves unflushed (the memtables), far below a corrupt store's
/// nonsense (which is then refused as inconsistent, as before).
const MAX_REPLAY_HEIGHTS: u64 = 1 << 20;

/// Execute again the committed blocks above the state's height, up to the
/// ledger's, through the executor's own path (what a replica does with
/// blocks it accepts: execute, check the result against the block, commit),
/// from the committed log, or for a height the log lacks (its commit QC died
/// with the process) from the stored block its ledger entry names. Each
/// result must equal the recorded block info: a mismatch is a corrupt store.
pub(crate) fn replay_committed(
    store: &NodeStore,
    executor: &mut RegistryExecutor<NodeStore>,
) -> Result<u64, NodeError> {
    use palisade_consensus::executor::{ExecutionContext, Executor};
    let inconsistent = |what: String| NodeError::Consensus(format!("store inconsistent: {what}"));
    let hs = executor.committed_meta().height;
    let hl = store.committed_height()?;
    if hl <= hs || hl - hs > MAX_REPLAY_HEIGHTS {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    for h in hs + 1..=hl {
        let info = store
            .block_info(h)?
            .ok_or_else(|| inconsistent(format!("no block info at {h}, ledger at {hl}")))?;
        let block = match store.committed_block(h)? {
            Some(c) if c.info == info => c.block,
            _ => store.pending_block(&info.block_id)?.ok_or_else(|| {
                inconsistent(format!("committed block {} at {h} missing", info.block_id))
            })?,
        };
        let ctx = ExecutionContext {
            parent_id: block.parent_id(),
            block_id: info.block_id,
            height: h,
            epoch: block.epoch,
            timestamp_ms: block.timestamp_ms,
        };
        let result = executor
            .execute(&ctx, &block.payload)
            .map_err(|e| inconsistent(format!("executing committed height {h} again: {e}")))?;
        if result.state_root != info.state_root || result.tx_root != info.tx_root {
            return Err(inconsistent(format!(
                "committed height {h} executes to another state root"
            )));
        }
        executor
            .commit(&info.block_id)
            .map_err(|e| inconsistent(format!("committing height {h} again: {e}")))?;
    }
    info!(
        from = hs + 1,
        to = hl,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "executed the committed blocks above the state's height again"
    );
    Ok(hl - hs)
}

/// Start a node from `config` and return once its listeners are bound.
pub async fn start(config: NodeConfig) -> Result<NodeHandle, NodeError> {
    config.validate()?;
    let key: SecretKey = palisade_keys::load_key_file(&config.key_file)?;
    let me = key.public();
    let genesis = load_genesis(&config.genesis_file)?;
    let attested = genesis.params.lease_mode == palisade_consensus::state::LeaseMode::Attested;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| setup(&config.data_dir, e))?;
    // Before the database opens: finish or drop an earlier snapshot install,
    // and catch up from a certified snapshot when the peers pruned what this
    // node lacks (blocking HTTP, off the runtime).
    let catch_up_config = config.clone();
    tokio::task::spawn_blocking(move || crate::snapshot::at_start(&catch_up_config, &me))
        .await
        .map_err(|e| setup(&config.data_dir, e))?
        .map_err(|e| setup(&config.data_dir, e))?;
    let store = NodeStore::open_rocks(&config.data_dir.join("db"))?;
    // One verdict cache for the consensus core, the block executor and
    // admission: a transaction's signature is verified once, at admission.
    let verdicts = Arc::new(VerdictCache::default());
    let executor = RegistryExecutor::open(store.clone(), &genesis)
        .map_err(|e| setup(&config.genesis_file, e))?
        .with_verifier(verdicts.clone());
    let mut executor = executor;
    let recovery = recovery(&store, &mut executor)?;
    let meta = executor.committed_meta().clone();
    store.sync()?;
    let validators = recovery.validators.clone();
    let member = validators.index_of(&me).is_some() || genesis.validators.index_of(&me).is_some();
    if !member && !config.consensus.learner {
        return Err(setup(
            &config.key_file,
            format!(
                "key {me} is in no validator set this node knows (genesis, epoch {}); \
                 set consensus.learner = true to follow the chain until an epoch names it",
                validators.epoch
            ),
        ));
    }
    if !member {
        info!(key = %me.short(), epoch = validators.epoch, "not a validator yet: following as a learner");
    }
    let mut core = CoreConfig::new(genesis.chain_id.clone());
    core.genesis_hash = genesis.hash();
    core.base_timeout_ms = config.consensus.round_timeout_ms;
    core.max_clock_drift_ms = genesis.params.max_timestamp_drift_ms;
    core.retain_committed = config.consensus.retain_committed;
    core.max_payload_bytes = (genesis.params.max_block_bytes as usize).min(MAX_FRAME / 2);
    let replica = Replica::recover(core, key.clone(), executor, recovery, now_ms())
        .map_err(|e| NodeError::Consensus(e.to_string()))?
        .with_verifier(verdicts.clone());
    info!(key = %me.short(), height = meta.height, round = replica.round(), "replica ready");

    let (trigger, shutdown) = ShutdownTrigger::new();
    let peers = config.resolve_peers(&me)?;
    let mut metrics = Metrics::new();
    let (net, inbound, p2p_addr) = net::start(
        &key,
        config.p2p_multiaddr()?,
        peers.clone(),
        config.fault_injection,
        shutdown.clone(),
        metrics.p2p_registry(),
    )
    .await?;
    let link_metrics = crate::links::LinkMetrics::register(metrics.links_registry());
    let limits = MempoolLimits {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
        max_txs: config.mempool.max_txs,
        max_per_signer: config.mempool.max_per_signer,
        max_tx_bytes: genesis.params.max_tx_bytes as usize,
        retry_after: Duration::from_millis(3 * config.consensus.round_timeout_ms),
    };
    let links = crate::links::Links::open(&config.links, &genesis.chain_id, &config.data_dir)
        .map_err(|e| NodeError::Setup {
            file: "links".into(),
            reason: e.to_string(),
        })?;
    let ctx = Arc::new(Context {
        links,
        store,
        chain_id: genesis.chain_id.clone(),
        key: me,
        mempool: Mutex::new(Mempool::new(limits.clone())),
        limits,
        verdicts,
        progress: watch::channel(Progress::default()).0,
        commits: broadcast::channel(config.api.watch_buffer).0,
        metrics,
        net,
        api: config.api.clone(),
        byzantine: crate::byzantine::Byzantine::new(&config.byzantine),
        fault_injection: config.fault_injection,
        tx_ready: Notify::new(),
        gossip: Mutex::new(Vec::new()),
        gossip_ready: Notify::new(),
        receipt_trees: Default::default(),
        validators: RwLock::new(validators),
        watch_streams: AtomicUsize::new(0),
        peers,
        peer_source: config.clone(),
        shutdown: shutdown.clone(),
        leases: crate::leases::Leases::new(
            genesis.chain_id.clone(),
            attested,
            crate::leases::now_ms(),
        ),
        snapshot_pins: Default::default(),
    });
    let api_addr = config.api_socket_addr()?;
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|e| NodeError::Io {
            what: format!("API listener on {api_addr}"),
            reason: e.to_string(),
        })?;
    let api_addr = listener.local_addr().map_err(|e| NodeError::Io {
        what: "API listener".into(),
        reason: e.to_string(),
    })?;
    info!(%api_addr, "API listening");
    let mut tasks = Vec::new();
    let router = api::router(ctx.clone());
    let mut api_stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let router = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            api_stop.wait().await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "API server failed");
        }
    }));
    tasks.push(tokio::spawn(ctx.clone().run_gossip(shutdown.clone())));
    let driver = Driver::new(ctx.clone(), replica, inbound, config.consensus.clone());
    let driver_stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        report(driver.run(driver_stop).await);
    }));
    for link in ctx.links.by_name.values() {
        tasks.push(tokio::spawn(crate::links::run_link(
            link.clone(),
            crate::links::ImportTiming::default(),
            link_metrics.clone(),
            shutdown.clone(),
        )));
    }
    if attested {
        let reporter = crate::leases::Reporter::new(
            ctx.clone(),
            SecretKey::from_seed(key.seed()),
            genesis.params.max_tx_bytes as usize,
        );
        tasks.push(tokio::spawn(reporter.run(shutdown.clone())));
    }
    tasks.push(tokio::spawn(crate::storage::run_flusher(
        ctx.store.clone(),
        shutdown.clone(),
    )));
    if config.storage.retain_heights > 0 {
        let retention = crate::storage::prune::Retention::Heights(config.storage.retain_heights);
        tasks.push(tokio::spawn(crate::storage::prune::run(
            ctx.store.clone(),
            retention,
            ctx.snapshot_pins.clone(),
            shutdown.clone(),
        )));
    }
    let behind = Arc::new(Notify::new());
    if config.storage.snapshot_catch_up && config.network_file.is_some() {
        tasks.push(tokio::spawn(crate::snapshot::watch_behind(
            ctx.store.clone(),
            config.clone(),
            me,
            behind.clone(),
            shutdown.clone(),
        )));
    }
    if config.probes.enabled {
        let prober = probe::Prober::new(ctx.clone(), key, config.probes.clone());
        tasks.push(tokio::spawn(prober.run(shutdown.clone())));
    }
    Ok(NodeHandle {
        api_addr,
        p2p_addr,
        public_key: me,
        trigger,
        tasks,
        behind,
    })
}

/// Run a node until SIGINT/SIGTERM; restart it when it finds itself behind
/// its peers' retention window (its start then catches up from a snapshot).
pub async fn run(config: NodeConfig) -> Result<(), NodeError> {
    loop {
        let node = start(config.clone()).await?;
        tokio::select! {
            _ = wait_for_signal() => {
                info!("stopping");
                node.stop().await;
                return Ok(());
            }
            _ = node.wait_behind() => {
                tracing::warn!("restarting to catch up from a snapshot");
                node.stop().await;
            }
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
