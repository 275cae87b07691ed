//! Realistic answers built from real keys and a real jmt tree: a chain of
//! validators that certifies blocks, and an authenticated map that proves
//! service records. Tests derive forged answers from these.

use std::time::{SystemTime, UNIX_EPOCH};

use jmt::mock::MockTreeStore;
use jmt::JellyfishMerkleTree;
use palisade_crypto::api::{LookupResponse, NamespaceResponse};
use palisade_crypto::{
    encode, instance_record_hash, state_key_hash, tx_root, BlockInfo, CommitCertificate, Digest,
    Endpoint, Health, Hex, InstanceEntry, InstanceRecord, JmtHasher, Label, LedgerInfo, MapProof,
    NamespaceRecord, NetworkFile, NodeEndpoint, PublicKey, SecretKey, ServiceIndex, ServiceLookup,
    ServiceRecord, StateKey, Validator, ValidatorSet,
};

pub const CHAIN: &str = "palisade-test";

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The validators of one epoch of a chain.
#[derive(Clone)]
pub struct Chain {
    pub chain_id: String,
    /// The genesis hash its certificates name (and its network file says).
    pub genesis_hash: Digest,
    pub keys: Vec<SecretKey>,
    pub set: ValidatorSet,
}

impl Chain {
    /// `n` validators of power 1, keys derived from `seed_base`.
    pub fn new(chain_id: &str, epoch: u64, n: usize, seed_base: u8) -> Self {
        let keys: Vec<SecretKey> = (0..n)
            .map(|i| SecretKey::from_seed([seed_base.wrapping_add(i as u8); 32]))
            .collect();
        let set = ValidatorSet {
            epoch,
            validators: keys
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        };
        Chain {
            chain_id: chain_id.to_string(),
            genesis_hash: Digest([9; 32]),
            keys,
            set,
        }
    }

    /// The usual test chain: 4 validators of epoch 0.
    pub fn test() -> Self {
        Chain::new(CHAIN, 0, 4, 1)
    }

    pub fn network(&self, urls: &[String]) -> NetworkFile {
        NetworkFile {
            chain_id: self.chain_id.clone(),
            datacenter: "dc1".into(),
            genesis_hash: self.genesis_hash,
            validators: self.set.clone(),
            nodes: urls
                .iter()
                .enumerate()
                .map(|(i, url)| NodeEndpoint {
                    name: format!("node{i}"),
                    public_key: self.keys[i % self.keys.len()].public(),
                    api_url: url.clone(),
                    p2p_addr: format!("/ip4/127.0.0.1/tcp/{}", 7000 + i),
                })
                .collect(),
        }
    }

    pub fn ledger_info(&self, block: BlockInfo) -> LedgerInfo {
        LedgerInfo {
            chain_id: self.chain_id.clone(),
            genesis_hash: self.genesis_hash,
            epoch: self.set.epoch,
            commit: Some(block),
            consensus_data_hash: Digest([7; 32]),
        }
    }

    /// A certificate over `block` signed by the validators at `signers`.
    pub fn certify(&self, block: BlockInfo, signers: &[usize]) -> CommitCertificate {
        let ledger_info = self.ledger_info(block);
        let digest = ledger_info.digest();
        CommitCertificate {
            signatures: signers
                .iter()
                .map(|&i| (self.keys[i].public(), self.keys[i].sign_digest(&digest)))
                .collect(),
            ledger_info,
        }
    }

    /// Signed by a quorum (the first three of four).
    pub fn quorum(&self, block: BlockInfo) -> CommitCertificate {
        self.certify(block, &[0, 1, 2])
    }
}

/// A block at `height` with `state_root`, stamped `timestamp_ms`.
pub fn block(height: u64, state_root: Digest, timestamp_ms: u64) -> BlockInfo {
    BlockInfo {
        round: height + 1,
        height,
        block_id: Digest([height as u8; 32]),
        state_root,
        tx_root: tx_root(&[]),
        timestamp_ms,
        next_validators: None,
        parent_info: Digest::ZERO,
    }
}

