//! Submitting transactions: sequence numbers, failover, and waiting for a
//! commit receipt that verifies.
//!
//! A node's `POST /v1/tx` with `wait` may answer before the commit (status
//! pending). "Pending" is one node's unverified word, so the client then
//! hands the transaction to f more nodes (f+1 in all, f = (n-1)/3 of the
//! configured nodes), polls `GET /v1/tx/{id}` on every node each round (a
//! pending answer never ends a round), resubmits to every node that does not
//! know the transaction, until a verified receipt arrives or
//! [`ClientConfig::commit_timeout`] passes. A receipt that fails
//! verification is skipped (another node may hold an honest one) and
//! reported only if no honest one arrives in time.
//!
//! [`ClientConfig::commit_timeout`]: crate::ClientConfig::commit_timeout

use std::thread;
use std::time::Instant;

use palisade_crypto::api::{AccountResponse, SubmitRequest, SubmitResponse, TxStatus};
use palisade_crypto::{
    Digest, Hex, PublicKey, Registration, SignedTransaction, TxBody, MAX_SEQUENCE_STEP,
};

use crate::node::NodeApi;
use crate::verify::{verify_account, verify_receipt};
use crate::{Client, ClientError, InstanceRef, Signer, VerifiedReceipt, VerifiedService};

impl Client {
    /// The sequence number `key`'s next transaction should carry: the
    /// node's suggestion (which counts its pending transactions) when it lies
    /// within [`MAX_SEQUENCE_STEP`] above the committed next sequence proven
    /// against a certified root, else the proven one. A node can therefore
    /// never steer the signer further than the consensus rule allows.
    pub fn next_sequence(&self, key: &PublicKey) -> Result<u64, ClientError> {
        let (proven, suggested) = self.account(key)?;
        Ok(suggested.unwrap_or(proven))
    }

    /// The proven committed next sequence of `key`, and the node's
    /// suggestion when it is within the bound.
    fn account(&self, key: &PublicKey) -> Result<(u64, Option<u64>), ClientError> {
        let path = format!("/v1/accounts/{}", key.to_hex());
        self.with_failover("account query", |node| {
            let account: AccountResponse = node.get(&path)?;
            let proven = self.verified(node, |t| {
                verify_account(
                    t,
                    key,
                    &account,
                    crate::client::now_ms(),
                    Some(&self.config().freshness),
                )
            })?;
            let proven = proven.next_sequence;
            let suggested = account.next_sequence;
            let within = suggested >= proven && suggested - proven <= MAX_SEQUENCE_STEP;
            if !within {
                tracing::warn!(
                    node = node.url(),
                    suggested,
                    proven,
                    "node suggests a sequence outside the allowed step; using the proven one"
                );
            }
            Ok((proven, within.then_some(suggested)))
        })
    }

