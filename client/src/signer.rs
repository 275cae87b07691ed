//! Signing identities and the transactions they sign.
//!
//! A [`Signer`] holds a key (and, for acts of the enrollment authority, the
//! keys of cosigning members, M-of-N) and remembers the next sequence number
//! it may use, so that several transactions in a row do not wait for the
//! node's view of the account to catch up.

use std::path::Path;

use palisade_crypto::{
    Digest, Endpoint, Enrollment, InstanceId, Label, LeaseHeartbeat, PublicKey, Registration, Role,
    SecretKey, ServiceName, SignedHeartbeat, SignedTransaction, Transaction, TxBody,
};

use crate::ClientError;

/// A key that signs transactions, with optional cosigners.
#[derive(Debug, Clone)]
pub struct Signer {
    key: SecretKey,
    cosigners: Vec<SecretKey>,
    next_sequence: u64,
    known: bool,
}

impl Signer {
    /// Sign with `key`.
    pub fn new(key: SecretKey) -> Self {
        Signer {
            key,
            cosigners: Vec::new(),
            next_sequence: 0,
            known: false,
        }
    }

    /// Load the key from a key file (refused when others can read it).
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        Ok(Self::new(palisade_keys::load_key_file(path)?))
    }

    /// Add a cosigner (an authority member co-signing an enrollment or revocation).
    pub fn with_cosigner(mut self, key: SecretKey) -> Self {
        self.cosigners.push(key);
        self
    }

    /// The signer's public key.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }

    /// The lowest sequence number this signer has not used yet (as far as it knows).
    pub fn local_next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The next sequence number, once a committed transaction taught it.
    pub fn known_next_sequence(&self) -> Option<u64> {
        self.known.then_some(self.next_sequence)
    }

    /// Sign `body` for `chain_id` grown from the genesis `genesis_hash`
    /// (network.json's), with `sequence`, and cosign it.
    pub fn sign(
        &self,
        chain_id: &str,
        genesis_hash: &Digest,
        sequence: u64,
        body: TxBody,
    ) -> SignedTransaction {
        let tx = Transaction {
            chain_id: chain_id.to_string(),
            genesis_hash: *genesis_hash,
            signer: self.key.public(),
            sequence,
            body,
        };
        let mut signed = tx.sign(&self.key);
        for co in &self.cosigners {
            signed.cosign(co);
        }
        signed
    }

    /// An off-consensus heartbeat renewing every instance this key owns on
    /// a chain with attested leases; `sent_at_ms` (this host's clock) must
    /// grow from one heartbeat to the next.
    pub fn lease_heartbeat(&self, chain_id: &str, sent_at_ms: u64) -> SignedHeartbeat {
        LeaseHeartbeat {
            chain_id: chain_id.to_string(),
            identity: self.key.public(),
            sent_at_ms,
        }
        .sign(&self.key)
    }

    /// Record that `sequence` was committed: the next one is `sequence + 1`
    /// (saturating: `u64::MAX` is never valid, the chain refuses it).
    pub(crate) fn advance(&mut self, sequence: u64) {
        self.next_sequence = sequence.saturating_add(1);
        self.known = true;
    }
}

/// Build a registration, checking what the registry would refuse anyway:
/// at least one endpoint, a positive TTL, unique label keys (sorted).
pub fn registration(
    namespace: &str,
    service: &str,
    instance: &str,
    endpoints: Vec<Endpoint>,
    mut labels: Vec<Label>,
    ttl_secs: u32,
) -> Result<Registration, ClientError> {
    if endpoints.is_empty() {
        return Err(ClientError::Invalid(
            "at least one endpoint is needed".into(),
        ));
    }
    if ttl_secs == 0 {
        return Err(ClientError::Invalid(
            "the TTL must be at least 1 second".into(),
        ));
    }
    check_name("namespace", namespace)?;
    check_name("service", service)?;
    check_name("instance", instance)?;
    labels.sort();
    if let Some(w) = labels.windows(2).find(|w| w[0].key == w[1].key) {
        return Err(ClientError::Invalid(format!(
            "label {:?} given twice",
            w[0].key
        )));
    }
    Ok(Registration {
        namespace: namespace.to_string(),
        service: service.to_string(),
        instance: instance.to_string(),
        endpoints,
        labels,
        version: String::new(),
        ttl_secs,
        probe: None,
    })
}

/// An enrollment of `identity` in `namespaces` with `role`.
pub fn enrollment(
    identity: PublicKey,
    namespaces: Vec<ServiceName>,
    role: Role,
) -> Result<TxBody, ClientError> {
    if namespaces.is_empty() {
        return Err(ClientError::Invalid(
            "at least one namespace is needed".into(),
        ));
    }
    for ns in &namespaces {
        check_name("namespace", ns)?;
    }
    Ok(TxBody::Enroll(Enrollment {
        identity,
        namespaces,
        role,
    }))
}

/// Which instance a deregistration or heartbeat is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    /// Namespace.
    pub namespace: ServiceName,
    /// Service.
    pub service: ServiceName,
    /// Instance id.
    pub instance: InstanceId,
}