/// The (honest) listing of `namespace` at `height`, certified now.
pub fn namespace_response(world: &World, namespace: &str, height: u64) -> NamespaceResponse {
    let cert = world
        .chain
        .quorum(block(height, world.state.root, now_ms()));
    let (value, proof) = world.state.prove(&StateKey::Namespace {
        namespace: namespace.into(),
    });
    NamespaceResponse {
        namespace: namespace.into(),
        certificate: Hex::new(&cert),
        record: value
            .as_ref()
            .map(|v| palisade_crypto::decode(v).expect("a namespace record")),
        value: value.map(Hex::from_bytes),
        proof: Hex::new(&proof),
        certified: Some((&cert).into()),
    }
}

/// An authenticated map, versioned like the registry's.
pub struct State {
    store: MockTreeStore,
    version: Option<u64>,
    pub root: Digest,
}

impl State {
    pub fn new() -> Self {
        State {
            store: MockTreeStore::new(false),
            version: None,
            root: Digest::ZERO,
        }
    }

    /// Apply one version of writes and return the new root.
    pub fn put(&mut self, writes: Vec<(StateKey, Option<Vec<u8>>)>) -> Digest {
        let version = self.version.map_or(0, |v| v + 1);
        let tree: JellyfishMerkleTree<'_, MockTreeStore, JmtHasher> =
            JellyfishMerkleTree::new(&self.store);
        let (root, batch) = tree
            .put_value_set(
                writes.into_iter().map(|(k, v)| (state_key_hash(&k), v)),
                version,
            )
            .unwrap();
        self.store.write_tree_update_batch(batch).unwrap();
        self.version = Some(version);
        self.root = Digest(root.0);
        self.root
    }

    /// Store a service as the registry does: an index leaf plus one leaf
    /// per instance.
    pub fn put_record(&mut self, record: &ServiceRecord) -> Digest {
        let key = service_key(&record.namespace, &record.service);
        let mut writes = Vec::new();
        let mut entries = Vec::new();
        for i in &record.instances {
            let bytes = encode(i);
            entries.push(InstanceEntry {
                instance: i.instance.clone(),
                record_hash: instance_record_hash(&bytes),
            });
            writes.push((
                instance_key(&record.namespace, &record.service, &i.instance),
                Some(bytes),
            ));
        }
        let index = ServiceIndex {
            namespace: record.namespace.clone(),
            service: record.service.clone(),
            instances: entries,
        };
        writes.push((key, Some(encode(&index))));
        self.put(writes)
    }

    /// The encoded instance records a service's index lists, in order.
    pub fn instance_bytes(&self, namespace: &str, service: &str) -> Vec<Vec<u8>> {
        let (value, _) = self.prove(&service_key(namespace, service));
        let Some(value) = value else {
            return Vec::new();
        };
        let index: ServiceIndex = palisade_crypto::decode(&value).unwrap();
        index
            .instances
            .iter()
            .map(|e| {
                self.prove(&instance_key(namespace, service, &e.instance))
                    .0
                    .unwrap()
            })
            .collect()
    }

    /// The value under `key` and its proof at the latest version.
    pub fn prove(&self, key: &StateKey) -> (Option<Vec<u8>>, MapProof) {
        let tree: JellyfishMerkleTree<'_, MockTreeStore, JmtHasher> =
            JellyfishMerkleTree::new(&self.store);
        let (value, proof) = tree
            .get_with_proof(state_key_hash(key), self.version.unwrap())
            .unwrap();
        (value, MapProof(proof))
    }
}

pub fn instance_key(namespace: &str, service: &str, instance: &str) -> StateKey {
    StateKey::Instance {
        namespace: namespace.into(),
        service: service.into(),
        instance: instance.into(),
    }
}

pub fn service_key(namespace: &str, service: &str) -> StateKey {
    StateKey::Service {
        namespace: namespace.into(),
        service: service.into(),
    }
}

