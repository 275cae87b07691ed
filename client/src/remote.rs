//! Lookups of another datacenter's services through this network's nodes
//! (DESIGN.md "Datacenters", Serving). The local nodes are not trusted for
//! the remote data either: the answer carries the remote datacenter's commit
//! certificate and proof, and is verified against the remote network file's
//! validators ([`RemoteDatacenter`]). The link status in the answer is the
//! local node's word; the age comes from the remote certified block time.

use std::sync::RwLock;

use palisade_crypto::dc::{LinkStatus, RemoteLookupResponse};
use palisade_crypto::NetworkFile;

use crate::client::now_ms;
use crate::node::{agent, encode_component, NodeApi};
use crate::verify::verify_lookup;
use crate::{Client, ClientError, TrustedChain, VerifiedService};
use palisade_crypto::api::EpochsResponse;

/// Another datacenter as a client trusts it: its name and its genesis set
/// (from its network.json), with the epochs followed so far.
#[derive(Debug)]
pub struct RemoteDatacenter {
    name: String,
    trust: RwLock<TrustedChain>,
    /// The remote nodes, asked directly only for epoch changes (verified
    /// against the trusted chain like everything else).
    nodes: Vec<String>,
}

impl RemoteDatacenter {
    /// Trust `network`'s genesis set for the datacenter it names.
    pub fn new(network: &NetworkFile) -> Result<Self, ClientError> {
        Ok(RemoteDatacenter {
            name: network.datacenter.clone(),
            trust: RwLock::new(TrustedChain::from_network(network)?),
            nodes: network.nodes.iter().map(|n| n.api_url.clone()).collect(),
        })
    }

    /// The datacenter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Follow the remote datacenter's epoch changes, asking its own nodes
    /// (the first that gives changes that verify wins).
    fn follow_epochs(&self, timeout: std::time::Duration) -> Result<(), ClientError> {
        let mut last = ClientError::Unavailable(vec!["no remote node listed".into()]);
        for url in &self.nodes {
            let node = NodeApi::new(url, agent(timeout));
            let from = self
                .trust
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .latest_epoch();
            let result = node
                .get::<EpochsResponse>(&format!("/v1/epochs?from={from}"))
                .and_then(|r| {
                    r.certificates()
                        .map_err(|e| ClientError::Malformed(format!("epoch change: {e}")))
                })
                .and_then(|changes| {
                    self.trust
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .follow(&changes)
                });
            match result {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Its chain id.
    pub fn chain_id(&self) -> String {
        self.trust
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .chain_id()
            .to_string()
    }
}

/// A remote service, verified against the remote datacenter's validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAnswer {
    /// The datacenter it belongs to.
    pub datacenter: String,
    /// The verified record (remote height, timestamp, root).
    pub service: VerifiedService,
    /// Now minus the remote certified block time (what the link lags, as far
    /// as this client can tell without trusting the local node).
    pub lag_ms: u64,
    /// The serving node's word on the link (state, heights; unverified).
    pub link: LinkStatus,
}

impl RemoteAnswer {
    /// Whether the serving node reports the link as not live (partitioned,
    /// stalled, frozen): the record is served frozen at its certified age.
    pub fn is_stale(&self) -> bool {
        self.link.state != "live" && self.link.state != "lagging"
    }
}

impl Client {
    /// Look up `namespace/service` of datacenter `remote` through this
    /// network's nodes, verified against `remote`'s validators. A node that
    /// does not import it, or whose answer does not verify, is skipped.
    pub fn lookup_remote(
        &self,
        remote: &RemoteDatacenter,
        namespace: &str,
        service: &str,
    ) -> Result<RemoteAnswer, ClientError> {
        self.lookup_remote_query(remote, namespace, service, "")
    }

    fn lookup_remote_query(
        &self,
        remote: &RemoteDatacenter,
        namespace: &str,
        service: &str,
        query: &str,
    ) -> Result<RemoteAnswer, ClientError> {
        let path = format!(
            "/v1/remote/{}/services/{}/{}{query}",
            encode_component(&remote.name),
            encode_component(namespace),
            encode_component(service)
        );
        self.with_failover("remote lookup", |node| {
            let response: RemoteLookupResponse = node.get(&path)?;
            let now = now_ms();
            let check = || {
                let trust = remote.trust.read().unwrap_or_else(|e| e.into_inner());
                verify_lookup(&trust, namespace, service, &response.lookup, now, None)
            };
            let verified = match check() {
                // A remote epoch this client has not followed: follow it
                // from the remote nodes themselves, then verify again.
                Err(ClientError::UnknownEpoch { got, trusted }) if got > trusted => {
                    remote.follow_epochs(self.config().request_timeout)?;
                    check()?
                }
                other => other?,
            };
            Ok(RemoteAnswer {
                datacenter: remote.name.clone(),
                lag_ms: now.saturating_sub(verified.timestamp_ms),
                service: verified,
                link: response.link,
            })
        })
    }
}

/// Longest a remote watch asks a node to hold one poll.
const REMOTE_WATCH_WAIT_MS: u64 = 4_000;

/// A verified watch of another datacenter's service through this network's
/// nodes ([`Client::watch_remote`]). Each poll is held by the node until its
/// link imports a remote height above the last one seen (or ~4 s pass); the
/// answer is verified like [`Client::lookup_remote`] (remote certificate
/// against the remote validators, proof against its root). A link imports
/// net deltas, so the watch delivers each distinct verified state of the
/// service as imported, not every intermediate remote change.
///
/// Never going back: an answer below a height already seen (a node whose
/// link lags another's) is dropped. An answer whose record did not change
/// is not delivered.
pub struct RemoteWatch<'a> {
    client: &'a Client,
    remote: &'a RemoteDatacenter,
    namespace: String,
    service: String,
    seen: u64,
    last: Option<Option<palisade_crypto::ServiceRecord>>,
}

impl std::fmt::Debug for RemoteWatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWatch")
            .field("datacenter", &self.remote.name)
            .field("service", &format!("{}/{}", self.namespace, self.service))
            .field("seen", &self.seen)
            .finish()
    }
}

