//! Leases kept off consensus: an owner's signed heartbeat, sent to every
//! validator, and a validator's signed silence report.
//!
//! An identity renews **all** the instances it owns with one
//! [`LeaseHeartbeat`], signed over `hash(Domain::LeaseHeartbeat,
//! borsh(heartbeat))`. It never enters a block: each validator verifies it
//! once and remembers, in memory, when it last heard from that owner.
//! `sent_at_ms` is the owner's clock and doubles as a replay counter (a
//! validator keeps only a strictly larger one, and only within a window of its
//! own clock), so a captured heartbeat cannot be replayed later.
//!
//! A validator that has not heard from an instance for a whole TTL signs a
//! [`SilenceReport`] naming it (`hash(Domain::SilenceReport, borsh(report))`).
//! A block that carries reports from validators holding a quorum of power
//! (2f+1), all fresh and all naming the instance, expires it (the state
//! machine's rule, `palisade_consensus::state`): at least f+1 of those are
//! honest and did not hear the owner, so f liars can neither expire an
//! instance that f+1 honest validators hear nor keep one alive that 2f+1
//! honest validators do not.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::{
    hash_encoded, Digest, Domain, InstanceId, PublicKey, ServiceName, SigError, Signature,
};

/// Most instances one silence report may name (all of one service), so that
/// a quorum of reports for one service fits in one transaction.
pub const MAX_SILENT_PER_REPORT: usize = 64;

/// "I, `identity`, am alive at `sent_at_ms`": renews every instance the
/// identity owns at every validator that receives it.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct LeaseHeartbeat {
    /// The chain it is for (no cross-chain replay).
    pub chain_id: String,
    /// The owner (an enrolled identity).
    pub identity: PublicKey,
    /// The owner's clock, milliseconds since the Unix epoch; strictly
    /// increasing per identity (the replay counter).
    pub sent_at_ms: u64,
}

/// A heartbeat with its owner's signature.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedHeartbeat {
    /// The signed content.
    pub heartbeat: LeaseHeartbeat,
    /// `identity`'s signature over [`LeaseHeartbeat::digest`].
    pub signature: Signature,
}

impl LeaseHeartbeat {
    /// The signing digest.
    pub fn digest(&self) -> Digest {
        hash_encoded(Domain::LeaseHeartbeat, self)
    }

    /// Sign with `key` (the identity's).
    pub fn sign(self, key: &crate::SecretKey) -> SignedHeartbeat {
        let signature = key.sign_digest(&self.digest());
        SignedHeartbeat {
            heartbeat: self,
            signature,
        }
    }
}

impl SignedHeartbeat {
    /// Check the identity's signature (`verify_strict`, weak keys refused).
    pub fn verify(&self) -> Result<(), SigError> {
        self.heartbeat
            .identity
            .verify_digest(&self.heartbeat.digest(), &self.signature)
    }
}

/// "I, `validator`, have not heard from these instances of one service for
/// a whole TTL, as of `observed_at_ms` on my clock."
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SilenceReport {
    /// The chain it is for.
    pub chain_id: String,
    /// The epoch of the validator set the reporter belongs to.
    pub epoch: u64,
    /// The reporting validator.
    pub validator: PublicKey,
    /// The reporter's clock when it found them silent (ms since the epoch).
    pub observed_at_ms: u64,
    /// Namespace.
    pub namespace: ServiceName,
    /// Service.
    pub service: ServiceName,
    /// Silent instances of that service: sorted, distinct, 1 to
    /// [`MAX_SILENT_PER_REPORT`].
    pub instances: Vec<InstanceId>,
}

/// A silence report with its validator's signature.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedSilenceReport {
    /// The signed content.
    pub report: SilenceReport,
    /// `validator`'s signature over [`SilenceReport::digest`].
    pub signature: Signature,
}

impl SilenceReport {
    /// The signing digest.
    pub fn digest(&self) -> Digest {
        hash_encoded(Domain::SilenceReport, self)
    }

    /// Sign with `key` (the validator's).
    pub fn sign(self, key: &crate::SecretKey) -> SignedSilenceReport {
        let signature = key.sign_digest(&self.digest());
        SignedSilenceReport {
            report: self,
            signature,
        }
    }

    /// Whether `instances` is sorted, distinct and within bounds.
    pub fn well_formed(&self) -> bool {
        !self.instances.is_empty()
            && self.instances.len() <= MAX_SILENT_PER_REPORT
            && self.instances.windows(2).all(|w| w[0] < w[1])
    }
}

impl SignedSilenceReport {
    /// Check the validator's signature (`verify_strict`, weak keys refused).
    pub fn verify(&self) -> Result<(), SigError> {
        self.report
            .validator
            .verify_digest(&self.report.digest(), &self.signature)
    }
}
