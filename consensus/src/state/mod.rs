//! The registry state machine executed on blocks.
//!
//! - `store`: the authenticated map's storage trait ([`StateStore`]) and the
//!   in-memory [`MemStore`]; a jmt `TreeReader` layering speculative batches.
//! - `genesis`: the genesis document ([`Genesis`], [`Authority`], [`Params`]).
//! - `exec`: [`RegistryExecutor`], the consensus [`crate::executor::Executor`].
//! - `apply` (rules of each transaction), `instances` (instance set
//!   mutations and their derived indexes), `lease` (leases and the
//!   mass-expiry bound), `validate` (size and syntax limits), `records`
//!   (the map's key layout and the records this crate defines).
//! - `query`: provable lookups over a committed version ([`StateReader`]).
//! - `receipts`: payload encoding and receipts.
//! - `testing` (feature `testing`): a conformance suite for store backends.
//!
//! # Rules (details in each module's docs)
//! - **Blocks.** Height = jmt version; genesis is version 0 and its block id
//!   is [`Genesis::hash`]. A payload is borsh `Vec<SignedTransaction>`
//!   within `max_block_bytes` / `max_block_txs`, else the block is invalid.
//!   Every transaction gets a receipt; a rejected one changes nothing.
//! - **Order of checks** per transaction: size, cosignature count, chain id
//!   and signatures (`verify_strict`), who may sign it (authority, enrolled
//!   writer, validator), sequence (from the signer's next up to
//!   `MAX_SEQUENCE_STEP` past it; replays and reorderings refused), body,
//!   ownership, limits.
//! - **Admission rule.** A transaction failing the checks up to "who may
//!   sign it" makes its block invalid (`ExecutionError::Inadmissible`:
//!   voters refuse the block, the leader drops it and proposes again); nodes
//!   refuse it at admission with the same rule ([`StateReader::admissible`]).
//!   Outsiders and forged signatures therefore never reach the chain; only
//!   accountable signers' transactions get rejected receipts.
//! - **Receipts** are bound into the block's transaction root as
//!   `(id, outcome)` leaves, so a commit certificate covers every outcome.
//! - **Records** are bounded (see `records`): per-instance leaves under a
//!   bounded service index; genesis refuses limits under which any record
//!   could exceed the decode cap.
//! - **Authority** acts (Enroll, Revoke, ChangeValidators) need `threshold`
//!   distinct members among signer and cosigners, all of them members.
//! - **Namespaces and ownership.** Writes only where enrolled and unrevoked;
//!   an instance is changed only by its owner or an `Admin` of its namespace.
//! - **Revocation** deletes every instance the identity owns in the same
//!   transaction (a revoked key is presumed compromised; its endpoints must
//!   leave discovery now, provably), and keeps the identity record, marked.
//! - **Leases.** An instance is live while block time `<= deadline`; it is
//!   removed at the start of the first block past it. **Mass-expiry bound:**
//!   per window of `expiry_window_ms`, at most `max(min_expiry_per_window,
//!   live * max_expiry_permille / 1000)` instances expire, earliest deadline
//!   first; the others stay, visibly overdue, renewable by heartbeat, and
//!   expire in later windows (bookkeeping in `System{"expiry"}`).
//! - **Health** flips only when validators holding `validity_power` (f+1)
//!   report the opposite verdict; re-registration keeps the verdict.
//! - **Epochs.** A ChangeValidators stores the next set (epoch + 1) and makes
//!   the block's `ExecutionResult::next_validators` name it; a second one is
//!   refused until blocks run in the new epoch.
//!
//! ```
//! use palisade_consensus::executor::{ExecutionContext, Executor};
//! use palisade_consensus::state::{encode_payload, Authority, Genesis, MemStore, RegistryExecutor};
//! use palisade_crypto::{SecretKey, Validator};
//!
//! let v = SecretKey::from_seed([1; 32]);
//! let genesis = Genesis::new(
//!     "doc",
//!     1_000,
//!     vec![Validator { key: v.public(), power: 1 }],
//!     Authority { members: vec![v.public()], threshold: 1 },
//! );
//! let mut exec = RegistryExecutor::open(MemStore::new(), &genesis).unwrap();
//! let (genesis_id, _) = exec.committed();
//! let ctx = ExecutionContext {
//!     parent_id: genesis_id,
//!     block_id: palisade_crypto::Digest([9; 32]),
//!     height: 1,
//!     epoch: 0,
//!     timestamp_ms: 2_000,
//! };
//! let result = exec.execute(&ctx, &encode_payload(&[])).unwrap();
//! exec.commit(&ctx.block_id).unwrap();
//! assert_eq!(exec.committed(), (ctx.block_id, result.state_root));
//! ```

mod apply;
mod block;
mod error;
mod exec;
mod genesis;
mod instances;
mod lease;
mod map;
mod query;
mod receipts;
mod records;
mod silence;
mod store;
mod validate;
mod working;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use error::{StateError, TxRejection};
pub use exec::RegistryExecutor;
pub use genesis::{Authority, Genesis, LeaseMode, Params, RecordBounds};
pub use map::compute_update;
pub use query::{InstanceFilter, NamespaceLookup, StateReader};
pub use receipts::{decode_payload, encode_payload, BlockReceipts, TxOutcome, TxReceipt};
pub use records::{
    owner_page_key, system_key, ChainRecord, ExpiryState, IdentityRecord, InstanceRef, OWNER_PAGES,
};
pub use silence::{MAX_REPORTS_PER_TX, REPORT_MAX_AGE_MS};
pub use store::{CommitMeta, MemStore, StateCommit, StateStore, StoreError};

/// The `jmt` crate this module's storage trait speaks (nodes, node keys,
/// write batches), re-exported so stores use the very same version.
pub use jmt;
pub use palisade_crypto::StateKey;
