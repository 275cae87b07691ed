//! The client's trust anchor and the chain of validator sets it follows.
//!
//! A client trusts the genesis validator set of its network file and nothing
//! else. A later epoch's set is trusted only once the certificate of the last
//! block of the previous epoch, signed by a quorum of the previous set, names
//! it ([`CommitCertificate::next_epoch`]). Sets of past epochs are kept so that
//! an older certificate still verifies against the set that signed it, but
//! only for heights up to the end of its epoch: a retired set's certificate
//! for a later height is refused ([`ClientError::RetiredEpoch`]), since
//! retired validators may no longer guard their keys.
//!
//! A chain is named by its chain id and its genesis hash: every certificate
//! signs both (`LedgerInfo::genesis_hash`), and a chain trusted from a
//! network file refuses a certificate naming another genesis
//! ([`ClientError::WrongGenesis`]), so the keys of an old chain cannot
//! certify a re-genesised chain that kept its chain id.
//!
//! Two different certified ends of one epoch (its keys signed a fork, as
//! retired keys can) stop the chain: from then on every certificate is
//! refused ([`ClientError::ConflictingEpochChange`]); nothing is trusted
//! again without an operator.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use palisade_crypto::{
    CommitCertificate, Digest, NetworkFile, PublicKey, Signature, ValidatorSet, VerifiedLedgerInfo,
};

use crate::ClientError;

/// Validator sets the client trusts, by epoch, for one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedChain {
    chain_id: String,
    /// The genesis every certificate must name, when known.
    genesis_hash: Option<Digest>,
    sets: BTreeMap<u64, ValidatorSet>,
    /// Last height of each retired epoch.
    ends: BTreeMap<u64, u64>,
    changes: Vec<CommitCertificate>,
    /// Set once two different ends of this epoch were seen.
    forked: Option<u64>,
    /// The two ends, as an evidence file anyone holding network.json can
    /// check offline ([`crate::verify_evidence`]).
    fork_evidence: Option<palisade_crypto::dc::EquivocationEvidence>,
    /// Certificates whose quorum of signatures already verified.
    verified: VerifiedCerts,
}

/// How many verified certificates a [`TrustedChain`] remembers.
pub const VERIFIED_CERTS_KEPT: usize = 64;

/// The certificates that verified lately, each as the digest of its ledger
/// info and its exact signatures, with the result. One block's certificate
/// comes back in every receipt of that block and in every lookup at its
/// height; its signatures were checked once, and an identical copy needs no
/// second check. A copy with any other signature is not identical and is
/// checked in full. Only what passed is kept, at most
/// [`VERIFIED_CERTS_KEPT`], oldest dropped first; it is a cache: it takes no
/// part in equality, and a clone starts empty.
#[derive(Default)]
struct VerifiedCerts(Mutex<VecDeque<VerifiedCert>>);

type VerifiedCert = (Digest, Vec<(PublicKey, Signature)>, VerifiedLedgerInfo);

impl VerifiedCerts {
    fn get(&self, digest: &Digest, cert: &CommitCertificate) -> Option<VerifiedLedgerInfo> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter()
            .find(|(d, sigs, _)| d == digest && *sigs == cert.signatures)
            .map(|(_, _, v)| v.clone())
    }

    fn keep(&self, digest: Digest, cert: &CommitCertificate, verified: &VerifiedLedgerInfo) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= VERIFIED_CERTS_KEPT {
            kept.pop_front();
        }
        kept.push_back((digest, cert.signatures.clone(), verified.clone()));
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Clone for VerifiedCerts {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for VerifiedCerts {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for VerifiedCerts {}

impl std::fmt::Debug for VerifiedCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifiedCerts({})", self.len())
    }
}

impl TrustedChain {
    /// Trust `genesis` for `chain_id`. The set must be well formed. This
    /// binds no genesis hash (certificates of any genesis with this chain id
    /// and these keys verify): clients build theirs with
    /// [`TrustedChain::from_network`], or add it with
    /// [`TrustedChain::with_genesis_hash`].
    pub fn new(chain_id: &str, genesis: ValidatorSet) -> Result<Self, ClientError> {
        genesis.validate()?;
        let mut sets = BTreeMap::new();
        sets.insert(genesis.epoch, genesis);
        Ok(TrustedChain {
            chain_id: chain_id.to_string(),
            genesis_hash: None,
            sets,
            ends: BTreeMap::new(),
            changes: Vec::new(),
            forked: None,
            fork_evidence: None,
            verified: VerifiedCerts::default(),
        })
    }

    /// Trust a network file's genesis set, for its chain id and genesis hash.
    pub fn from_network(network: &NetworkFile) -> Result<Self, ClientError> {
        Ok(Self::new(&network.chain_id, network.validators.clone())?
            .with_genesis_hash(network.genesis_hash))
    }

    /// Require every certificate to name `genesis_hash`.
    pub fn with_genesis_hash(mut self, genesis_hash: Digest) -> Self {
        self.genesis_hash = Some(genesis_hash);
        self
    }

    /// The genesis hash certificates must name, if bound.
    pub fn genesis_hash(&self) -> Option<Digest> {
        self.genesis_hash
    }

