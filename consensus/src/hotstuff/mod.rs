//! 2-chain HotStuff (Jolteon, Gelashvili et al. FC 2022; DiemBFT v4 / Aptos),
//! sans-IO: no clock, socket, disk, thread or OS randomness in here.
//!
//! # Protocol
//! - Happy path: the leader of round r proposes a [`Block`] extending its
//!   highest QC; validators re-execute it (execute before vote) and broadcast
//!   their [`Vote`]; every replica aggregates the [`QuorumCert`], commits and
//!   enters round r + 1, whose leader proposes on it. Jolteon sends votes to
//!   the leader of r + 1 only (linear, [`Config::broadcast_votes`] = false);
//!   we broadcast by default because then a crashed leader costs one round,
//!   not two (its predecessor's votes would go to it and be lost), which
//!   took the throughput in the 10 s after a validator crash from 60% to
//!   88% of healthy in the simulator. For a registry's 4-10 validators the
//!   quadratic vote traffic is a few KB per round.
//! - Equivocation: a second, different vote or valid proposal of one key in
//!   a round is refused as [`ConsensusError::Equivocation`] (the first counts).
//! - 2-chain commit: a vote for B' whose parent B has `round(B') = round(B) + 1`
//!   signs B's [`palisade_crypto::BlockInfo`] in its ledger info, so the QC of
//!   B' commits B and *is* a [`palisade_crypto::CommitCertificate`] for it.
//! - Quadratic view change: a replica whose round timer fires broadcasts a
//!   [`Timeout`] carrying its highest QC; a quorum of them is a
//!   [`TimeoutCert`] that moves everyone to the next round, whose leader must
//!   extend the highest QC the TC reports.
//! - Safety rules in [`SafetyState`] (see `safety.rs`), pacemaker with
//!   exponential backoff (`pacemaker.rs`), leaders by reputation-weighted
//!   rotation over committed history (`leader.rs`), block sync (`replica/sync.rs`),
//!   epochs ending at a committed block whose execution names the next set.
//!
//! # Shell contract
//! The shell (the node with RocksDB and libp2p, or the simulator) owns one
//! [`Replica`] and an [`crate::executor::Executor`]:
//!
//! - **Inputs.** [`Replica::handle_message`]`(now, from, message)` where `from`
//!   is the *authenticated* peer key (libp2p identity derived from the validator
//!   key; never a field of the message), or [`Replica::handle_bytes`] for raw
//!   bytes (size cap [`MAX_MESSAGE_BYTES`] checked before decoding);
//!   [`Replica::handle_timeout`]`(now)` whenever the clock reaches
//!   [`Replica::next_deadline`] (calling it early is harmless);
//!   [`Replica::handle_payload`]`(now, round, payload)` in answer to
//!   [`Output::NeedPayload`]. `now` is milliseconds since the Unix epoch (block
//!   time is compared with it). Every input returns `Err` with a typed
//!   [`ConsensusError`] when it refused something; the replica's state is then
//!   unchanged except for what it learned before the refusal (e.g. a valid QC
//!   inside a proposal refused for its timestamp), and the shell just logs it.
//! - **Outputs.** After each input call [`Replica::take_outputs`] and carry the
//!   [`Output`]s out **in order**:
//!   - [`Output::PersistSafety`]: overwrite the single safety record and make
//!     it durable (fsync) *before* sending anything that follows it. Every vote
//!     and timeout is preceded by one. This ordering is part of the API: a
//!     replica that crashes after sending must never come back without the
//!     record that forbids voting again in that round.
//!   - [`Output::PersistBlock`]: store the block by [`Block::id`] (durable before
//!     later sends; it precedes the vote for the block). Blocks at or below the
//!     committed height may be deleted.
//!   - [`Output::Send`] to one validator key, [`Output::Broadcast`] to every
//!     validator of the current epoch except this node. Delivery is best effort:
//!     the protocol tolerates loss, duplication and reordering.
//!   - [`Output::NeedPayload`]: this node leads `round`; take transactions from
//!     the mempool and call [`Replica::handle_payload`] soon (well within the
//!     round timeout). A payload handed in after the round moved on is refused
//!     with [`ConsensusError::NoProposalDue`]; its transactions stay in the mempool.
//!   - [`Output::Committed`]: append to the committed log with its commit
//!     certificate ([`CommittedBlock::certificate`]); heights strictly increase.
//!     The executor has already been told ([`crate::executor::Executor::commit`]).
//!   - [`Output::NewEpoch`]: the validator set changed; connect to the new set.
//!   - [`Output::Halt`]: the executor failed to commit a committed block (its
//!     store failed); stop the node. The replica refuses every input after it.
//! - **Restart.** Build [`Recovery`] from the safety record, the last committed
//!   block info (and recent committed blocks), the current validator set and
//!   the stored uncommitted blocks; the executor must be at the committed root.
//!   Call [`Replica::recover`]. A node that lost everything starts at
//!   [`Replica::genesis`] and catches up through sync.
//! - **Sync** is ordinary messages: the replica asks the peer that showed it a
//!   certificate for the blocks it misses ([`BlockRequest`], [`CommitRequest`])
//!   and answers such requests from its tree and its window of recently
//!   committed blocks (`Config::retain_committed`); older history is the
//!   shell's to serve from its store, as a [`CommitResponse`] built from its
//!   committed log (blocks of one epoch, oldest first, plus the QC that
//!   committed the last one).
//! - **Signatures** are checked through a [`SignatureVerifier`]
//!   ([`StrictVerifier`] by default; [`Replica::with_verifier`] plugs in a
//!   verdict cache so each signature is verified once per process).
//!
//! # Example: a one-validator chain
//! A single validator is its own quorum, so its replica commits alone; the
//! loop below is the whole shell contract in miniature.
//! ```
//! use palisade_consensus::executor::*;
//! use palisade_consensus::hotstuff::{Config, ConsensusError, Output, Replica};
//! use palisade_crypto::*;
//!
//! /// State root = hash(parent root, payload): enough for a demo.
//! struct Chain(std::collections::HashMap<Digest, Digest>, Digest);
//! impl Executor for Chain {
//!     fn committed(&self) -> (Digest, Digest) { (self.1, self.0[&self.1]) }
//!     fn execute(&mut self, ctx: &ExecutionContext, payload: &[u8])
//!         -> Result<ExecutionResult, ExecutionError> {
//!         let parent = *self.0.get(&ctx.parent_id).ok_or(ExecutionError::UnknownParent(ctx.parent_id))?;
//!         let state_root = hash_encoded(Domain::Jmt, &(parent, payload));
//!         self.0.insert(ctx.block_id, state_root);
//!         Ok(ExecutionResult { state_root, tx_root: tx_root(&[]), next_validators: None })
//!     }
//!     fn commit(&mut self, id: &Digest) -> Result<(), ExecutionError> { self.1 = *id; Ok(()) }
//! }
//!
//! let key = SecretKey::from_seed([1; 32]);
//! let set = ValidatorSet { epoch: 0, validators: vec![Validator { key: key.public(), power: 1 }] };
//! let genesis = BlockInfo { round: 0, height: 0, block_id: hash(Domain::Genesis, b"demo"),
//!     state_root: Digest::ZERO, tx_root: tx_root(&[]), timestamp_ms: 1_000,
//!     next_validators: None, parent_info: Digest::ZERO };
//! let executor = Chain([(genesis.block_id, Digest::ZERO)].into(), genesis.block_id);
//! let mut replica = Replica::genesis(Config::new("demo"), key, executor, genesis, set.clone(), 1_000)?;
//!
//! let (mut now, mut committed) = (1_000, Vec::new());
//! while committed.len() < 3 {
//!     now += 10;
//!     replica.handle_timeout(now)?;
//!     for output in replica.take_outputs() {
//!         match output {
//!             // Persist durably before carrying out anything after it.
//!             Output::PersistSafety(_) | Output::PersistBlock(_) => {}
//!             Output::NeedPayload { round, .. } => replica.handle_payload(now, round, b"tx".to_vec())?,
//!             Output::Committed(block) => committed.push(block),
//!             // No peers to talk to here.
//!             Output::Send { .. } | Output::Broadcast(_) | Output::NewEpoch(_) => {}
//!             Output::Halt { reason } => return Err(ConsensusError::Halted(reason).into()),
//!         }
//!     }
//! }
//! // Every committed block comes with a certificate a client checks with the set alone.
//! committed[2].certificate().verify(&set, "demo")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod block_tree;
mod config;
mod error;
mod leader;
mod mutation;
mod pacemaker;
mod replica;
mod safety;
#[cfg(any(test, feature = "testing"))]
mod sim_executor;
mod types;
mod verifier;

pub use config::Config;
pub use error::ConsensusError;
pub use mutation::Mutation;
pub use replica::{CommittedBlock, Output, Recovery, Replica};
pub use safety::SafetyState;
#[cfg(any(test, feature = "testing"))]
pub use sim_executor::SimExecutor;
pub use types::{
    Block, BlockRequest, BlockResponse, CommitRequest, CommitResponse, Message, Proposal,
    QuorumCert, SyncInfo, Timeout, TimeoutCert, Vote, VoteData, MAX_MESSAGE_BYTES,
};
pub use verifier::{SignatureVerifier, StrictVerifier};
