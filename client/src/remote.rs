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
                    r.changes
                        .iter()
                        .map(|c| c.decode())
                        .collect::<Result<Vec<_>, _>>()
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
        let path = format!(
            "/v1/remote/{}/services/{}/{}",
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