impl Client {
    /// Watch `namespace/service` of datacenter `remote` through this
    /// network's nodes, from remote height `from_height` on (`0`: deliver
    /// the current state first).
    pub fn watch_remote<'a>(
        &'a self,
        remote: &'a RemoteDatacenter,
        namespace: &str,
        service: &str,
        from_height: u64,
    ) -> RemoteWatch<'a> {
        RemoteWatch {
            client: self,
            remote,
            namespace: namespace.to_string(),
            service: service.to_string(),
            seen: from_height.saturating_sub(1),
            last: None,
        }
    }
}

impl RemoteWatch<'_> {
    /// The highest verified remote height seen.
    pub fn seen_height(&self) -> u64 {
        self.seen
    }

    fn poll(&mut self) -> Result<Option<RemoteAnswer>, ClientError> {
        // The node may hold the poll; keep it inside the request bound.
        let bound = self.client.config().request_timeout.as_millis() as u64;
        let wait = REMOTE_WATCH_WAIT_MS.min(bound.saturating_sub(1_000));
        let asked = std::time::Instant::now();
        let answer = self.client.lookup_remote_query(
            self.remote,
            &self.namespace,
            &self.service,
            &format!("?after_height={}&wait_ms={wait}", self.seen),
        )?;
        let height = answer.service.height;
        if height <= self.seen {
            // Nothing new from this node: ask the next one first next time.
            // An honest node holds the poll until its link imports more, so
            // rotating costs nothing then; a node answering at once with an
            // old (verified) state must not hold the watch (nor make it spin).
            self.client.rotate_preferred();
            if asked.elapsed() < std::time::Duration::from_millis(500) {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
        if height < self.seen {
            // A node whose link is behind another's (verified, but older):
            // never delivered, the watch does not go back.
            tracing::debug!(
                height,
                seen = self.seen,
                "remote watch: older answer dropped"
            );
            return Ok(None);
        }
        self.seen = height;
        let record = Some(answer.service.record.clone());
        if self.last == record {
            return Ok(None);
        }
        self.last = record;
        Ok(Some(answer))
    }
}

impl Iterator for RemoteWatch<'_> {
    type Item = Result<RemoteAnswer, ClientError>;

    /// Blocks until the service's verified state changes (or a poll fails:
    /// then `Err`, and the next call tries again).
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.poll() {
                Ok(Some(answer)) => return Some(Ok(answer)),
                Ok(None) => continue,
                Err(e) => {
                    std::thread::sleep(self.client.config().retry_backoff);
                    return Some(Err(e));
                }
            }
        }
    }
}
