//! The auditor: replay a chain's whole history from genesis, trusting only
//! `network.json` (the genesis validator set) and the genesis document whose
//! hash it names.
//!
//! For each height, in order, [`Auditor::audit`] checks what a node served:
//! - the block is the one its info names (`block.id() == info.block_id`) at
//!   the expected height, linked to the previous info (`parent_info`, parent
//!   id), with a timestamp after its parent's;
//! - its commit certificate verifies against the current validator set (and
//!   epoch changes are followed only through certified block infos), and the
//!   certified info is this block's or a descendant's that later links back;
//! - re-executing its payload on the registry state machine in memory gives
//!   the certified state root, transaction root and next validator set, and
//!   the receipts the node reported (ids and outcomes).
//!
//! Everything that does not hold is a [`Finding`]; the auditor goes on (a
//! re-execution that failed stops re-execution, not the other checks).

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_consensus::executor::{ExecutionContext, Executor};
use palisade_consensus::hotstuff::CommittedBlock;
use palisade_consensus::state::{Genesis, MemStore, RegistryExecutor, StateStore};
use palisade_crypto::{BlockInfo, Digest, NetworkFile, ValidatorSet};

use crate::snapshot::{SnapshotStart, SnapshotStore};

/// One height as a node served it (unchecked).
#[derive(Debug, Clone)]
pub struct UntrustedHeight {
    /// The height asked for.
    pub height: u64,
    /// The committed block with the QC that commits it.
    pub committed: CommittedBlock,
    /// The node's transaction ids for the height, in block order.
    pub tx_ids: Vec<Digest>,
    /// The node's outcome per transaction ("applied" or "rejected: ...").
    pub outcomes: Vec<String>,
}

/// Something in the history that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Re-execution disagrees with what was certified.
    RootMismatch {
        /// Height.
        height: u64,
        /// `state_root`, `tx_root` or `next_validators`.
        field: &'static str,
    },
    /// The block, its height or its info do not match each other.
    AlteredBlock {
        /// Height.
        height: u64,
        /// What differs.
        reason: String,
    },
    /// The block does not extend the previous one.
    UnlinkedChain {
        /// Height.
        height: u64,
        /// What does not link.
        reason: String,
    },
    /// Its certificate does not verify against the current validators.
    BadCertificate {
        /// Height.
        height: u64,
        /// Why.
        reason: String,
    },
    /// A verified certificate certified another block at this height.
    CertifiesAnotherBlock {
        /// Height.
        height: u64,
    },
    /// Two nodes served different blocks for one height.
    ConflictingBlocks {
        /// Height.
        height: u64,
        /// The two nodes.
        nodes: (String, String),
    },
    /// The node's receipts are not what execution gives.
    ReceiptMismatch {
        /// Height.
        height: u64,
        /// What differs.
        reason: String,
    },
    /// A block time not after its parent's.
    TimeBackwards {
        /// Height.
        height: u64,
        /// Its time and its parent's (ms).
        times: (u64, u64),
    },
    /// A height below the node's head that it did not serve.
    MissingBlock {
        /// Height.
        height: u64,
        /// What the node answered.
        reason: String,
    },
    /// Re-execution failed outright (the state machine refused the block).
    ExecutionFailed {
        /// Height.
        height: u64,
        /// Why.
        reason: String,
    },
    /// The snapshot an audit was to start from is not the certified state
    /// (a page that does not prove, a tree with another root).
    BadSnapshot {
        /// The snapshot height.
        height: u64,
        /// What does not hold.
        reason: String,
    },
}

impl Finding {
    /// The class, as printed (`root mismatch`, `altered block`, ...).
    pub fn class(&self) -> &'static str {
        match self {
            Finding::RootMismatch { .. } => "root mismatch",
            Finding::AlteredBlock { .. } => "altered block",
            Finding::UnlinkedChain { .. } => "unlinked chain",
            Finding::BadCertificate { .. } => "bad certificate",
            Finding::CertifiesAnotherBlock { .. } => "certificate for another block",
            Finding::ConflictingBlocks { .. } => "conflicting blocks",
            Finding::ReceiptMismatch { .. } => "receipt mismatch",
            Finding::TimeBackwards { .. } => "time backwards",
            Finding::MissingBlock { .. } => "missing block",
            Finding::ExecutionFailed { .. } => "execution failed",
            Finding::BadSnapshot { .. } => "bad snapshot",
        }
    }
}

