//! A signature verdict cache for the consensus core: each valid signature is
//! verified once per process, and the replica's own signatures not at all.
//!
//! A verdict is remembered only when the signature verified (`verify_strict`,
//! weak keys refused, through the crypto crate), keyed by a hash of
//! `(key, digest, signature)`, so a cached entry can only vouch for exactly
//! the triple that verified. Bounded: the oldest verdicts are forgotten first.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use palisade_consensus::hotstuff::SignatureVerifier;
use palisade_crypto::{hash_encoded, BatchError, Digest, Domain, PublicKey, SigError, Signature};

/// Verdicts remembered.
const CAPACITY: usize = 1 << 16;

#[derive(Debug, Default)]
struct Inner {
    known: HashSet<Digest>,
    order: VecDeque<Digest>,
}

/// Remembers signatures that verified.
#[derive(Debug, Default)]
pub(crate) struct VerdictCache {
    inner: Mutex<Inner>,
}

fn entry(key: &PublicKey, digest: &Digest, sig: &Signature) -> Digest {
    hash_encoded(Domain::Message, &(b"verdict", key, digest, sig))
}

impl VerdictCache {
    fn contains(&self, e: &Digest) -> bool {
        self.inner
            .lock()
            .expect("verdict lock poisoned")
            .known
            .contains(e)
    }

    fn remember(&self, entries: impl IntoIterator<Item = Digest>) {
        let mut inner = self.inner.lock().expect("verdict lock poisoned");
        for e in entries {
            if inner.known.insert(e) {
                inner.order.push_back(e);
            }
        }
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.known.remove(&old);
            }
        }
    }
}

impl SignatureVerifier for VerdictCache {
    fn verify(&self, key: &PublicKey, digest: &Digest, sig: &Signature) -> Result<(), SigError> {
        let e = entry(key, digest, sig);
        if self.contains(&e) {
            return Ok(());
        }
        key.verify_digest(digest, sig)?;
        self.remember([e]);
        Ok(())
    }

    fn verify_batch(&self, items: &[(PublicKey, Digest, Signature)]) -> Result<(), BatchError> {
        let entries: Vec<Digest> = items.iter().map(|(k, d, s)| entry(k, d, s)).collect();
        let mut unknown = Vec::new();
        let mut positions = Vec::new();
        for (i, (item, e)) in items.iter().zip(&entries).enumerate() {
            if !self.contains(e) {
                unknown.push(*item);
                positions.push(i);
            }
        }
        palisade_crypto::verify_batch(&unknown).map_err(|e| BatchError {
            index: positions[e.index],
            error: e.error,
        })?;
        self.remember(entries);
        Ok(())
    }

    fn signed(&self, key: &PublicKey, digest: &Digest, sig: &Signature) {
        self.remember([entry(key, digest, sig)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_crypto::{hash, SecretKey};

    #[test]
    fn only_verified_triples_are_remembered() {
        let cache = VerdictCache::default();
        let key = SecretKey::from_seed([3; 32]);
        let d = hash(Domain::Message, b"a");
        let other = hash(Domain::Message, b"b");
        let sig = key.sign_digest(&d);
        let forged = Signature([7; 64]);
        assert!(cache.verify(&key.public(), &d, &forged).is_err());
        assert!(
            cache.verify(&key.public(), &d, &forged).is_err(),
            "a failure is never cached"
        );
        cache.verify(&key.public(), &d, &sig).unwrap();
        cache.verify(&key.public(), &d, &sig).unwrap();
        assert!(
            cache.verify(&key.public(), &other, &sig).is_err(),
            "the cache vouches for the exact triple only"
        );
        let k2 = SecretKey::from_seed([4; 32]);
        let s2 = k2.sign_digest(&other);
        let batch = [(key.public(), d, sig), (k2.public(), other, forged)];
        assert_eq!(
            cache.verify_batch(&batch).unwrap_err().index,
            1,
            "index of the bad item in the caller's batch"
        );
        cache
            .verify_batch(&[(key.public(), d, sig), (k2.public(), other, s2)])
            .unwrap();
    }
}
