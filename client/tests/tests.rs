//! Integration tests of palisade-client (one binary): forged answers built from real keys
//! and a real jmt tree are refused with the right error; failover, retry,
//! watch resumption, the offline cache and the CLI run against real HTTP
//! stand-in nodes on 127.0.0.1.

#![allow(unreachable_pub, clippy::cloned_ref_to_slice_refs)]

mod support;

mod cli;
mod cli_submit;
#[cfg(feature = "dns")]
mod dns;
#[cfg(feature = "genesis")]
mod genesis;
mod lookups;
mod network;
mod receipts;
mod submissions;
mod watch;