/// The auditor could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The genesis document is not the one network.json names.
    #[error("genesis hash {got} is not network.json's {expected}")]
    GenesisMismatch {
        /// Hash of the document given.
        got: Digest,
        /// Hash named by network.json.
        expected: Digest,
    },
    /// The state machine refused the genesis.
    #[error("genesis: {0}")]
    Genesis(String),
}

/// Replays one chain; see the module docs.
pub struct Auditor {
    chain_id: String,
    genesis_hash: Digest,
    validators: ValidatorSet,
    executor: RegistryExecutor<Box<dyn StateStore + Send + Sync>>,
    start: u64,
    executing: bool,
    prev: BlockInfo,
    certified: BTreeMap<u64, Digest>,
    transactions: u64,
    findings: Vec<Finding>,
}

impl Auditor {
    /// Start at genesis. `genesis` must hash to `network.genesis_hash`.
    pub fn new(network: &NetworkFile, genesis: &Genesis) -> Result<Self, AuditError> {
        if genesis.hash() != network.genesis_hash {
            return Err(AuditError::GenesisMismatch {
                got: genesis.hash(),
                expected: network.genesis_hash,
            });
        }
        let store: Box<dyn StateStore + Send + Sync> = Box::new(MemStore::new());
        let executor = RegistryExecutor::open(store, genesis)
            .map_err(|e| AuditError::Genesis(e.to_string()))?;
        let prev = executor.committed_meta().genesis_info();
        Ok(Auditor {
            chain_id: network.chain_id.clone(),
            genesis_hash: network.genesis_hash,
            validators: network.validators.clone(),
            executor,
            start: 0,
            executing: true,
            prev,
            certified: BTreeMap::new(),
            transactions: 0,
            findings: Vec::new(),
        })
    }

    /// Start after a certified snapshot (see [`crate::snapshot`]): `store`
    /// holds the state at `start.info.height`, restored and checked against
    /// its certified root. The genesis document is checked as by
    /// [`Auditor::new`], and the restored state must be of this genesis.
    pub fn from_snapshot(
        network: &NetworkFile,
        genesis: &Genesis,
        start: SnapshotStart,
        store: Arc<SnapshotStore>,
    ) -> Result<Self, AuditError> {
        if genesis.hash() != network.genesis_hash {
            return Err(AuditError::GenesisMismatch {
                got: genesis.hash(),
                expected: network.genesis_hash,
            });
        }
        let store: Box<dyn StateStore + Send + Sync> = Box::new(store);
        let executor = RegistryExecutor::open(store, genesis)
            .map_err(|e| AuditError::Genesis(e.to_string()))?;
        if executor.committed() != (start.info.block_id, start.info.state_root) {
            return Err(AuditError::Genesis(
                "the restored state is not the certified block's".into(),
            ));
        }
        Ok(Auditor {
            chain_id: network.chain_id.clone(),
            genesis_hash: network.genesis_hash,
            validators: start.validators,
            executor,
            start: start.info.height,
            executing: true,
            prev: start.info,
            certified: BTreeMap::new(),
            transactions: 0,
            findings: Vec::new(),
        })
    }

    /// The last height audited (the top of the audited range).
    pub fn height(&self) -> u64 {
        self.prev.height
    }

    /// The height the audit started after (0: genesis; `H`: a snapshot).
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Heights audited so far.
    pub fn audited(&self) -> u64 {
        self.prev.height - self.start
    }

    /// Transactions re-executed so far.
    pub fn transactions(&self) -> u64 {
        self.transactions
    }

