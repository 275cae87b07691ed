//! The signed transaction envelope.
//!
//! A transaction is signed over `hash(Domain::Transaction, borsh(Transaction))`,
//! which covers the chain id (no cross-chain replay), the genesis hash (no
//! replay on a re-genesised chain that kept its id, where sequences start
//! over: issue-13 review), the signer, its sequence
//! number (no replay within the chain) and the body. That digest is also the
//! transaction's id. Acts of the enrollment authority carry cosignatures from
//! other authority members over the same digest (M-of-N).

use borsh::{BorshDeserialize, BorshSerialize};

use crate::{
    hash_encoded, Digest, Domain, Enrollment, InstanceId, PublicKey, Registration, ServiceName,
    SigError, Signature, SignedSilenceReport, TxError, Validator,
};

/// How far past its signer's next sequence number a transaction's sequence
/// may be (a consensus rule: further is refused, and refused transactions
/// change nothing). Gaps up to this size let a signer keep transactions in
/// flight when some before them are dropped or refused; the bound means no
/// one (a lying node included) can make a transaction advance its signer's
/// account by more than `MAX_SEQUENCE_STEP + 1`, so exhausting the 2^64
/// sequence space would take more than 10^16 committed transactions.
/// Mempools keep a smaller per-signer window.
pub const MAX_SEQUENCE_STEP: u64 = 1024;

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum TxBody {
    /// Enroll an identity (authority act).
    Enroll(Enrollment),
    /// Revoke an identity (authority act).
    Revoke {
        /// The identity revoked.
        identity: PublicKey,
    },
    /// Register or update an instance.
    Register(Registration),
    /// Remove an instance.
    Deregister {
        /// Namespace.
        namespace: ServiceName,
        /// Service.
        service: ServiceName,
        /// Instance.
        instance: InstanceId,
    },
    /// Renew an instance's lease.
    Heartbeat {
        /// Namespace.
        namespace: ServiceName,
        /// Service.
        service: ServiceName,
        /// Instance.
        instance: InstanceId,
    },
    /// A validator's probe verdict on an instance.
    HealthReport {
        /// Namespace.
        namespace: ServiceName,
        /// Service.
        service: ServiceName,
        /// Instance.
        instance: InstanceId,
        /// Whether the probe passed.
        passing: bool,
    },
    /// Set the validators of the next epoch (authority act).
    ChangeValidators {
        /// The next epoch's validators.
        validators: Vec<Validator>,
    },
    /// Validators' silence reports, carried by a validator: expires every
    /// instance that fresh reports of a quorum of validators name (chains
    /// whose leases are attested, see [`crate::SilenceReport`]).
    ExpireSilent {
        /// The reports (each signed by its validator).
        reports: Vec<SignedSilenceReport>,
    },
}

impl TxBody {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TxBody::Enroll(_) => "enroll",
            TxBody::Revoke { .. } => "revoke",
            TxBody::Register(_) => "register",
            TxBody::Deregister { .. } => "deregister",
            TxBody::Heartbeat { .. } => "heartbeat",
            TxBody::HealthReport { .. } => "health_report",
            TxBody::ChangeValidators { .. } => "change_validators",
            TxBody::ExpireSilent { .. } => "expire_silent",
        }
    }
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    /// The chain this transaction is for.
    pub chain_id: String,
    /// The hash of the genesis that chain grew from (network.json's
    /// `genesis_hash`).
    pub genesis_hash: Digest,
    /// Who signs it.
    pub signer: PublicKey,
    /// The signer's sequence number (strictly increasing, from 0).
    pub sequence: u64,
    /// What it does.
    pub body: TxBody,
}

/// A further authority member's signature over the same digest.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Cosignature {
    /// Cosigner.
    pub signer: PublicKey,
    /// Its signature over the transaction digest.
    pub signature: Signature,
}

/// A transaction with its signature (and cosignatures for authority acts).
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction {
    /// The signed content.
    pub tx: Transaction,
    /// The signer's signature over [`Transaction::digest`].
    pub signature: Signature,
    /// Cosignatures over the same digest.
    pub cosignatures: Vec<Cosignature>,
}

impl Transaction {
    /// The signing digest, which is also the transaction id.
    pub fn digest(&self) -> Digest {
        hash_encoded(Domain::Transaction, self)
    }

    /// Sign with `key` (which should be `self.signer`'s).
    pub fn sign(self, key: &crate::SecretKey) -> SignedTransaction {
        let signature = key.sign_digest(&self.digest());
        SignedTransaction {
            tx: self,
            signature,
            cosignatures: Vec::new(),
        }
    }
}

impl SignedTransaction {
    /// The transaction id.
    pub fn id(&self) -> Digest {
        self.tx.digest()
    }

    /// Add a cosignature by `key`.
    pub fn cosign(&mut self, key: &crate::SecretKey) {
        let signature = key.sign_digest(&self.tx.digest());
        self.cosignatures.push(Cosignature {
            signer: key.public(),
            signature,
        });
    }

    /// Check the chain id, the genesis hash and every signature
    /// (`verify_strict`, weak keys refused), and that no key signs twice.
    /// Returns the id and the distinct signers (signer first). Authorization
    /// (who may do what) is the state machine's job.
    pub fn verify(
        &self,
        chain_id: &str,
        genesis_hash: &Digest,
    ) -> Result<(Digest, Vec<PublicKey>), TxError> {
        self.verify_with(chain_id, genesis_hash, |key, digest, sig| {
            key.verify_digest(digest, sig)
        })
    }

    /// [`SignedTransaction::verify`] with every signature checked by `check`
    /// (a verdict cache in front of `verify_strict`, say). `check` must give
    /// the strict verdict: the result decides a block's validity.
    pub fn verify_with(
        &self,
        chain_id: &str,
        genesis_hash: &Digest,
        check: impl Fn(&PublicKey, &Digest, &Signature) -> Result<(), SigError>,
    ) -> Result<(Digest, Vec<PublicKey>), TxError> {
        if self.tx.chain_id != chain_id {
            return Err(TxError::WrongChain {
                got: self.tx.chain_id.clone(),
                expected: chain_id.to_string(),
            });
        }
        if self.tx.genesis_hash != *genesis_hash {
            return Err(TxError::WrongGenesis {
                got: self.tx.genesis_hash,
                expected: *genesis_hash,
            });
        }
        let digest = self.tx.digest();
        check(&self.tx.signer, &digest, &self.signature)?;
        let mut signers = vec![self.tx.signer];
        for co in &self.cosignatures {
            if signers.contains(&co.signer) {
                return Err(TxError::DuplicateCosigner(co.signer));
            }
            check(&co.signer, &digest, &co.signature).map_err(TxError::Signature)?;
            signers.push(co.signer);
        }
        Ok((digest, signers))
    }
}
