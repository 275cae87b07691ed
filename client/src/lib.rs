//! Palisade's Rust SDK: signed requests, verified discovery, watch and an
//! offline cache. It trusts the genesis validator set of a network file and
//! nothing else: every answer a node gives is checked against a commit
//! certificate of a quorum of validators before the application sees it.
//!
//! - [`Client`]: failover over the network's nodes; [`Client::execute`] signs,
//!   submits and waits for a verified commit receipt; [`Client::lookup`] is a
//!   verified lookup (when no fresh answer can be had, the newest verified
//!   one from the nodes or the on-disk [`Cache`], marked stale with its age);
//!   [`Client::watch`] a verified stream of changes.
//! - [`Signer`] and the request builders ([`registration`], [`enrollment`],
//!   [`InstanceRef`]); [`HeartbeatTask`] renews a lease until stopped.
//! - [`verify_lookup`] and [`verify_receipt`] are the pure checks underneath,
//!   with [`TrustedChain`] following validator-set changes across epochs.
//!
//! ```no_run
//! use palisade_client::{load_network_file, Client, ClientConfig};
//! let network = load_network_file("network.json".as_ref())?;
//! let client = Client::new(network, ClientConfig::default())?;
//! let answer = client.lookup("prod", "api")?;
//! for instance in answer.service().instances() {
//!     println!("{} {:?}", instance.instance, instance.endpoints);
//! }
//! # Ok::<(), palisade_client::ClientError>(())
//! ```
#![forbid(unsafe_code)]

mod cache;
mod changes;
mod client;
#[cfg(feature = "dns")]
pub mod dns;
mod error;
mod evidence;
mod filter;
mod heartbeat;
mod lookup;
mod node;
mod remote;
mod signer;
mod sse;
mod submit;
mod trust;
mod verify;
mod watch;

pub use cache::Cache;
pub use changes::MAX_CHANGED;
pub use client::{
    load_network_file, Client, ClientConfig, LookupAnswer, EPOCH_CHECK_INTERVAL, EPOCH_CHECK_RETRY,
};
pub use error::ClientError;
pub use evidence::{verify_evidence, Equivocation};
pub use filter::{is_healthy, services_with_prefix, InstanceFilter};
pub use heartbeat::{HeartbeatReport, HeartbeatTask};
pub use node::terminal_safe;
pub use remote::{RemoteAnswer, RemoteDatacenter, RemoteWatch};
pub use signer::{
    enrollment, parse_endpoint, parse_label, parse_service_path, registration, InstanceRef, Signer,
};
pub use trust::{TrustedChain, VERIFIED_CERTS_KEPT};
pub use verify::{
    verify_account, verify_lookup, verify_namespace, verify_receipt, Freshness, VerifiedAccount,
    VerifiedNamespace, VerifiedReceipt, VerifiedService, MAX_RECEIPT_DESCENDANTS,
};
pub use watch::{Watch, WATCH_STALL};
