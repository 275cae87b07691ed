//! palisade-audits: independent checks of a Palisade registry.
//!
//! - [`audit`]: the auditor behind `palisade-audit --network FILE [--node
//!   URL]...`: replays a node's whole history from genesis trusting only
//!   network.json, verifies every certificate and epoch change, re-executes
//!   every block and compares roots and receipts.
//! - [`snapshot`]: the start of an audit of a pruning node
//!   (`--from-snapshot`): the epoch changes to a certified height, the
//!   state at it rebuilt page by page against its certified root.
//! - [`fuzz`]: one target per decoder of untrusted bytes and per verifier,
//!   each with a seed corpus of real encodings ([`corpus`]); the targets are
//!   driven by proptest on the stable toolchain (`tests/fuzz.rs`: arbitrary
//!   bytes and structured mutations of the corpus, bounded case counts).
//! - `THREAT_MODEL.md`: assets, adversaries, and the test behind each claim.
//!
//! ```
//! let corpus = palisade_audits::corpus::Corpus::generate();
//! for bytes in &corpus.messages {
//!     palisade_audits::fuzz::consensus_message(bytes);
//! }
//! ```
#![forbid(unsafe_code)]

pub mod audit;
pub mod corpus;
pub mod fuzz;
pub mod snapshot;
