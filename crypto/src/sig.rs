//! ed25519 signatures over domain-separated digests.
//!
//! Palisade signs the 32-byte [`Digest`] of a value in its [`Domain`], never raw
//! bytes, so a signature for one purpose is never valid for another.
//! Verification is `verify_strict` with weak (small-order) keys refused.
//!
//! Batch verification ([`verify_batch`]) is cheaper per signature but is not
//! the strict equation: a signer may craft a signature that a batch accepts and
//! `verify_strict` refuses. Only that signer's own key can make such a signature,
//! so batches are used where the worst case is a Byzantine validator's own vote
//! being counted (certificates), never where replicas must agree on a verdict
//! (transaction execution uses [`PublicKey::verify_digest`]).

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, VerifyingKey};
use rand_core::CryptoRngCore;

use crate::{hash_encoded, BatchError, Digest, Domain, SigError};

/// An ed25519 public key (32 bytes, compressed Edwards point). Not yet checked:
/// validity is checked when it verifies something.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

/// An ed25519 signing key. Zeroized on drop; `Debug` shows only the public key.
#[derive(Clone)]
pub struct SecretKey {
    inner: ed25519_dalek::SigningKey,
}

impl SecretKey {
    /// A fresh key from `rng` (use `OsRng` outside tests).
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        SecretKey {
            inner: ed25519_dalek::SigningKey::generate(rng),
        }
    }

    /// The key with this 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SecretKey {
            inner: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// The 32-byte seed. Handle with care: callers must zeroize their copy.
    pub fn seed(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.inner.verifying_key().to_bytes())
    }

    /// Sign a digest.
    pub fn sign_digest(&self, digest: &Digest) -> Signature {
        Signature(self.inner.sign(&digest.0).to_bytes())
    }

    /// Sign the borsh encoding of `value` in `domain`.
    pub fn sign<T: BorshSerialize + ?Sized>(&self, domain: Domain, value: &T) -> Signature {
        self.sign_digest(&hash_encoded(domain, value))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public={})", self.public())
    }
}

impl PublicKey {
    /// Decompress and refuse invalid or weak keys.
    pub fn to_verifying_key(&self) -> Result<VerifyingKey, SigError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| SigError::InvalidKey(*self))?;
        if vk.is_weak() {
            return Err(SigError::WeakKey(*self));
        }
        Ok(vk)
    }

    /// `verify_strict` of `sig` over `digest`.
    pub fn verify_digest(&self, digest: &Digest, sig: &Signature) -> Result<(), SigError> {
        let vk = self.to_verifying_key()?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        vk.verify_strict(&digest.0, &sig)
            .map_err(|_| SigError::BadSignature(*self))
    }

    /// Verify a signature over the borsh encoding of `value` in `domain`.
    pub fn verify<T: BorshSerialize + ?Sized>(
        &self,
        domain: Domain,
        value: &T,
        sig: &Signature,
    ) -> Result<(), SigError> {
        self.verify_digest(&hash_encoded(domain, value), sig)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, crate::DecodeError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|e| {
            crate::DecodeError::BadHex(format!("public key: {e} (want 64 hex chars)"))
        })?;
        Ok(PublicKey(out))
    }

    /// First 8 hex characters, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

impl Signature {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

macro_rules! serde_hex {
    ($t:ty, $n:expr) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(self.0))
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                let mut out = [0u8; $n];
                hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
                Ok(Self(out))
            }
        }
    };
}
serde_hex!(PublicKey, 32);
serde_hex!(Signature, 64);

/// Verify many `(key, digest, signature)` triples at once.
///
/// Keys are checked for validity and weakness first. On a batch failure each
/// signature is checked with `verify_strict` to name the first bad one. An
/// empty batch is valid.
pub fn verify_batch(items: &[(PublicKey, Digest, Signature)]) -> Result<(), BatchError> {
    let mut keys = Vec::with_capacity(items.len());
    for (index, (key, _, _)) in items.iter().enumerate() {
        keys.push(
            key.to_verifying_key()
                .map_err(|error| BatchError { index, error })?,
        );
    }
    if items.len() == 1 {
        let (key, digest, sig) = &items[0];
        return key
            .verify_digest(digest, sig)
            .map_err(|error| BatchError { index: 0, error });
    }
    let messages: Vec<&[u8]> = items.iter().map(|(_, d, _)| &d.0[..]).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok() {
        return Ok(());
    }
    for (index, (key, digest, sig)) in items.iter().enumerate() {
        key.verify_digest(digest, sig)
            .map_err(|error| BatchError { index, error })?;
    }
    // Every signature passes `verify_strict` on its own: the strict verdict wins.
    Ok(())
}
