//! The client: failover over the nodes of a network file, verified lookups,
//! submissions that wait for a verified commit receipt.
//!
//! Failover: every operation tries the nodes one after the other, starting
//! with the node that last answered. A node that cannot be reached, refuses,
//! or sends something that does not verify is skipped. When a whole pass
//! failed only because nodes were unreachable, the pass is repeated after a
//! backoff, up to [`ClientConfig::retries`] times.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_crypto::api::{
    EpochsResponse, HeartbeatRequest, HeartbeatResponse, NamespaceResponse, StatusResponse,
};
use palisade_crypto::{Hex, NetworkFile, SignedHeartbeat, ValidatorSet};

use crate::cache::Cache;
use crate::node::{self, encode_component, NodeApi};
use crate::verify::{verify_namespace, VerifiedNamespace};
use crate::{ClientError, Freshness, TrustedChain, VerifiedService};

/// How the client talks to the network.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bound on one HTTP request (connect to last byte).
    pub request_timeout: Duration,
    /// How long to wait for a submitted transaction to commit.
    pub commit_timeout: Duration,
    /// How long a node may hold a `wait: true` submission before answering
    /// "pending" (the node's `api.wait_timeout_ms`); such a request may take
    /// this long plus `request_timeout`.
    pub node_wait: Duration,
    /// Extra passes over the nodes when all were unreachable.
    pub retries: u32,
    /// Pause before the first extra pass (doubles each pass).
    pub retry_backoff: Duration,
    /// Pause between receipt polls.
    pub poll_interval: Duration,
    /// Freshness bound of lookups.
    pub freshness: Freshness,
    /// Number of nodes whose verified answers a lookup collects (the highest
    /// height wins; fewer when fewer nodes give one); 1 asks until one
    /// answer verifies.
    pub read_quorum: usize,
    /// Talk to this node only, instead of the network file's nodes.
    pub only_node: Option<String>,
    /// Directory of the offline cache of verified lookups (none: no cache).
    pub cache_dir: Option<PathBuf>,
    /// When no fresh answer can be had, serve the newest verified one
    /// (from the nodes or the cache) as [`LookupAnswer::Stale`] instead of
    /// failing.
    pub serve_stale: bool,
    /// Oldest stale answer served (by certified block time); an older one is
    /// refused as [`ClientError::Stale`] even with `serve_stale`.
    pub max_stale_age: Duration,
    /// A watch stream is closed and resumed after this long, so that a node
    /// that silently stalls is left within this bound.
    pub watch_stream_lifetime: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            request_timeout: Duration::from_secs(10),
            commit_timeout: Duration::from_secs(30),
            node_wait: Duration::from_secs(10),
            retries: 2,
            retry_backoff: Duration::from_millis(200),
            poll_interval: Duration::from_millis(200),
            freshness: Freshness::default(),
            read_quorum: 1,
            only_node: None,
            cache_dir: None,
            serve_stale: true,
            max_stale_age: Duration::from_secs(3600),
            watch_stream_lifetime: Duration::from_secs(60),
        }
    }
}

/// A lookup answer: fresh, or (when no fresh one can be had) the newest
/// verified answer known, marked stale with its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAnswer {
    /// Verified now, within the freshness bound.
    Fresh(VerifiedService),
    /// No node gave a fresh answer (none answered, or their certified state
    /// stopped advancing, as when the registry lost its quorum): the newest
    /// verified answer from the nodes or the on-disk cache, re-verified
    /// against the trusted validators but older than the freshness bound.
    Stale {
        /// The answer.
        service: VerifiedService,
        /// Age of its certified block time.
        age: Duration,
        /// Why no fresh answer was had.
        cause: ClientError,
    },
}

impl LookupAnswer {
    /// The verified answer, fresh or stale.
    pub fn service(&self) -> &VerifiedService {
        match self {
            LookupAnswer::Fresh(s) | LookupAnswer::Stale { service: s, .. } => s,
        }
    }

    /// Whether it is older than the freshness bound.
    pub fn is_stale(&self) -> bool {
        matches!(self, LookupAnswer::Stale { .. })
    }
}

/// A Palisade client for one network.
#[derive(Debug)]
pub struct Client {
    network: NetworkFile,
    nodes: Vec<NodeApi>,
    trust: RwLock<TrustedChain>,
    /// When f+1 nodes last answered which epoch changes follow the latest
    /// trusted epoch (see [`Client::verified`]).
    epochs_checked: Mutex<EpochCheck>,
    preferred: AtomicUsize,
    config: ClientConfig,
    pub(crate) cache: Option<Cache>,
}

