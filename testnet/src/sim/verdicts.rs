//! A signature verdict cache shared by the simulated replicas.
//!
//! Signatures made by a replica are valid by construction and are remembered
//! when made; anything else is verified strictly once and remembered only if
//! it verified. A forged or corrupted signature is therefore always checked
//! (and refused) for real. This keeps debug-build simulations fast without
//! changing what any replica accepts.

use std::collections::HashSet;
use std::sync::Mutex;

use palisade_consensus::hotstuff::SignatureVerifier;
use palisade_crypto::{BatchError, Digest, PublicKey, SigError, Signature};

/// Shared verdicts, keyed by (key, digest, signature).
#[derive(Debug, Default)]
pub struct SharedVerdicts {
    valid: Mutex<HashSet<(PublicKey, Digest, Signature)>>,
}

impl SharedVerdicts {
    fn known(&self, item: &(PublicKey, Digest, Signature)) -> bool {
        self.valid.lock().expect("verdict lock").contains(item)
    }
    fn remember(&self, item: (PublicKey, Digest, Signature)) {
        self.valid.lock().expect("verdict lock").insert(item);
    }
}

impl SignatureVerifier for SharedVerdicts {
    fn verify(&self, key: &PublicKey, digest: &Digest, sig: &Signature) -> Result<(), SigError> {
        let item = (*key, *digest, *sig);
        if self.known(&item) {
            return Ok(());
        }
        key.verify_digest(digest, sig)?;
        self.remember(item);
        Ok(())
    }

    fn verify_batch(&self, items: &[(PublicKey, Digest, Signature)]) -> Result<(), BatchError> {
        for (index, (key, digest, sig)) in items.iter().enumerate() {
            self.verify(key, digest, sig)
                .map_err(|error| BatchError { index, error })?;
        }
        Ok(())
    }

    fn signed(&self, key: &PublicKey, digest: &Digest, sig: &Signature) {
        self.remember((*key, *digest, *sig));
    }
}
