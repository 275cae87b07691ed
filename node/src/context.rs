//! State shared by the node's tasks: storage, mempool, progress, metrics.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_consensus::state::{StateReader, TxRejection};
use palisade_crypto::{encode, Digest, PublicKey, ReceiptTree, SignedTransaction, ValidatorSet};
use tokio::sync::{broadcast, watch, Notify};
use tracing::debug;

use crate::config::ApiConfig;
use crate::mempool::{AdmitError, Mempool, MempoolLimits};
use crate::metrics::Metrics;
use crate::net::NetHandle;
use crate::storage::NodeStore;
use crate::verdicts::VerdictCache;

/// Node-to-node frames (decoded only after the transport's size cap).
#[derive(Debug, BorshSerialize, BorshDeserialize)]
pub(crate) enum Wire {
    /// A consensus message (the core's encoding).
    Consensus(Vec<u8>),
    /// Transactions gossiped to the other validators (upcoming leaders).
    Txs(Vec<SignedTransaction>),
    /// The sender's current silence reports (attested leases), replacing
    /// its previous ones.
    Silence(Vec<palisade_crypto::SignedSilenceReport>),
}

/// Most transactions in one gossip frame (what a receiver accepts).
pub(crate) const MAX_GOSSIP_TXS: usize = 1024;

/// Most encoded transaction bytes in one gossip frame (well below the
/// transport's frame cap).
const GOSSIP_FRAME_BYTES: usize = crate::net::MAX_FRAME / 4;

/// Encode `txs` as few `Wire::Txs` frames as the bounds allow, in order.
fn gossip_frames(txs: Vec<SignedTransaction>, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for tx in txs {
        let len = borsh::object_length(&tx).unwrap_or_else(|_| encode(&tx).len());
        if !batch.is_empty() && (batch.len() == MAX_GOSSIP_TXS || bytes + len > max_bytes) {
            frames.push(encode(&Wire::Txs(std::mem::take(&mut batch))));
            bytes = 0;
        }
        bytes += len;
        batch.push(tx);
    }
    if !batch.is_empty() {
        frames.push(encode(&Wire::Txs(batch)));
    }
    frames
}

/// Receipt trees of the last few committed heights. A committed height's
/// receipts never change, so a tree built once serves every waiter.
#[derive(Debug, Default)]
pub(crate) struct ReceiptTrees {
    recent: Mutex<std::collections::VecDeque<(u64, Arc<ReceiptTree>)>>,
}

impl ReceiptTrees {
    const KEEP: usize = 8;

    /// The tree of `height`, built by `build` when not kept.
    pub(crate) fn get(&self, height: u64, build: impl FnOnce() -> ReceiptTree) -> Arc<ReceiptTree> {
        if let Some((_, t)) = self
            .recent
            .lock()
            .expect("receipt trees lock poisoned")
            .iter()
            .find(|(h, _)| *h == height)
        {
            return t.clone();
        }
        let tree = Arc::new(build());
        let mut recent = self.recent.lock().expect("receipt trees lock poisoned");
        if !recent.iter().any(|(h, _)| *h == height) {
            recent.push_back((height, tree.clone()));
            if recent.len() > Self::KEEP {
                recent.pop_front();
            }
        }
        tree
    }
}

/// Consensus progress as the API reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Current round.
    pub(crate) round: u64,
    /// Current epoch.
    pub(crate) epoch: u64,
    /// Leader of the current round.
    pub(crate) leader: Option<PublicKey>,
}

/// The API code of an admission refusal.
fn rejection_code(r: &TxRejection) -> &'static str {
    match r {
        TxRejection::NotEnrolled(_) => "not_enrolled",
        TxRejection::Revoked(_) => "revoked",
        TxRejection::NamespaceNotPermitted { .. } => "unknown_namespace",
        TxRejection::NotValidator(_) => "not_a_validator",
        TxRejection::NotAuthority(_) => "not_authority",
        TxRejection::BelowThreshold { .. } => "below_threshold",
        TxRejection::TooManyCosignatures { .. } | TxRejection::UnexpectedCosignatures { .. } => {
            "bad_cosignatures"
        }
        _ => "not_permitted",
    }
}