pub fn instance(id: &str, host: &str, port: u16) -> InstanceRecord {
    InstanceRecord {
        instance: id.into(),
        owner: PublicKey([3; 32]),
        endpoints: vec![Endpoint {
            protocol: "http".into(),
            host: host.into(),
            port,
            weight: 1,
        }],
        labels: vec![Label {
            key: "zone".into(),
            value: "a".into(),
        }],
        version: "1.0".into(),
        ttl_secs: 30,
        registered_at_ms: 1,
        lease_expires_at_ms: u64::MAX,
        health: Health::Passing,
        dissenting_reporters: vec![],
        probe: None,
    }
}

pub fn record(namespace: &str, service: &str, instances: Vec<InstanceRecord>) -> ServiceRecord {
    ServiceRecord {
        namespace: namespace.into(),
        service: service.into(),
        instances,
    }
}

/// A registry with `prod/api` (two instances) and `prod/db` (one).
pub struct World {
    pub chain: Chain,
    pub state: State,
    pub api: ServiceRecord,
    pub db: ServiceRecord,
}

impl World {
    pub fn new() -> Self {
        let chain = Chain::test();
        let mut state = State::new();
        let api = record(
            "prod",
            "api",
            vec![
                instance("api-1", "10.0.0.1", 8080),
                instance("api-2", "10.0.0.2", 8080),
            ],
        );
        let db = record("prod", "db", vec![instance("db-1", "10.0.1.1", 5432)]);
        state.put_record(&api);
        state.put_record(&db);
        let listing = NamespaceRecord {
            namespace: "prod".into(),
            services: vec!["api".into(), "db".into()],
        };
        state.put(vec![(
            StateKey::Namespace {
                namespace: "prod".into(),
            },
            Some(encode(&listing)),
        )]);
        World {
            chain,
            state,
            api,
            db,
        }
    }

    /// An honest answer for `namespace/service` at `height`, certified now.
    pub fn answer(&self, namespace: &str, service: &str, height: u64) -> LookupResponse {
        self.answer_at(namespace, service, height, now_ms(), &[0, 1, 2])
    }

    pub fn answer_at(
        &self,
        namespace: &str,
        service: &str,
        height: u64,
        timestamp_ms: u64,
        signers: &[usize],
    ) -> LookupResponse {
        let cert = self
            .chain
            .certify(block(height, self.state.root, timestamp_ms), signers);
        let (value, proof) = self.state.prove(&service_key(namespace, service));
        let instances = self.state.instance_bytes(namespace, service);
        lookup_response(cert, namespace, service, value, proof, instances)
    }
}

pub fn lookup_response(
    cert: CommitCertificate,
    namespace: &str,
    service: &str,
    value: Option<Vec<u8>>,
    proof: MapProof,
    instances: Vec<Vec<u8>>,
) -> LookupResponse {
    let height = cert.ledger_info.commit.as_ref().map_or(0, |b| b.height);
    let record = value.as_ref().map(|_| ServiceRecord {
        namespace: namespace.into(),
        service: service.into(),
        instances: instances
            .iter()
            .map(|b| palisade_crypto::decode(b).unwrap())
            .collect(),
    });
    LookupResponse {
        height,
        certificate: Hex::new(&cert),
        lookup: Hex::new(&ServiceLookup {
            namespace: namespace.into(),
            service: service.into(),
            value,
            proof,
        }),
        instances: instances.into_iter().map(Hex::from_bytes).collect(),
        record,
        certified: Some((&cert).into()),
    }
}

/// Rewrite the instance records inside an answer, keeping the index's proof
/// and the certificate.
pub fn tamper(response: &LookupResponse, edit: impl FnOnce(&mut ServiceRecord)) -> LookupResponse {
    let mut record = response.record.clone().unwrap();
    edit(&mut record);
    LookupResponse {
        height: response.height,
        certificate: response.certificate.clone(),
        lookup: response.lookup.clone(),
        instances: record.instances.iter().map(Hex::new).collect(),
        record: Some(record),
        certified: response.certified.clone(),
    }
}
