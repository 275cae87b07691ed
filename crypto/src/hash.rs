//! Domain-separated BLAKE3.
//!
//! Every hashed or signed structure has its own [`Domain`]. A domain's hash is
//! BLAKE3 in keyed mode with the key `derive_key("palisade v1 domain", tag)`, so
//! two domains never produce a digest that could be mistaken for the other's,
//! whatever the bytes. Tags are fixed forever: changing one changes every
//! known-answer vector (see `tests/vectors.rs`).

use std::fmt;
use std::sync::OnceLock;

use borsh::{BorshDeserialize, BorshSerialize};

/// A 32-byte BLAKE3 digest.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest (used for "nothing", e.g. the empty transaction root).
    pub const ZERO: Digest = Digest([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, crate::DecodeError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| crate::DecodeError::BadHex(format!("{e} (want 64 hex chars)")))?;
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..16])
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Digest::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

macro_rules! domains {
    ($( $(#[$doc:meta])* $name:ident = $tag:literal ),* $(,)?) => {
        /// What a hash or signature is for. Each has a distinct, permanent tag.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Domain { $( $(#[$doc])* $name ),* }

        impl Domain {
            /// Every domain, in declaration order.
            pub const ALL: &'static [Domain] = &[$(Domain::$name),*];

            /// The permanent tag.
            pub fn tag(self) -> &'static str {
                match self { $(Domain::$name => $tag),* }
            }
        }
    };
}

domains! {
    /// A transaction's signing bytes; the digest is also its id.
    Transaction = "palisade/v1/transaction",
    /// Leaves of a block's transaction root.
    TxLeaf = "palisade/v1/tx-leaf",
    /// Inner nodes of a block's transaction root.
    TxNode = "palisade/v1/tx-node",
    /// A block's id.
    Block = "palisade/v1/block",
    /// A committed block's info (chained through `BlockInfo::parent_info`).
    BlockInfo = "palisade/v1/block-info",
    /// What a vote says about the block it votes for (consensus data).
    VoteData = "palisade/v1/vote-data",
    /// Ledger info: what validators sign in a vote; a quorum makes a commit certificate.
    LedgerInfo = "palisade/v1/ledger-info",
    /// A timeout message.
    Timeout = "palisade/v1/timeout",
    /// A validator set (epoch change, network file).
    ValidatorSet = "palisade/v1/validator-set",
    /// The genesis document.
    Genesis = "palisade/v1/genesis",
    /// Nodes and leaves of the authenticated map (the jmt hasher).
    Jmt = "palisade/v1/jmt",
    /// A block proposal envelope signed by its leader.
    Proposal = "palisade/v1/proposal",
    /// A cross-datacenter checkpoint.
    Checkpoint = "palisade/v1/checkpoint",
    /// A signed node-to-node message that is not one of the above (sync, gossip).
    Message = "palisade/v1/message",
    /// Derivation of the libp2p identity from a validator key.
    NetworkIdentity = "palisade/v1/network-identity",
    /// Short ids of public keys (key files, logs).
    KeyId = "palisade/v1/key-id",
    /// An instance record, as its service's index lists it.
    InstanceRecord = "palisade/v1/instance-record",
    /// Leaves of a block's receipt root: a transaction id and its outcome.
    ReceiptLeaf = "palisade/v1/receipt-leaf",
    /// An owner's heartbeat, kept off consensus (`LeaseHeartbeat`).
    LeaseHeartbeat = "palisade/v1/lease-heartbeat",
    /// A validator's report of instances it has not heard from for a TTL.
    SilenceReport = "palisade/v1/silence-report",
    /// A link of a namespace's change chain (`NamespaceLink`).
    NamespaceLink = "palisade/v1/namespace-link",
    /// The services a namespace changed at one height (`NamespaceLink::services_hash`).
    NamespaceChanges = "palisade/v1/namespace-changes",
    /// Which page of its owner's index an instance is listed in.
    OwnerPage = "palisade/v1/owner-page",
}

fn domain_key(domain: Domain) -> &'static [u8; 32] {
    static KEYS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        Domain::ALL
            .iter()
            .map(|d| blake3::derive_key("palisade v1 domain", d.tag().as_bytes()))
            .collect()
    });
    &keys[domain as usize]
}

/// Hash `bytes` in `domain`.
pub fn hash(domain: Domain, bytes: &[u8]) -> Digest {
    Digest(*blake3::keyed_hash(domain_key(domain), bytes).as_bytes())
}

/// Hash the canonical borsh encoding of `value` in `domain`.
pub fn hash_encoded<T: BorshSerialize + ?Sized>(domain: Domain, value: &T) -> Digest {
    let mut hasher = blake3::Hasher::new_keyed(domain_key(domain));
    value
        .serialize(&mut HashWriter(&mut hasher))
        .expect("writing to a hasher cannot fail");
    Digest(*hasher.finalize().as_bytes())
}

struct HashWriter<'a>(&'a mut blake3::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The BLAKE3 hasher of the authenticated map: keyed BLAKE3 in [`Domain::Jmt`],
/// plugged into `jmt` through its `SimpleHasher` trait.
#[derive(Clone)]
pub struct JmtHasher(blake3::Hasher);

impl jmt::SimpleHasher for JmtHasher {
    fn new() -> Self {
        JmtHasher(blake3::Hasher::new_keyed(domain_key(Domain::Jmt)))
    }
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}
