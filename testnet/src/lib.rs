//! palisade-testnet: local testnets and fault injection over real
//! `palisade-node` processes ([`cluster`]), and the deterministic simulator
//! of the consensus core ([`sim`]: seeded, virtual time, lossy network, Twins).
#![forbid(unsafe_code)]

pub mod bench;
pub mod cluster;
pub mod demo;
pub mod faults;
pub mod link;
pub mod sim;
