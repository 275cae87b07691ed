//! Where signature verdicts come from.
//!
//! The core checks every signature through a [`SignatureVerifier`]. The
//! default, [`StrictVerifier`], is `verify_strict` with weak keys refused, one
//! signature at a time or batched. A shell may plug in a verdict cache (verify
//! each signature once per process and remember it, as the design asks) or a
//! remote signer's bookkeeping: [`SignatureVerifier::signed`] reports every
//! signature the replica itself makes, which is valid by construction.

use std::fmt::Debug;

use palisade_crypto::{BatchError, Digest, PublicKey, SigError, Signature};

/// Verifies signatures for the core.
pub trait SignatureVerifier: Debug + Send + Sync {
    /// `verify_strict` of `sig` by `key` over `digest`.
    fn verify(&self, key: &PublicKey, digest: &Digest, sig: &Signature) -> Result<(), SigError> {
        key.verify_digest(digest, sig)
    }

    /// Verify many at once; the error names the first bad one.
    fn verify_batch(&self, items: &[(PublicKey, Digest, Signature)]) -> Result<(), BatchError> {
        palisade_crypto::verify_batch(items)
    }

    /// The replica just made `sig` with `key` over `digest`.
    fn signed(&self, _key: &PublicKey, _digest: &Digest, _sig: &Signature) {}
}

/// Plain strict verification, no memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct StrictVerifier;

impl SignatureVerifier for StrictVerifier {}