impl InstanceRef {
    /// The heartbeat that renews this instance's lease.
    pub fn heartbeat(&self) -> TxBody {
        TxBody::Heartbeat {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
            instance: self.instance.clone(),
        }
    }

    /// The deregistration of this instance.
    pub fn deregister(&self) -> TxBody {
        TxBody::Deregister {
            namespace: self.namespace.clone(),
            service: self.service.clone(),
            instance: self.instance.clone(),
        }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), ClientError> {
    if name.is_empty()
        || name.len() > 128
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(ClientError::Invalid(format!(
            "{what} {name:?} must be 1 to 128 characters without '/' or control characters"
        )));
    }
    Ok(())
}

/// Parse `HOST:PORT` or `PROTOCOL://HOST:PORT` (protocol `tcp` when absent,
/// weight 1; IPv6 hosts in brackets).
pub fn parse_endpoint(text: &str) -> Result<Endpoint, ClientError> {
    let bad = |why: &str| ClientError::Invalid(format!("endpoint {text:?}: {why}"));
    let (protocol, rest) = match text.split_once("://") {
        Some((p, r)) if !p.is_empty() => (p.to_ascii_lowercase(), r),
        Some(_) => return Err(bad("empty protocol")),
        None => ("tcp".to_string(), text),
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("want HOST:PORT"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains('/') {
        return Err(bad("empty or invalid host"));
    }
    let port: u16 = port.parse().map_err(|_| bad("port must be 0..65535"))?;
    Ok(Endpoint {
        protocol,
        host: host.to_string(),
        port,
        weight: 1,
    })
}

/// Parse a `key=value` label.
pub fn parse_label(text: &str) -> Result<Label, ClientError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok(Label {
            key: k.to_string(),
            value: v.to_string(),
        }),
        _ => Err(ClientError::Invalid(format!(
            "label {text:?}: want key=value"
        ))),
    }
}

/// Parse `NAMESPACE/SERVICE`.
pub fn parse_service_path(text: &str) -> Result<(String, String), ClientError> {
    match text.split_once('/') {
        Some((ns, svc)) if !ns.is_empty() && !svc.is_empty() && !svc.contains('/') => {
            Ok((ns.to_string(), svc.to_string()))
        }
        _ => Err(ClientError::Invalid(format!(
            "{text:?}: want NAMESPACE/SERVICE"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_and_without_protocol() {
        let e = parse_endpoint("10.0.0.1:8080").unwrap();
        assert_eq!(
            (e.protocol.as_str(), e.host.as_str(), e.port),
            ("tcp", "10.0.0.1", 8080)
        );
        let e = parse_endpoint("grpc://[::1]:9000").unwrap();
        assert_eq!(
            (e.protocol.as_str(), e.host.as_str(), e.port),
            ("grpc", "::1", 9000)
        );
        assert!(parse_endpoint("nohost").is_err());
        assert!(parse_endpoint("h:70000").is_err());
        assert!(parse_endpoint(":80").is_err());
    }

    #[test]
    fn labels_and_paths_parse() {
        assert_eq!(parse_label("zone=a=b").unwrap().value, "a=b");
        assert!(parse_label("=x").is_err());
        assert_eq!(
            parse_service_path("prod/api").unwrap(),
            ("prod".to_string(), "api".to_string())
        );
        assert!(parse_service_path("prod").is_err());
        assert!(parse_service_path("a/b/c").is_err());
    }

    #[test]
    fn registration_sorts_labels_and_refuses_duplicates() {
        let ep = vec![parse_endpoint("h:1").unwrap()];
        let labels = vec![parse_label("b=1").unwrap(), parse_label("a=2").unwrap()];
        let reg = registration("ns", "svc", "i1", ep.clone(), labels, 30).unwrap();
        assert_eq!(reg.labels[0].key, "a");
        let dup = vec![parse_label("a=1").unwrap(), parse_label("a=2").unwrap()];
        assert!(registration("ns", "svc", "i1", ep.clone(), dup, 30).is_err());
        assert!(registration("ns", "svc", "i1", vec![], vec![], 30).is_err());
        assert!(registration("ns", "svc", "i1", ep, vec![], 0).is_err());
    }

    #[test]
    fn signer_cosigns_and_tracks_sequences() {
        let mut s =
            Signer::new(SecretKey::from_seed([1; 32])).with_cosigner(SecretKey::from_seed([2; 32]));
        let tx = s.sign(
            "c",
            &Digest([4; 32]),
            5,
            TxBody::Revoke {
                identity: PublicKey([9; 32]),
            },
        );
        let (_, signers) = tx.verify("c", &Digest([4; 32])).unwrap();
        assert_eq!(signers.len(), 2);
        assert_eq!(s.known_next_sequence(), None);
        s.advance(5);
        assert_eq!(s.known_next_sequence(), Some(6));
        assert_eq!(s.local_next_sequence(), 6);
        // No overflow on the last number (debug builds panicked here).
        s.advance(u64::MAX);
        assert_eq!(s.local_next_sequence(), u64::MAX);
    }
}
