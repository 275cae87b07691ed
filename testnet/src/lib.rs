//! palisade-testnet: local testnets and fault injection over real
//! `palisade-node` processes ([`cluster`]), and the deterministic simulator.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod demo;
pub mod faults;