/// How long an epoch check (f+1 nodes asked which epoch changes follow the
/// latest trusted epoch) stands before a verification asks again.
pub const EPOCH_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// The first pause after an epoch check that too few nodes answered; it
/// doubles with each failed check, up to [`EPOCH_CHECK_INTERVAL`].
pub const EPOCH_CHECK_RETRY: Duration = Duration::from_secs(2);

/// When the epochs were last checked and how long until the next check.
#[derive(Debug, Default, Clone, Copy)]
struct EpochCheck {
    at: Option<Instant>,
    wait: Duration,
    /// Checks in a row that too few nodes answered.
    failures: u32,
}

/// Milliseconds since the Unix epoch by the local clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Read and check a network file.
pub fn load_network_file(path: &Path) -> Result<NetworkFile, ClientError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Network(format!("{}: {e}", path.display())))?;
    NetworkFile::from_json(&text).map_err(ClientError::Network)
}

impl Client {
    /// A client trusting `network`'s genesis validators.
    pub fn new(network: NetworkFile, config: ClientConfig) -> Result<Self, ClientError> {
        let agent = node::agent(config.request_timeout);
        let nodes: Vec<NodeApi> = match &config.only_node {
            Some(url) => vec![NodeApi::new(url, agent)],
            None => network
                .nodes
                .iter()
                .map(|n| NodeApi::new(&n.api_url, agent.clone()))
                .collect(),
        };
        if nodes.is_empty() {
            return Err(ClientError::Network("no nodes to talk to".into()));
        }
        let mut trust = TrustedChain::from_network(&network)?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(|d| Cache::new(d.join(encode_component(&network.chain_id))));
        if let Some(cache) = &cache {
            // Epoch changes followed by earlier runs, verified again from genesis.
            let followed = cache
                .load_epochs()
                .and_then(|changes| trust.follow(&changes));
            if let Err(e) = followed {
                tracing::warn!(error = %e, "ignoring the cached epoch changes");
                trust = TrustedChain::from_network(&network)?;
            }
        }
        Ok(Client {
            network,
            nodes,
            trust: RwLock::new(trust),
            epochs_checked: Mutex::new(EpochCheck::default()),
            preferred: AtomicUsize::new(0),
            config,
            cache,
        })
    }