/// Everything the API, the driver and the prober share.
pub(crate) struct Context {
    pub(crate) store: NodeStore,
    pub(crate) chain_id: String,
    pub(crate) key: PublicKey,
    pub(crate) mempool: Mutex<Mempool>,
    pub(crate) limits: MempoolLimits,
    /// Signature verdicts shared by admission, execution and the consensus
    /// core: each signature is verified once per process.
    pub(crate) verdicts: Arc<VerdictCache>,
    pub(crate) progress: watch::Sender<Progress>,
    /// Certified heights, as they are stored (watch streams and waiters).
    pub(crate) commits: broadcast::Sender<u64>,
    pub(crate) metrics: Metrics,
    pub(crate) net: NetHandle,
    pub(crate) api: ApiConfig,
    pub(crate) byzantine: crate::byzantine::Byzantine,
    pub(crate) fault_injection: bool,
    /// Wakes the driver when the mempool gains transactions.
    pub(crate) tx_ready: Notify,
    /// Admitted transactions waiting to be gossiped, one frame for all of
    /// them ([`Context::run_gossip`]).
    pub(crate) gossip: Mutex<Vec<SignedTransaction>>,
    pub(crate) gossip_ready: Notify,
    /// Receipt trees of recent heights (every waiter of a block proves its
    /// receipt from one tree).
    pub(crate) receipt_trees: ReceiptTrees,
    pub(crate) validators: RwLock<ValidatorSet>,
    pub(crate) watch_streams: AtomicUsize,
    /// Every configured peer, as resolved at start.
    pub(crate) peers: Vec<crate::config::PeerConfig>,
    /// The config the peers come from (its network file is read again at
    /// each epoch change).
    pub(crate) peer_source: crate::config::NodeConfig,
    /// Ends long-lived requests (watch streams) when the node stops.
    pub(crate) shutdown: crate::shutdown::Shutdown,
    /// Other datacenters this node imports (`[[links]]`).
    pub(crate) links: crate::links::Links,
    /// Off-consensus leases (last-seen memory, silence reports).
    pub(crate) leases: crate::leases::Leases,
    /// Heights a snapshot download pages, kept from the pruner.
    pub(crate) snapshot_pins: crate::snapshot::pin::Pins,
}

impl Context {
    /// The signer's committed next sequence (0 for an unknown signer).
    pub(crate) fn committed_next_sequence(&self, signer: &PublicKey) -> u64 {
        let Ok(reader) = StateReader::latest(&self.store) else {
            return 0;
        };
        reader.next_sequence(signer).unwrap_or(0)
    }

    /// Sign `body` as this validator (`key`, the node's own) with its next
    /// sequence (committed, then past its pending transactions) and admit it
    /// with gossip: how the node's own acts (health and silence reports)
    /// enter the chain.
    pub(crate) fn submit_own(
        &self,
        key: &palisade_crypto::SecretKey,
        body: palisade_crypto::TxBody,
    ) -> Result<Digest, AdmitError> {
        let me = key.public();
        let committed = self.committed_next_sequence(&me);
        let sequence = self
            .mempool
            .lock()
            .expect("mempool lock poisoned")
            .next_sequence(&me, committed);
        let tx = palisade_crypto::Transaction {
            chain_id: self.chain_id.clone(),
            genesis_hash: self.limits.genesis_hash,
            signer: me,
            sequence,
            body,
        }
        .sign(key);
        self.admit(tx, true)
    }

    /// Admit a transaction (signature checked once here); gossip it to the
    /// other validators when `gossip`.
    pub(crate) fn admit(&self, tx: SignedTransaction, gossip: bool) -> Result<Digest, AdmitError> {
        let kind = tx.tx.body.kind();
        // Only a transaction to gossip needs a second copy.
        let (pooled, gossiped) = if gossip {
            (tx.clone(), Some(tx))
        } else {
            (tx, None)
        };
        let result = self.admit_inner(pooled);
        match &result {
            Ok(id) => {
                self.metrics.txs_admitted.inc();
                debug!(tx = %id, kind, "transaction admitted");
                if let Some(tx) = gossiped {
                    self.gossip.lock().expect("gossip lock poisoned").push(tx);
                    self.gossip_ready.notify_one();
                }
                self.tx_ready.notify_one();
            }
            Err(e) => self.metrics.reject(e.code()),
        }
        result
    }

    fn admit_inner(&self, tx: SignedTransaction) -> Result<Digest, AdmitError> {
        let id = Mempool::verify(&self.limits, self.verdicts.as_ref(), &tx)?;
        // One reader (one commit-record read) for the sequence and the rule.
        let reader = StateReader::latest(&self.store).ok();
        let next = reader
            .as_ref()
            .map_or(0, |r| r.next_sequence(&tx.tx.signer).unwrap_or(0));
        // A committed transaction consumed its sequence, so one at or above
        // the signer's committed next sequence is not in the receipt index:
        // only an older one costs the index lookup.
        if tx.tx.sequence < next && self.store.tx_location(&id).ok().flatten().is_some() {
            return Err(AdmitError::Duplicate);
        }
        Self::authorize(reader.as_ref(), &tx)?;
        let mut pool = self.mempool.lock().expect("mempool lock poisoned");
        pool.insert_verified(tx, id, next)?;
        self.metrics.mempool_size.set(pool.len() as i64);
        Ok(id)
    }

