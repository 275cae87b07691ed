//! State shared by the node's tasks: storage, mempool, progress, metrics.

use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, RwLock};

use borsh::{BorshDeserialize, BorshSerialize};
use palisade_consensus::state::{StateReader, TxRejection};
use palisade_crypto::{encode, Digest, PublicKey, SignedTransaction, ValidatorSet};
use tokio::sync::{broadcast, watch, Notify};
use tracing::debug;

use crate::config::ApiConfig;
use crate::mempool::{AdmitError, Mempool, MempoolLimits};
use crate::metrics::Metrics;
use crate::net::NetHandle;
use crate::storage::NodeStore;

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
    pub(crate) validators: RwLock<ValidatorSet>,
    pub(crate) watch_streams: AtomicUsize,
    /// Every configured peer (the transport keeps those of the current set).
    pub(crate) peers: Vec<crate::config::PeerConfig>,
    /// Ends long-lived requests (watch streams) when the node stops.
    pub(crate) shutdown: crate::shutdown::Shutdown,
    /// Off-consensus leases (last-seen memory, silence reports).
    pub(crate) leases: crate::leases::Leases,
}

impl Context {
    /// The signer's committed next sequence (0 for an unknown signer).
    pub(crate) fn committed_next_sequence(&self, signer: &PublicKey) -> u64 {
        let Ok(reader) = StateReader::latest(&self.store) else {
            return 0;
        };
        reader.next_sequence(signer).unwrap_or(0)
    }

    /// Admit a transaction (signature checked once here); gossip it to the
    /// other validators when `gossip`.
    pub(crate) fn admit(&self, tx: SignedTransaction, gossip: bool) -> Result<Digest, AdmitError> {
        let result = self.admit_inner(tx.clone());
        match &result {
            Ok(id) => {
                self.metrics.txs_admitted.inc();
                debug!(tx = %id, kind = tx.tx.body.kind(), "transaction admitted");
                if gossip {
                    self.net.broadcast(encode(&Wire::Txs(vec![tx])));
                }
                self.tx_ready.notify_one();
            }
            Err(e) => self.metrics.reject(e.code()),
        }
        result
    }

    fn admit_inner(&self, tx: SignedTransaction) -> Result<Digest, AdmitError> {
        let id = Mempool::verify(&self.limits, &tx)?;
        if self.store.tx_location(&id).ok().flatten().is_some() {
            return Err(AdmitError::Duplicate);
        }
        self.authorize(&tx)?;
        let next = self.committed_next_sequence(&tx.tx.signer);
        let mut pool = self.mempool.lock().expect("mempool lock poisoned");
        pool.insert_verified(tx, id, next)?;
        self.metrics.mempool_size.set(pool.len() as i64);
        Ok(id)
    }

    /// The state machine's admission rule ([`StateReader::admissible`]:
    /// cosignature count and who may sign this) against committed state, so
    /// that what the state machine would refuse is answered with a 403 and
    /// never reaches a block (a block carrying it is invalid). Every
    /// transaction kind goes through it; nothing here is a second copy of
    /// the rules.
    fn authorize(&self, tx: &SignedTransaction) -> Result<(), AdmitError> {
        let Ok(reader) = StateReader::latest(&self.store) else {
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

    /// Whether `id` is waiting in the mempool.
    pub(crate) fn is_pending(&self, id: &Digest) -> bool {
        self.mempool
            .lock()
            .expect("mempool lock poisoned")
            .contains(id)
    }
}

#[cfg(test)]
impl Context {
    /// A context over an in-memory store and a detached transport; keep the
    /// trigger alive while the context is used.
    pub(crate) fn for_tests(
        watch_buffer: usize,
    ) -> (std::sync::Arc<Self>, crate::shutdown::ShutdownTrigger) {
        let (trigger, shutdown) = crate::shutdown::ShutdownTrigger::new();
        let limits = MempoolLimits {
            chain_id: "test".into(),
            max_txs: 16,
            max_per_signer: 4,
            max_tx_bytes: 4096,
            retry_after: std::time::Duration::from_secs(1),
        };
        let ctx = Context {
            store: NodeStore::in_memory(),
            chain_id: "test".into(),
            key: PublicKey::default(),
            mempool: Mutex::new(Mempool::new(limits.clone())),
            limits,
            progress: watch::channel(Progress::default()).0,
            commits: broadcast::channel(watch_buffer).0,
            metrics: Metrics::new(),
            net: NetHandle::detached(),
            api: ApiConfig::default(),
            byzantine: Default::default(),
            fault_injection: false,
            tx_ready: Notify::new(),
            validators: RwLock::new(ValidatorSet {
                epoch: 0,
                validators: vec![],
            }),
            watch_streams: AtomicUsize::new(0),
            peers: vec![],
            shutdown,
            leases: crate::leases::Leases::new("test".into(), true, 0),
        };
        (std::sync::Arc::new(ctx), trigger)
    }
}
