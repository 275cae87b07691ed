//! Palisade's pure core: no clock, socket, disk, thread or OS randomness.
//!
//! - [`hotstuff`]: 2-chain HotStuff (Jolteon / DiemBFT v4): blocks, votes,
//!   quorum and timeout certificates, safety rules, pacemaker, leader
//!   reputation, block sync. Inputs are messages, timeouts with `now`, and
//!   payloads; outputs are messages, state to persist, committed blocks.
//! - [`state`]: the registry state machine executed on blocks: the
//!   authenticated map (jmt, BLAKE3), enrollment, namespaces, leases, health.
//! - [`executor`]: the seam between them.
#![forbid(unsafe_code)]

pub mod executor;
pub mod hotstuff;
pub mod state;
