//! Integration tests of palisade-crypto: known-answer vectors, certificate
//! quorum boundaries, rejections, batch verification, proofs.

mod certs;
mod proofs;
mod sigs;
mod vectors;