    /// The network file.
    pub fn network(&self) -> &NetworkFile {
        &self.network
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.network.chain_id
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// A snapshot of the trusted validator sets (genesis and followed epochs).
    pub fn trusted(&self) -> TrustedChain {
        self.trust_lock().clone()
    }

    /// Readers verify in parallel; only following an epoch change writes.
    pub(crate) fn trust_lock(&self) -> RwLockReadGuard<'_, TrustedChain> {
        self.trust.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Node indices, starting with the one that last answered.
    pub(crate) fn node_order(&self) -> impl Iterator<Item = &NodeApi> {
        let start = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
        (0..self.nodes.len()).map(move |i| &self.nodes[(start + i) % self.nodes.len()])
    }

    pub(crate) fn nodes(&self) -> &[NodeApi] {
        &self.nodes
    }

    /// Ask the next node first from now on (the preferred one answered,
    /// but with nothing new: a node must not hold a poll loop by answering).
    pub(crate) fn rotate_preferred(&self) {
        let n = self.nodes.len().max(1);
        let next = (self.preferred.load(Ordering::Relaxed) + 1) % n;
        self.preferred.store(next, Ordering::Relaxed);
    }

    pub(crate) fn mark_preferred(&self, node: &NodeApi) {
        if let Some(i) = self.nodes.iter().position(|n| n.url() == node.url()) {
            self.preferred.store(i, Ordering::Relaxed);
        }
    }

    /// Run `op` on the nodes until one succeeds (see the module docs).
    pub(crate) fn with_failover<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&NodeApi) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut errors = Vec::new();
        for pass in 0..=self.config.retries {
            if pass > 0 {
                thread::sleep(self.config.retry_backoff * 2u32.saturating_pow(pass - 1));
            }
            let first_of_pass = errors.len();
            for node in self.node_order() {
                match op(node) {
                    Ok(value) => {
                        self.mark_preferred(node);
                        return Ok(value);
                    }
                    Err(e) => {
                        tracing::warn!(node = node.url(), error = %e, "{what} failed");
                        errors.push(e);
                    }
                }
            }
            if !errors[first_of_pass..]
                .iter()
                .all(ClientError::is_unavailable)
            {
                break;
            }
        }
        Err(self.pick_error(errors))
    }

    /// The error that best explains why every node failed: a verification
    /// failure first, then a refusal, else "no node answered".
    pub(crate) fn pick_error(&self, mut errors: Vec<ClientError>) -> ClientError {
        if self.nodes.len() == 1 && !errors.is_empty() {
            return errors.swap_remove(0);
        }
        if let Some(i) = errors.iter().position(ClientError::is_verification_failure) {
            return errors.swap_remove(i);
        }
        if let Some(i) = errors.iter().position(|e| !e.is_unavailable()) {
            return errors.swap_remove(i);
        }
        // One line per distinct failure (retries repeat them).
        let mut lines: Vec<String> = Vec::new();
        for line in errors.iter().map(ToString::to_string) {
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        ClientError::Unavailable(lines)
    }

    /// Run a verification; when it names an epoch the client has not followed
    /// yet, follow the epoch changes through `node` and try again.
    ///
    /// Before it, the client makes sure it knows the epochs (issue-13
    /// review): a certificate of the latest epoch it trusts is accepted only
    /// once f+1 nodes (one of them honest) were asked, within the last
    /// [`EPOCH_CHECK_INTERVAL`], which epoch changes follow it; a change one
    /// of them shows is followed, and the trust chain then refuses the
    /// retired epoch's certificates past its end. So retired keys cannot
    /// certify later heights to a client that started from genesis.
    pub(crate) fn verified<T>(
        &self,
        node: &NodeApi,
        check: impl Fn(&TrustedChain) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.check_epochs(node);
        let result = check(&self.trust_lock());
        match result {
            Err(ClientError::UnknownEpoch { got, trusted }) if got > trusted => {
                self.follow_epochs(node)?;
                check(&self.trust_lock())
            }
            other => other,
        }
    }

    /// Ask `node`, then the others, until f+1 answered which epoch changes
    /// follow the latest trusted epoch (following the ones that verify), at
    /// most once per [`EPOCH_CHECK_INTERVAL`]. Nodes that fail are skipped;
    /// when fewer than f+1 answer, the check is retried after a back-off
    /// ([`EPOCH_CHECK_RETRY`], doubling up to the interval), not at every
    /// verification (which would cost up to n requests each).
    fn check_epochs(&self, node: &NodeApi) {
        let mut checked = self
            .epochs_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if checked.at.is_some_and(|t| t.elapsed() < checked.wait) {
            return;
        }
        let n = self.nodes.len();
        let wanted = (n - 1) / 3 + 1;
        // Every node is asked from the same epoch, so two different ends of
        // it (a fork signed by its keys) meet in the trust chain.
        let from = self.trust_lock().latest_epoch();
        let others = self.node_order().filter(|n| n.url() != node.url());
        let mut answered = 0;
        for candidate in std::iter::once(node).chain(others) {
            match self.follow_epochs_from(candidate, from) {
                Ok(()) => answered += 1,
                Err(e @ ClientError::ConflictingEpochChange { .. }) => {
                    // The trust chain now refuses everything; say so once,
                    // and keep the two ends as evidence.
                    tracing::error!(node = candidate.url(), error = %e, "epoch check");
                    self.write_fork_evidence();
                    return;
                }
                Err(e) => {
                    tracing::warn!(node = candidate.url(), error = %e, "epoch check failed");
                }
            }
            if answered >= wanted {
                *checked = EpochCheck {
                    at: Some(Instant::now()),
                    wait: EPOCH_CHECK_INTERVAL,
                    failures: 0,
                };
                return;
            }
        }
        let wait = EPOCH_CHECK_RETRY
            .saturating_mul(1 << checked.failures.min(8))
            .min(EPOCH_CHECK_INTERVAL);
        *checked = EpochCheck {
            at: Some(Instant::now()),
            wait,
            failures: checked.failures.saturating_add(1),
        };
        tracing::warn!(
            answered,
            wanted,
            retry_ms = wait.as_millis() as u64,
            "too few nodes answered the epoch check"
        );
    }

    /// Write the two certified ends of a forked epoch into the cache
    /// directory (`epoch-fork-E.evidence`, borsh, the format of the
    /// datacenter links' evidence files), for `palisade evidence verify`.
    fn write_fork_evidence(&self) {
        let Some(evidence) = self.trust_lock().fork_evidence().cloned() else {
            return;
        };
        let Some(dir) = &self.config().cache_dir else {
            tracing::error!("epoch fork: no cache directory to write the evidence to");
            return;
        };
        let epoch = evidence.first.ledger_info.epoch;
        let path = dir.join(format!("epoch-fork-{epoch}.evidence"));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, palisade_crypto::encode(&evidence)));
        match written {
            Ok(()) => tracing::error!(epoch, file = %path.display(), "epoch fork evidence written"),
            Err(e) => tracing::error!(epoch, error = %e, "could not write the epoch fork evidence"),
        }
    }

    fn follow_epochs(&self, node: &NodeApi) -> Result<(), ClientError> {
        let from = self.trust_lock().latest_epoch();
        self.follow_epochs_from(node, from)
    }

    fn follow_epochs_from(&self, node: &NodeApi, from: u64) -> Result<(), ClientError> {
        let response: EpochsResponse = node.get(&format!("/v1/epochs?from={from}"))?;
        let changes = response
            .certificates()
            .map_err(|e| ClientError::Malformed(format!("epoch change: {e}")))?;
        let mut trust = self.trust.write().unwrap_or_else(|e| e.into_inner());
        let before = trust.latest_epoch();
        let followed = trust.follow(&changes);
        if trust.latest_epoch() > before {
            if let Some(cache) = &self.cache {
                if let Err(e) = cache.store_epochs(trust.changes()) {
                    tracing::warn!(error = %e, "could not cache the epoch changes");
                }
            }
        }
        followed
    }

    /// The newest epoch's validator set, verified from genesis through every
    /// certified epoch change. Every node is asked: a node that withholds a
    /// change cannot hide it while one other node serves it (each change is
    /// checked against the set before it, so answers only add what is proven).
    pub fn validators(&self) -> Result<ValidatorSet, ClientError> {
        let mut answered = 0;
        let mut last_error = None;
        for node in self.nodes() {
            match self.follow_epochs(node) {
                Ok(()) => answered += 1,
                Err(e) => last_error = Some(e),
            }
        }
        if answered == 0 {
            return Err(last_error.unwrap_or_else(|| {
                ClientError::Network("no node served its epoch changes".into())
            }));
        }
        let trust = self.trust_lock();
        trust
            .validators(trust.latest_epoch())
            .cloned()
            .ok_or_else(|| ClientError::Malformed("no validator set for the newest epoch".into()))
    }

    /// Verified list of the services of a namespace (with failover).
    pub fn services(&self, namespace: &str) -> Result<VerifiedNamespace, ClientError> {
        let path = format!("/v1/namespaces/{}", encode_component(namespace));
        self.with_failover("namespace listing", |node| {
            let response: NamespaceResponse = node.get(&path)?;
            let now = now_ms();
            let fresh = self.config.freshness;
            self.verified(node, |t| {
                verify_namespace(t, namespace, &response, now, Some(&fresh))
            })
        })
    }

    /// Every node's own status report, unverified (one entry per node, in
    /// network-file order): for operators, never for decisions.
    pub fn node_status(&self) -> Vec<(String, Result<StatusResponse, ClientError>)> {
        self.nodes
            .iter()
            .map(|node| (node.url().to_string(), node.get("/v1/status")))
            .collect()
    }

    /// Send off-consensus heartbeats (attested leases) to **every** node (in
    /// parallel), not one: each validator decides liveness from what it hears
    /// itself. One entry per node (network-file order) with what it took or
    /// the error.
    pub fn send_heartbeats(
        &self,
        heartbeats: &[SignedHeartbeat],
    ) -> Vec<(String, Result<HeartbeatResponse, ClientError>)> {
        let request = HeartbeatRequest {
            heartbeats: heartbeats.iter().map(Hex::new).collect(),
        };
        // In parallel: one slow node must not delay the others' renewals.
        thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|node| {
                    let request = &request;
                    s.spawn(move || node.post("/v1/heartbeat", request, None))
                })
                .collect();
            self.nodes
                .iter()
                .zip(handles)
                .map(|(node, h)| {
                    let answer = h.join().unwrap_or_else(|_| {
                        Err(ClientError::Invalid("heartbeat thread panicked".into()))
                    });
                    (node.url().to_string(), answer)
                })
                .collect()
        })
    }
}