    /// Sign `body` with the signer's next sequence number, submit it and wait
    /// for its verified commit receipt. A committed transaction the state
    /// machine refused is [`ClientError::Rejected`].
    pub fn execute(
        &self,
        signer: &mut Signer,
        body: TxBody,
    ) -> Result<VerifiedReceipt, ClientError> {
        let mut refreshed = false;
        loop {
            // After a commit the signer knows its next number: no round trip.
            // The nodes are asked at first and after a sequence refusal
            // (then their answer wins over the local count).
            let sequence = match signer.known_next_sequence() {
                Some(next) if !refreshed => next,
                _ => {
                    let (proven, suggested) = self.account(&signer.public())?;
                    if refreshed {
                        // After a sequence refusal the nodes' view wins over
                        // the local count (still bounded by the proof).
                        suggested.unwrap_or(proven)
                    } else {
                        suggested
                            .unwrap_or(proven)
                            .max(signer.local_next_sequence())
                            .min(proven.saturating_add(MAX_SEQUENCE_STEP))
                    }
                }
            };
            let tx = signer.sign(
                self.chain_id(),
                &self.network().genesis_hash,
                sequence,
                body.clone(),
            );
            match self.submit_and_wait(&tx) {
                Ok(receipt) => {
                    signer.advance(sequence);
                    return Ok(receipt);
                }
                // A certified rejection consumed the sequence (the state
                // machine gives every transaction in the chain its slot), so
                // the next transaction takes the one after it.
                Err(e @ ClientError::Rejected { .. }) => {
                    signer.advance(sequence);
                    return Err(e);
                }
                Err(ClientError::Api { code, .. }) if code.contains("sequence") && !refreshed => {
                    tracing::info!(sequence, %code, "sequence refused; asking the nodes again");
                    refreshed = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Submit a signed transaction (with failover) without waiting.
    pub fn submit(&self, tx: &SignedTransaction) -> Result<Digest, ClientError> {
        let request = SubmitRequest {
            tx: Hex::new(tx),
            wait: false,
        };
        self.with_failover("submit", |node| {
            let response: SubmitResponse = node.post("/v1/tx", &request, None)?;
            Ok(response.tx_id)
        })
    }

    /// Submit a signed transaction and wait (up to
    /// [`ClientConfig::commit_timeout`](crate::ClientConfig::commit_timeout)) for a receipt that verifies.
    pub fn submit_and_wait(&self, tx: &SignedTransaction) -> Result<VerifiedReceipt, ClientError> {
        let tx_id = tx.id();
        let started = Instant::now();
        let request = SubmitRequest {
            tx: Hex::new(tx),
            wait: true,
        };
        let config = self.config();
        // The node holds the request up to its own wait bound; never past ours.
        let hold = (config.request_timeout + config.node_wait)
            .min(config.commit_timeout + config.request_timeout);
        let first = self.with_failover("submit", |node| {
            let response: SubmitResponse = node.post("/v1/tx", &request, Some(hold))?;
            self.check_submit_response(node, &tx_id, response)
        })?;
        if let Some(receipt) = first {
            return settle(receipt);
        }
        // "Pending" is one node's word: a node may swallow the transaction
        // and say pending forever. Hand it to f more nodes (f+1 in all, so
        // at least one honest node holds it when at most f lie); the
        // transaction's id and sequence make extra admissions harmless.
        let fanout = (self.nodes().len().saturating_sub(1)) / 3;
        for node in self.node_order().skip(1).take(fanout) {
            if let Err(e) = self.submit_to(node, tx) {
                tracing::info!(node = node.url(), error = %e, "extra submission failed");
            }
        }
        let path = format!("/v1/tx/{tx_id}");
        let mut forgery = None;
        while started.elapsed() < self.config().commit_timeout {
            thread::sleep(self.config().poll_interval);
            // Ask every node (a "pending" does not stop the round: it may
            // come from a node that never admitted the transaction); hand
            // the transaction again to every node that does not know it.
            let mut unaware = Vec::new();
            for node in self.node_order() {
                let polled = node
                    .get::<SubmitResponse>(&path)
                    .and_then(|r| self.check_submit_response(node, &tx_id, r));
                match polled {
                    Ok(Some(receipt)) => {
                        self.mark_preferred(node);
                        return settle(receipt);
                    }
                    Ok(None) => {}
                    Err(ClientError::Api { status: 404, .. }) => unaware.push(node),
                    Err(e) => {
                        tracing::warn!(node = node.url(), error = %e, "receipt poll failed");
                        if e.is_verification_failure() {
                            forgery = Some(e);
                        }
                    }
                }
            }
            for node in unaware {
                tracing::info!(%tx_id, node = node.url(), "node does not know the transaction; submitting it again");
                if let Err(e) = self.submit_to(node, tx) {
                    tracing::warn!(node = node.url(), error = %e, "resubmission failed");
                }
            }
        }
        Err(forgery.unwrap_or(ClientError::Timeout {
            what: format!("transaction {tx_id} to commit"),
            waited_ms: started.elapsed().as_millis() as u64,
        }))
    }

    /// Hand `tx` to one node without waiting.
    fn submit_to(&self, node: &NodeApi, tx: &SignedTransaction) -> Result<(), ClientError> {
        let request = SubmitRequest {
            tx: Hex::new(tx),
            wait: false,
        };
        let _: SubmitResponse = node.post("/v1/tx", &request, None)?;
        Ok(())
    }

    /// `Some(receipt)` once committed (verified), `None` while pending.
    fn check_submit_response(
        &self,
        node: &NodeApi,
        tx_id: &Digest,
        response: SubmitResponse,
    ) -> Result<Option<VerifiedReceipt>, ClientError> {
        if response.tx_id != *tx_id {
            return Err(ClientError::Malformed(format!(
                "answer about transaction {}, asked about {tx_id}",
                response.tx_id
            )));
        }
        if response.status == TxStatus::Pending {
            return Ok(None);
        }
        let receipt = response.receipt.ok_or_else(|| {
            ClientError::ForgedReceipt("transaction reported committed without a receipt".into())
        })?;
        // The verified outcome decides; the node's `status` is not covered.
        let verified = self.verified(node, |t| verify_receipt(t, tx_id, &receipt))?;
        Ok(Some(verified))
    }

    /// Register (or update) an instance, then confirm it: a verified lookup
    /// at or above the receipt's height must show the instance with these
    /// endpoints, labels, version, TTL and probe ([`ClientError::Unconfirmed`]
    /// otherwise; the receipt's verified outcome says the transaction
    /// applied, the lookup that what it wrote is what was asked for).
    pub fn register(
        &self,
        signer: &mut Signer,
        registration: Registration,
    ) -> Result<VerifiedReceipt, ClientError> {
        let receipt = self.execute(signer, TxBody::Register(registration.clone()))?;
        let r = &registration;
        self.confirm(
            &r.namespace,
            &r.service,
            receipt.block.height,
            &format!("instance {} as registered", r.instance),
            |s| {
                let mut labels = r.labels.clone();
                labels.sort();
                s.instances().iter().any(|i| {
                    i.instance == r.instance
                        && i.endpoints == r.endpoints
                        && i.labels == labels
                        && i.version == r.version
                        && i.ttl_secs == r.ttl_secs
                        && i.probe == r.probe
                })
            },
        )?;
        Ok(receipt)
    }

    /// Deregister an instance, then confirm (as [`Client::register`] does)
    /// that the certified state no longer lists it.
    pub fn deregister(
        &self,
        signer: &mut Signer,
        instance: &InstanceRef,
    ) -> Result<VerifiedReceipt, ClientError> {
        let receipt = self.execute(signer, instance.deregister())?;
        self.confirm(
            &instance.namespace,
            &instance.service,
            receipt.block.height,
            &format!("instance {} removed", instance.instance),
            |s| {
                s.instances()
                    .iter()
                    .all(|i| i.instance != instance.instance)
            },
        )?;
        Ok(receipt)
    }

    /// Renew an instance's lease, then confirm it: the verified state at or
    /// above the receipt's height must show a lease running at least TTL
    /// past the heartbeat's (certified) block time.
    pub fn heartbeat(
        &self,
        signer: &mut Signer,
        instance: &InstanceRef,
    ) -> Result<VerifiedReceipt, ClientError> {
        let receipt = self.execute(signer, instance.heartbeat())?;
        let block_time = receipt.block.timestamp_ms;
        self.confirm(
            &instance.namespace,
            &instance.service,
            receipt.block.height,
            &format!("the lease of instance {} renewed", instance.instance),
            |s| {
                s.instances().iter().any(|i| {
                    i.instance == instance.instance
                        && i.lease_expires_at_ms
                            >= block_time.saturating_add(u64::from(i.ttl_secs) * 1000)
                })
            },
        )?;
        Ok(receipt)
    }

    /// Wait (up to the commit timeout) for verified state at `height` or
    /// above, and check it.
    fn confirm(
        &self,
        namespace: &str,
        service: &str,
        height: u64,
        what: &str,
        holds: impl Fn(&VerifiedService) -> bool,
    ) -> Result<(), ClientError> {
        let started = Instant::now();
        loop {
            let (state, _) = self.lookup_fresh(namespace, service)?;
            if state.height >= height {
                if holds(&state) {
                    return Ok(());
                }
                return Err(ClientError::Unconfirmed {
                    what: what.to_string(),
                    height: state.height,
                });
            }
            if started.elapsed() >= self.config().commit_timeout {
                return Err(ClientError::Timeout {
                    what: format!("certified state at height {height}"),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            thread::sleep(self.config().poll_interval);
        }
    }
}

fn settle(receipt: VerifiedReceipt) -> Result<VerifiedReceipt, ClientError> {
    if receipt.applied() {
        Ok(receipt)
    } else {
        // The node's outcome reads "rejected: <reason>"; keep the reason.
        let reason = match receipt.outcome.strip_prefix("rejected: ") {
            Some(reason) => reason.to_string(),
            None => receipt.outcome,
        };
        Err(ClientError::Rejected {
            tx_id: receipt.tx_id,
            reason,
        })
    }
}