    /// Everything found so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Record a finding made outside (missing block, conflicting nodes).
    pub fn report(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Audit the next height; returns the findings it added.
    pub fn audit(&mut self, h: &UntrustedHeight) -> &[Finding] {
        let before = self.findings.len();
        let height = self.prev.height + 1;
        let c = &h.committed;
        let info = &c.info;
        if h.height != height || info.height != height || c.block.height != height {
            self.findings.push(Finding::AlteredBlock {
                height,
                reason: format!(
                    "asked for height {height}, served {} (info {}, block {})",
                    h.height, info.height, c.block.height
                ),
            });
        }
        let id = c.block.id();
        if id != info.block_id {
            self.findings.push(Finding::AlteredBlock {
                height,
                reason: format!("block hashes to {id}, its info names {}", info.block_id),
            });
        }
        if info.parent_info != self.prev.hash() || c.block.parent_id() != self.prev.block_id {
            self.findings.push(Finding::UnlinkedChain {
                height,
                reason: format!(
                    "parent {} / info {} do not extend height {} ({})",
                    c.block.parent_id(),
                    info.parent_info,
                    self.prev.height,
                    self.prev.block_id
                ),
            });
        }
        if info.timestamp_ms <= self.prev.timestamp_ms {
            self.findings.push(Finding::TimeBackwards {
                height,
                times: (info.timestamp_ms, self.prev.timestamp_ms),
            });
        }
        self.check_certificate(height, c);
        if self.executing {
            self.re_execute(height, h);
        }
        self.transactions += h.tx_ids.len() as u64;
        if let Some(next) = &info.next_validators {
            // The info is certified (directly or by a descendant's chain):
            // the next epoch's set is what it names.
            self.validators = next.clone();
        }
        self.prev = info.clone();
        &self.findings[before..]
    }

    fn check_certificate(&mut self, height: u64, c: &CommittedBlock) {
        let named = c.certificate().ledger_info.genesis_hash;
        if named != self.genesis_hash {
            self.findings.push(Finding::BadCertificate {
                height,
                reason: format!(
                    "names genesis {named}, the network's is {}",
                    self.genesis_hash
                ),
            });
            return;
        }
        match c.certificate().verify(&self.validators, &self.chain_id) {
            Err(e) => self.findings.push(Finding::BadCertificate {
                height,
                reason: e.to_string(),
            }),
            Ok(v) if v.block().height < height => self.findings.push(Finding::BadCertificate {
                height,
                reason: format!("certifies an older height {}", v.block().height),
            }),
            Ok(v) => {
                let (h, hash) = (v.block().height, v.block().hash());
                if let Some(prev) = self.certified.insert(h, hash) {
                    if prev != hash {
                        self.findings
                            .push(Finding::CertifiesAnotherBlock { height: h });
                    }
                }
            }
        }
        if let Some(expected) = self.certified.remove(&height) {
            if expected != c.info.hash() {
                self.findings
                    .push(Finding::CertifiesAnotherBlock { height });
            }
        }
    }

    fn re_execute(&mut self, height: u64, h: &UntrustedHeight) {
        let c = &h.committed;
        let ctx = ExecutionContext {
            parent_id: c.block.parent_id(),
            block_id: c.info.block_id,
            height,
            epoch: c.block.epoch,
            timestamp_ms: c.info.timestamp_ms,
        };
        let result = match self.executor.execute(&ctx, &c.block.payload) {
            Ok(r) => r,
            Err(e) => {
                self.findings.push(Finding::ExecutionFailed {
                    height,
                    reason: e.to_string(),
                });
                self.executing = false;
                return;
            }
        };
        let mut mismatch = |field| self.findings.push(Finding::RootMismatch { height, field });
        if result.state_root != c.info.state_root {
            mismatch("state_root");
        }
        if result.tx_root != c.info.tx_root {
            mismatch("tx_root");
        }
        if result.next_validators != c.info.next_validators {
            mismatch("next_validators");
        }
        if let Some(receipts) = self.executor.speculative_receipts(&c.info.block_id) {
            let ids: Vec<Digest> = receipts.receipts.iter().map(|r| r.tx_id).collect();
            let outcomes: Vec<String> = receipts
                .receipts
                .iter()
                .map(|r| r.outcome.describe())
                .collect();
            if ids != h.tx_ids {
                self.findings.push(Finding::ReceiptMismatch {
                    height,
                    reason: format!(
                        "{} transactions executed, the node lists {}",
                        ids.len(),
                        h.tx_ids.len()
                    ),
                });
            } else if let Some(i) =
                (0..ids.len()).find(|i| h.outcomes.get(*i) != Some(&outcomes[*i]))
            {
                self.findings.push(Finding::ReceiptMismatch {
                    height,
                    reason: format!(
                        "transaction {i}: executed {:?}, the node says {:?}",
                        outcomes[i],
                        h.outcomes.get(i)
                    ),
                });
            }
        }
        if let Err(e) = self.executor.commit(&c.info.block_id) {
            self.findings.push(Finding::ExecutionFailed {
                height,
                reason: e.to_string(),
            });
            self.executing = false;
        }
    }
}
