//! The mempool: signed transactions waiting for a block.
//!
//! Admission ([`Mempool::admit`]) checks a transaction once: chain id and
//! every signature (`SignedTransaction::verify`), encoded size, and sequence
//! (not below the signer's committed next sequence, not more than
//! `max_per_signer` ahead of it). It dedups by transaction id and by
//! `(signer, sequence)` (the first transaction for a slot wins), and bounds
//! the pool per signer and in total. Nothing is verified again when a block
//! is built from the pool.
//!
//! A leader takes, per signer, the run of consecutive sequence numbers that
//! starts at the signer's committed next sequence ([`Mempool::take_batch`]);
//! taken transactions are "in flight" until their block commits, and become
//! proposable again if it has not committed by `retry_after` (the block was
//! abandoned by a view change).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use palisade_consensus::hotstuff::SignatureVerifier;
use palisade_crypto::{encode, Digest, PublicKey, SignedTransaction};

/// Why a transaction was not admitted. `code()` is the API error code and the
/// metrics label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdmitError {
    /// Chain id, signature or cosignature refused.
    #[error("{0}")]
    BadSignature(String),
    /// Signed for another chain.
    #[error("{0}")]
    WrongChain(String),
    /// The encoded transaction exceeds the genesis bound.
    #[error("transaction of {got} bytes exceeds the {cap}-byte limit")]
    TooLarge {
        /// Encoded size.
        got: usize,
        /// Limit.
        cap: usize,
    },
    /// Sequence already used by a committed transaction.
    #[error("sequence {got} is below the signer's next sequence {next}")]
    StaleSequence {
        /// Sequence in the transaction.
        got: u64,
        /// Signer's committed next sequence.
        next: u64,
    },
    /// Sequence too far ahead of the committed one.
    #[error("sequence {got} is more than {window} ahead of the signer's next sequence {next}")]
    FutureSequence {
        /// Sequence in the transaction.
        got: u64,
        /// Signer's committed next sequence.
        next: u64,
        /// Allowed window.
        window: u64,
    },
    /// Another transaction already holds this signer's sequence number.
    #[error("another transaction with sequence {0} from this signer is pending")]
    SequenceTaken(u64),
    /// The same transaction is already pending.
    #[error("transaction already pending")]
    Duplicate,
    /// The committed state does not let the signer do this (checked early so
    /// that unenrolled keys cannot fill blocks with rejected transactions).
    #[error("{reason}")]
    NotPermitted {
        /// `not_enrolled`, `unknown_namespace` or `not_a_validator`.
        code: &'static str,
        /// What was refused.
        reason: String,
    },
    /// The pool (or this signer's share) is full.
    #[error("mempool full: {0}")]
    Full(&'static str),
}

impl AdmitError {
    /// Stable code for the API and metrics.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            AdmitError::BadSignature(_) => "bad_signature",
            AdmitError::WrongChain(_) => "wrong_chain",
            AdmitError::TooLarge { .. } => "too_large",
            AdmitError::StaleSequence { .. } => "stale_sequence",
            AdmitError::FutureSequence { .. } => "future_sequence",
            AdmitError::SequenceTaken(_) => "sequence_taken",
            AdmitError::Duplicate => "duplicate",
            AdmitError::NotPermitted { code, .. } => code,
            AdmitError::Full(_) => "mempool_full",
        }
    }
}

struct Entry {
    tx: SignedTransaction,
    id: Digest,
    in_flight_until: Option<Instant>,
}

/// Bounds and identity of the pool.
#[derive(Debug, Clone)]
pub(crate) struct MempoolLimits {
    /// Chain id transactions must name.
    pub(crate) chain_id: String,
    /// Genesis hash transactions must name (and the node's own acts sign).
    pub(crate) genesis_hash: palisade_crypto::Digest,
    /// Most transactions in total.
    pub(crate) max_txs: usize,
    /// Most per signer (also the sequence window).
    pub(crate) max_per_signer: usize,
    /// Largest encoded transaction.
    pub(crate) max_tx_bytes: usize,
    /// When an in-flight transaction becomes proposable again.
    pub(crate) retry_after: Duration,
}

/// How long a transaction set aside from a proposal still counts as
/// pending (it may commit in an uncommitted block that already holds it).
const SET_ASIDE_FOR: Duration = Duration::from_secs(30);

/// Most transactions remembered as set aside (oldest forgotten first).
const MAX_SET_ASIDE: usize = 4096;