    /// The state machine's admission rule ([`StateReader::admissible`]:
    /// cosignature count and who may sign this) against committed state
    /// (`reader`; none while nothing is committed), so
    /// that what the state machine would refuse is answered with a 403 and
    /// never reaches a block (a block carrying it is invalid). Every
    /// transaction kind goes through it; nothing here is a second copy of
    /// the rules.
    fn authorize(
        reader: Option<&StateReader<'_>>,
        tx: &SignedTransaction,
    ) -> Result<(), AdmitError> {
        let Some(reader) = reader else {
            // Nothing committed yet (the node is starting): the block's
            // execution decides.
            return Ok(());
        };
        let mut signers = vec![tx.tx.signer];
        signers.extend(tx.cosignatures.iter().map(|c| c.signer));
        match reader.admissible(tx, &signers) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(rejection)) => Err(AdmitError::NotPermitted {
                code: rejection_code(&rejection),
                reason: rejection.to_string(),
            }),
            Err(e) => {
                debug!(error = %e, "admission: committed state unreadable; the block decides");
                Ok(())
            }
        }
    }

    /// Gossip admitted transactions to the other validators until shutdown:
    /// whatever accumulated since the last frame leaves as one frame (split
    /// below the receivers' per-frame count and the frame size bound), so
    /// under load a frame carries many transactions instead of one each.
    pub(crate) async fn run_gossip(self: Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = self.gossip_ready.notified() => {}
            }
            let txs = std::mem::take(&mut *self.gossip.lock().expect("gossip lock poisoned"));
            for frame in gossip_frames(txs, GOSSIP_FRAME_BYTES) {
                self.net.broadcast(frame);
            }
        }
    }

    /// Whether `id` is waiting in the mempool.
    pub(crate) fn is_pending(&self, id: &Digest) -> bool {
        let pool = self.mempool.lock().expect("mempool lock poisoned");
        pool.contains(id) || pool.recently_set_aside(id, std::time::Instant::now())
    }
}

#[cfg(test)]
impl Context {
    /// A context over an in-memory store and a detached transport; keep the
    /// trigger alive while the context is used.
    pub(crate) fn for_tests(watch_buffer: usize) -> (Arc<Self>, crate::shutdown::ShutdownTrigger) {
        Self::for_tests_with_store(watch_buffer, NodeStore::in_memory(), Digest::ZERO)
    }

    /// [`Context::for_tests`] over `store`.
    pub(crate) fn for_tests_with_store(
        watch_buffer: usize,
        store: NodeStore,
        genesis_hash: Digest,
    ) -> (Arc<Self>, crate::shutdown::ShutdownTrigger) {
        let (trigger, shutdown) = crate::shutdown::ShutdownTrigger::new();
        let limits = MempoolLimits {
            chain_id: "test".into(),
            genesis_hash,
            max_txs: 16,
            max_per_signer: 4,
            max_tx_bytes: 4096,
            retry_after: std::time::Duration::from_secs(1),
        };
        let ctx = Context {
            store,
            chain_id: "test".into(),
            key: PublicKey::default(),
            mempool: Mutex::new(Mempool::new(limits.clone())),
            limits,
            verdicts: Arc::new(VerdictCache::default()),
            progress: watch::channel(Progress::default()).0,
            commits: broadcast::channel(watch_buffer).0,
            metrics: Metrics::new(),
            net: NetHandle::detached(),
            api: ApiConfig::default(),
            byzantine: Default::default(),
            fault_injection: false,
            tx_ready: Notify::new(),
            gossip: Mutex::new(Vec::new()),
            gossip_ready: Notify::new(),
            receipt_trees: ReceiptTrees::default(),
            validators: RwLock::new(ValidatorSet {
                epoch: 0,
                validators: vec![],
            }),
            watch_streams: AtomicUsize::new(0),
            peers: vec![],
            peer_source: crate::config::NodeConfig::new(
                "data".into(),
                "node.key".into(),
                "genesis.json".into(),
            ),
            shutdown,
            links: Default::default(),
            leases: crate::leases::Leases::new("test".into(), true, 0),
            snapshot_pins: Default::default(),
        };
        (Arc::new(ctx), trigger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crypto::{decode, SecretKey, Transaction, TxBody};

    #[test]
    fn gossip_frames_carry_many_transactions_within_the_bounds() {
        let key = SecretKey::from_seed([5; 32]);
        let txs: Vec<SignedTransaction> = (0..MAX_GOSSIP_TXS as u64 + 10)
            .map(|seq| {
                Transaction {
                    chain_id: "test".into(),
                    genesis_hash: Digest::ZERO,
                    signer: key.public(),
                    sequence: seq,
                    body: TxBody::Revoke {
                        identity: key.public(),
                    },
                }
                .sign(&key)
            })
            .collect();
        let decoded = |frames: Vec<Vec<u8>>| -> Vec<Vec<SignedTransaction>> {
            frames
                .iter()
                .map(|f| match decode(f).unwrap() {
                    Wire::Txs(t) => t,
                    Wire::Consensus(_) | Wire::Silence(_) => panic!("not a gossip frame"),
                })
                .collect()
        };
        let frames = decoded(gossip_frames(txs.clone(), usize::MAX));
        assert_eq!(
            frames.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_GOSSIP_TXS, 10]
        );
        assert_eq!(frames.concat(), txs, "all of them, in order");
        let one = encode(&txs[0]).len();
        let frames = decoded(gossip_frames(txs[..10].to_vec(), 3 * one));
        assert_eq!(
            frames.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        assert!(gossip_frames(Vec::new(), 100).is_empty());
    }
}