    /// Chain id and genesis hash of a certificate against the trusted ones.
    fn check_chain(&self, cert: &CommitCertificate) -> Result<(), ClientError> {
        let li = &cert.ledger_info;
        if li.chain_id != self.chain_id {
            return Err(ClientError::WrongChain {
                got: li.chain_id.clone(),
                expected: self.chain_id.clone(),
            });
        }
        match self.genesis_hash {
            Some(expected) if li.genesis_hash != expected => Err(ClientError::WrongGenesis {
                got: li.genesis_hash,
                expected,
            }),
            _ => Ok(()),
        }
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// The latest epoch whose set is trusted.
    pub fn latest_epoch(&self) -> u64 {
        *self
            .sets
            .keys()
            .next_back()
            .expect("at least the genesis set")
    }

    /// The epoch-ending certificates followed so far, in order (enough for
    /// another client with the same genesis to follow them again).
    pub fn changes(&self) -> &[CommitCertificate] {
        &self.changes
    }

    /// The trusted set of `epoch`, if followed that far.
    pub fn validators(&self, epoch: u64) -> Option<&ValidatorSet> {
        self.sets.get(&epoch)
    }

    /// Verify a commit certificate against the trusted set of its epoch.
    pub fn verify(&self, cert: &CommitCertificate) -> Result<VerifiedLedgerInfo, ClientError> {
        if let Some(epoch) = self.forked {
            return Err(ClientError::ConflictingEpochChange { epoch });
        }
        let li = &cert.ledger_info;
        self.check_chain(cert)?;
        let set = self.sets.get(&li.epoch).ok_or(ClientError::UnknownEpoch {
            got: li.epoch,
            trusted: self.latest_epoch(),
        })?;
        if let (Some(&ended_at), Some(block)) = (self.ends.get(&li.epoch), &li.commit) {
            if block.height > ended_at {
                return Err(ClientError::RetiredEpoch {
                    epoch: li.epoch,
                    height: block.height,
                    ended_at,
                });
            }
        }
        let digest = li.digest();
        if let Some(verified) = self.verified.get(&digest, cert) {
            return Ok(verified);
        }
        let verified = cert.verify(set, &self.chain_id)?;
        self.verified.keep(digest, cert, &verified);
        Ok(verified)
    }

    /// How many verified certificates are remembered (at most
    /// [`VERIFIED_CERTS_KEPT`]): an identical copy of one is not checked again.
    pub fn certificates_remembered(&self) -> usize {
        self.verified.len()
    }

    /// The evidence of a detected fork (two certified ends of one epoch).
    pub fn fork_evidence(&self) -> Option<&palisade_crypto::dc::EquivocationEvidence> {
        self.fork_evidence.as_ref()
    }

    /// A certificate of an epoch already followed must end it where the
    /// followed one did; a different, validly signed end is a fork.
    fn check_same_end(&mut self, cert: &CommitCertificate) -> Result<(), ClientError> {
        let epoch = cert.ledger_info.epoch;
        let Some(known) = self.changes.iter().find(|c| c.ledger_info.epoch == epoch) else {
            return Ok(());
        };
        if known.ledger_info.commit == cert.ledger_info.commit {
            return Ok(());
        }
        let set = &self.sets[&epoch];
        if self.check_chain(cert).is_ok() && cert.next_epoch(set, &self.chain_id).is_ok() {
            tracing::error!(epoch, "two different certified ends of one epoch");
            self.forked = Some(epoch);
            self.fork_evidence = Some(palisade_crypto::dc::EquivocationEvidence {
                chain_id: self.chain_id.clone(),
                epoch_changes: self
                    .changes
                    .iter()
                    .filter(|c| c.ledger_info.epoch < epoch)
                    .cloned()
                    .collect(),
                first: known.clone(),
                second: cert.clone(),
                chain: Vec::new(),
            });
            return Err(ClientError::ConflictingEpochChange { epoch });
        }
        Ok(())
    }

    /// Follow epoch-ending certificates, in order, from the latest trusted
    /// epoch on. Certificates of epochs already passed are skipped; a gap or
    /// a certificate that does not verify stops with an error, keeping the
    /// epochs followed before it.
    pub fn follow(&mut self, changes: &[CommitCertificate]) -> Result<(), ClientError> {
        for cert in changes {
            let latest = self.latest_epoch();
            let epoch = cert.ledger_info.epoch;
            if epoch < latest {
                self.check_same_end(cert)?;
                continue;
            }
            if epoch > latest {
                return Err(ClientError::BadEpochChange(format!(
                    "epoch change signed in epoch {epoch}, but the latest trusted epoch is {latest}"
                )));
            }
            self.check_chain(cert)?;
            let next = cert.next_epoch(&self.sets[&latest], &self.chain_id)?;
            tracing::info!(
                epoch = next.epoch,
                validators = next.validators.len(),
                "followed epoch change"
            );
            if let Some(end) = &cert.ledger_info.commit {
                self.ends.insert(latest, end.height);
            }
            self.sets.insert(next.epoch, next);
            self.changes.push(cert.clone());
        }
        Ok(())
    }
}