/// Pending transactions.
pub(crate) struct Mempool {
    limits: MempoolLimits,
    by_slot: BTreeMap<(PublicKey, u64), Entry>,
    ids: HashMap<Digest, (PublicKey, u64)>,
    per_signer: HashMap<PublicKey, usize>,
    /// Transactions dropped from a proposal as inadmissible on the chain it
    /// extends, with when: see [`Mempool::set_aside`].
    set_aside: HashMap<Digest, Instant>,
    set_aside_order: std::collections::VecDeque<Digest>,
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mempool({} txs)", self.len())
    }
}

impl Mempool {
    /// An empty pool.
    pub(crate) fn new(limits: MempoolLimits) -> Self {
        Mempool {
            limits,
            by_slot: BTreeMap::new(),
            ids: HashMap::new(),
            per_signer: HashMap::new(),
            set_aside: HashMap::new(),
            set_aside_order: std::collections::VecDeque::new(),
        }
    }

    /// Number of pending transactions.
    pub(crate) fn len(&self) -> usize {
        self.by_slot.len()
    }

    /// Whether the pool is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_slot.is_empty()
    }

    /// Whether `id` is pending.
    pub(crate) fn contains(&self, id: &Digest) -> bool {
        self.ids.contains_key(id)
    }

    /// Check a transaction's signature once (outside any lock: it is the
    /// expensive part) and its size. Returns its id. `verifier` gives the
    /// strict verdict (the node's verdict cache, which then spares the
    /// block's execution a second verification).
    pub(crate) fn verify(
        limits: &MempoolLimits,
        verifier: &dyn SignatureVerifier,
        tx: &SignedTransaction,
    ) -> Result<Digest, AdmitError> {
        // Counted without building the encoding.
        let size = borsh::object_length(tx).unwrap_or_else(|_| encode(tx).len());
        if size > limits.max_tx_bytes {
            return Err(AdmitError::TooLarge {
                got: size,
                cap: limits.max_tx_bytes,
            });
        }
        match tx.verify_with(&limits.chain_id, &limits.genesis_hash, |k, d, s| {
            verifier.verify(k, d, s)
        }) {
            Ok((id, _)) => Ok(id),
            Err(
                e @ (palisade_crypto::TxError::WrongChain { .. }
                | palisade_crypto::TxError::WrongGenesis { .. }),
            ) => Err(AdmitError::WrongChain(e.to_string())),
            Err(e) => Err(AdmitError::BadSignature(e.to_string())),
        }
    }

    /// The limits.
    #[cfg(test)]
    pub(crate) fn limits(&self) -> &MempoolLimits {
        &self.limits
    }

    /// Admit a transaction whose signature [`Mempool::verify`] accepted as
    /// `id`; `next` is the signer's committed next sequence.
    pub(crate) fn insert_verified(
        &mut self,
        tx: SignedTransaction,
        id: Digest,
        next: u64,
    ) -> Result<(), AdmitError> {
        if self.ids.contains_key(&id) {
            return Err(AdmitError::Duplicate);
        }
        let signer = tx.tx.signer;
        let seq = tx.tx.sequence;
        if seq < next {
            return Err(AdmitError::StaleSequence { got: seq, next });
        }
        let window = self.limits.max_per_signer as u64;
        if seq - next >= window {
            return Err(AdmitError::FutureSequence {
                got: seq,
                next,
                window,
            });
        }
        if self.by_slot.contains_key(&(signer, seq)) {
            return Err(AdmitError::SequenceTaken(seq));
        }
        self.prune_signer(&signer, next);
        if self.per_signer.get(&signer).copied().unwrap_or(0) >= self.limits.max_per_signer {
            return Err(AdmitError::Full("this signer's share is full"));
        }
        if self.by_slot.len() >= self.limits.max_txs {
            return Err(AdmitError::Full("the pool is full"));
        }
        self.ids.insert(id, (signer, seq));
        *self.per_signer.entry(signer).or_default() += 1;
        self.by_slot.insert(
            (signer, seq),
            Entry {
                tx,
                id,
                in_flight_until: None,
            },
        );
        Ok(())
    }

    /// The next sequence a signer should use, counting pending transactions
    /// that extend its committed run.
    pub(crate) fn next_sequence(&self, signer: &PublicKey, committed_next: u64) -> u64 {
        let mut next = committed_next;
        while self.by_slot.contains_key(&(*signer, next)) {
            next += 1;
        }
        next
    }

    /// Drop a signer's transactions below its committed next sequence.
    fn prune_signer(&mut self, signer: &PublicKey, next: u64) {
        let stale: Vec<u64> = self
            .by_slot
            .range((*signer, 0)..(*signer, next))
            .map(|((_, s), _)| *s)
            .collect();
        for seq in stale {
            self.remove_slot(signer, seq);
        }
    }

    fn remove_slot(&mut self, signer: &PublicKey, seq: u64) {
        if let Some(entry) = self.by_slot.remove(&(*signer, seq)) {
            self.ids.remove(&entry.id);
            if let Some(n) = self.per_signer.get_mut(signer) {
                *n -= 1;
                if *n == 0 {
                    self.per_signer.remove(signer);
                }
            }
        }
    }

    /// Transactions for a block: per signer, consecutive sequences from its
    /// committed next one (`next_of`), skipping ones in flight, at most `max`.
    pub(crate) fn take_batch(
        &mut self,
        max: usize,
        now: Instant,
        mut next_of: impl FnMut(&PublicKey) -> u64,
    ) -> Vec<SignedTransaction> {
        let signers: Vec<PublicKey> = self.per_signer.keys().copied().collect();
        let mut out = Vec::new();
        for signer in signers {
            if out.len() >= max {
                break;
            }
            let next = next_of(&signer);
            self.prune_signer(&signer, next);
            let mut seq = next;
            while out.len() < max {
                let Some(entry) = self.by_slot.get_mut(&(signer, seq)) else {
                    break;
                };
                let in_flight = entry.in_flight_until.is_some_and(|t| t > now);
                if !in_flight {
                    entry.in_flight_until = Some(now + self.limits.retry_after);
                    out.push(entry.tx.clone());
                }
                seq += 1;
            }
        }
        out
    }

    /// Mark transactions seen in another leader's (uncommitted) block as in
    /// flight, so this node does not propose them again while it is pending.
    pub(crate) fn mark_in_flight(&mut self, ids: &[Digest], now: Instant) {
        for id in ids {
            if let Some(slot) = self.ids.get(id) {
                if let Some(entry) = self.by_slot.get_mut(slot) {
                    entry.in_flight_until = Some(now + self.limits.retry_after);
                }
            }
        }
    }

    /// Forget committed transactions.
    pub(crate) fn remove_committed(&mut self, ids: &[Digest]) {
        for id in ids {
            if let Some((signer, seq)) = self.ids.get(id).copied() {
                self.remove_slot(&signer, seq);
            }
        }
    }

    /// Drop transactions that execution found inadmissible on the chain a
    /// proposal extends. The usual cause is benign: an uncommitted ancestor
    /// block (another leader's) already holds the transaction, so its
    /// sequence is used there. Until that block commits, the node must not
    /// call the transaction unknown (a client waiting for its receipt gave
    /// up on that 404): it stays "pending" for [`SET_ASIDE_FOR`].
    pub(crate) fn set_aside(&mut self, ids: &[Digest], now: Instant) {
        self.remove_committed(ids);
        for id in ids {
            if self.set_aside.insert(*id, now).is_none() {
                self.set_aside_order.push_back(*id);
            }
        }
        while self.set_aside_order.len() > MAX_SET_ASIDE
            || self
                .set_aside_order
                .front()
                .and_then(|id| self.set_aside.get(id))
                .is_some_and(|t| now.saturating_duration_since(*t) >= SET_ASIDE_FOR)
        {
            if let Some(id) = self.set_aside_order.pop_front() {
                self.set_aside.remove(&id);
            }
        }
    }

    /// Whether `id` was set aside from a proposal less than
    /// [`SET_ASIDE_FOR`] before `now`.
    pub(crate) fn recently_set_aside(&self, id: &Digest, now: Instant) -> bool {
        self.set_aside
            .get(id)
            .is_some_and(|t| now.saturating_duration_since(*t) < SET_ASIDE_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crypto::{SecretKey, Transaction, TxBody};

    /// audit3's observation: a transaction another leader's uncommitted
    /// block already holds is inadmissible on top of it; the proposer drops
    /// it from its pool, and the node then answered 404 "neither pending nor
    /// committed" to the client waiting for its receipt. Set aside, it
    /// stays pending for 30 s; the memory is bounded.
    #[test]
    fn a_transaction_set_aside_from_a_proposal_stays_pending_for_a_while() {
        let mut pool = Mempool::new(limits());
        let key = SecretKey::from_seed([7; 32]);
        let t = tx(&key, 0, "c");
        let id = t.id();
        admit(&mut pool, t, 0).unwrap();
        assert!(pool.contains(&id));
        let now = Instant::now();
        pool.set_aside(&[id], now);
        assert!(!pool.contains(&id), "no longer proposable");
        assert!(pool.recently_set_aside(&id, now + Duration::from_secs(29)));
        assert!(!pool.recently_set_aside(&id, now + SET_ASIDE_FOR));
        let many: Vec<Digest> = (0..MAX_SET_ASIDE as u64 + 10)
            .map(|i| {
                let mut d = [0u8; 32];
                d[..8].copy_from_slice(&i.to_be_bytes());
                palisade_crypto::Digest(d)
            })
            .collect();
        pool.set_aside(&many, now);
        assert!(pool.set_aside.len() <= MAX_SET_ASIDE);
        assert!(pool.recently_set_aside(many.last().unwrap(), now));
    }

    fn limits() -> MempoolLimits {
        MempoolLimits {
            chain_id: "c".into(),
            genesis_hash: palisade_crypto::Digest::ZERO,
            max_txs: 5,
            max_per_signer: 3,
            max_tx_bytes: 4096,
            retry_after: Duration::from_secs(3),
        }
    }

    fn tx(key: &SecretKey, seq: u64, chain: &str) -> SignedTransaction {
        Transaction {
            chain_id: chain.into(),
            genesis_hash: palisade_crypto::Digest::ZERO,
            signer: key.public(),
            sequence: seq,
            body: TxBody::Revoke {
                identity: key.public(),
            },
        }
        .sign(key)
    }

    fn admit(pool: &mut Mempool, t: SignedTransaction, next: u64) -> Result<(), AdmitError> {
        let id = Mempool::verify(
            pool.limits(),
            &palisade_consensus::hotstuff::StrictVerifier,
            &t,
        )?;
        pool.insert_verified(t, id, next)
    }

    #[test]
    fn admission_checks_signature_chain_sequence_dedup_and_bounds() {
        let (a, b) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let mut pool = Mempool::new(limits());
        let mut forged = tx(&a, 0, "c");
        forged.tx.sequence = 1;
        assert_eq!(
            admit(&mut pool, forged, 0).unwrap_err().code(),
            "bad_signature"
        );
        assert_eq!(
            admit(&mut pool, tx(&a, 0, "other"), 0).unwrap_err().code(),
            "wrong_chain"
        );
        assert_eq!(
            admit(&mut pool, tx(&a, 0, "c"), 1).unwrap_err().code(),
            "stale_sequence"
        );
        assert_eq!(
            admit(&mut pool, tx(&a, 3, "c"), 0).unwrap_err().code(),
            "future_sequence"
        );
        admit(&mut pool, tx(&a, 0, "c"), 0).unwrap();
        assert_eq!(
            admit(&mut pool, tx(&a, 0, "c"), 0),
            Err(AdmitError::Duplicate)
        );
        let mut other = tx(&a, 0, "c");
        other.tx.body = TxBody::Revoke {
            identity: b.public(),
        };
        let other = other.tx.sign(&a);
        assert_eq!(
            admit(&mut pool, other, 0),
            Err(AdmitError::SequenceTaken(0))
        );
        admit(&mut pool, tx(&a, 1, "c"), 0).unwrap();
        admit(&mut pool, tx(&a, 2, "c"), 0).unwrap();
        assert_eq!(pool.next_sequence(&a.public(), 0), 3);
        admit(&mut pool, tx(&b, 0, "c"), 0).unwrap();
        admit(&mut pool, tx(&b, 1, "c"), 0).unwrap();
        assert_eq!(pool.len(), 5);
        assert_eq!(
            admit(&mut pool, tx(&b, 2, "c"), 0).unwrap_err().code(),
            "mempool_full"
        );
    }

    #[test]
    fn batches_are_consecutive_runs_and_in_flight_txs_retry_after_a_while() {
        let a = SecretKey::from_seed([1; 32]);
        let mut pool = Mempool::new(MempoolLimits {
            max_per_signer: 4,
            ..limits()
        });
        for seq in [0, 1, 3] {
            admit(&mut pool, tx(&a, seq, "c"), 0).unwrap();
        }
        let t0 = Instant::now();
        let batch = pool.take_batch(10, t0, |_| 0);
        let seqs: Vec<u64> = batch.iter().map(|t| t.tx.sequence).collect();
        assert_eq!(seqs, vec![0, 1], "sequence 3 waits for 2");
        assert!(pool.take_batch(10, t0, |_| 0).is_empty(), "in flight");
        let later = t0 + Duration::from_secs(4);
        assert_eq!(
            pool.take_batch(10, later, |_| 0).len(),
            2,
            "retried after retry_after"
        );
        pool.remove_committed(&[batch[0].id()]);
        assert_eq!(pool.len(), 2);
        // Committed next sequence 2: sequence 1 is pruned as stale.
        assert!(pool
            .take_batch(10, later + Duration::from_secs(4), |_| 2)
            .is_empty());
        assert_eq!(pool.len(), 1);
    }
}
