//! Seed corpora: real encodings produced by the real code.
//!
//! A one-validator chain runs the consensus core for a few blocks over the
//! hash-chain executor; its proposals, votes, timeouts and commit
//! certificates (borsh) are the consensus corpus. Transactions are signed by
//! a real key; the network file and API bodies are serialised from real
//! values.

use palisade_consensus::hotstuff::{Config, Output, Replica, SimExecutor};
use palisade_crypto::api::{BlockResponse, StatusResponse};
use palisade_crypto::{
    encode, hash, receipt_root, tx_root, BlockInfo, CommitCertificate, Digest, Domain, Hex,
    LeaseHeartbeat, NetworkFile, NodeEndpoint, SecretKey, SignedHeartbeat, SignedSilenceReport,
    SignedTransaction, SilenceReport, Transaction, TxBody, TxInclusionProof, Validator,
    ValidatorSet,
};

/// Chain id of the corpus chain.
pub const CHAIN_ID: &str = "audit-corpus";

/// Real encodings, by decoder.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// The corpus chain's validator set (one validator).
    pub validators: ValidatorSet,
    /// The validator's key (signs everything here).
    pub key: SecretKey,
    /// The corpus chain's genesis.
    pub genesis: BlockInfo,
    /// Borsh consensus messages (proposals, votes, timeouts).
    pub messages: Vec<Vec<u8>>,
    /// Commit certificates, with the value each encodes.
    pub certificates: Vec<(Vec<u8>, CommitCertificate)>,
    /// Block infos (borsh).
    pub block_infos: Vec<Vec<u8>>,
    /// Signed transactions, with the value each encodes.
    pub transactions: Vec<(Vec<u8>, SignedTransaction)>,
    /// A network.json text.
    pub network_json: String,
    /// API JSON bodies.
    pub api_json: Vec<String>,
    /// Transaction inclusion proofs of one block (borsh, with the value
    /// each encodes), its tx root and receipt root, and its ids and outcomes.
    pub inclusion_proofs: Vec<(Vec<u8>, TxInclusionProof)>,
    /// The block's tx root and receipt root.
    pub proof_roots: (Digest, Digest),
    /// The block's transaction ids and outcome codes.
    pub receipts: Vec<(Digest, u16)>,
    /// Signed lease heartbeats (borsh, with the value each encodes).
    pub heartbeats: Vec<(Vec<u8>, SignedHeartbeat)>,
    /// Signed silence reports (borsh, with the value each encodes).
    pub silence_reports: Vec<(Vec<u8>, SignedSilenceReport)>,
    /// A key file's text, as `palisade_keys::write_key_file` writes it.
    pub key_file: String,
    /// Hex texts: keys and digests.
    pub hex: Vec<String>,
}

impl Corpus {
    /// A fresh replica of the corpus chain at genesis (to feed inputs to).
    pub fn replica(&self, now: u64) -> Replica<SimExecutor> {
        let mut config = Config::new(CHAIN_ID);
        // The corpus network file's genesis hash (the genesis block's id).
        config.genesis_hash = self.genesis.block_id;
        Replica::genesis(
            config,
            self.key.clone(),
            SimExecutor::new(self.genesis.block_id, self.genesis.state_root),
            self.genesis.clone(),
            self.validators.clone(),
            now,
        )
        .expect("corpus replica starts")
    }

    /// Run the corpus chain and collect its traffic.
    pub fn generate() -> Corpus {
        let key = SecretKey::from_seed([7; 32]);
        let validators = ValidatorSet {
            epoch: 0,
            validators: vec![Validator {
                key: key.public(),
                power: 1,
            }],
        };
        let genesis = BlockInfo {
            round: 0,
            height: 0,
            block_id: hash(Domain::Genesis, b"audit corpus"),
            state_root: Digest::ZERO,
            tx_root: tx_root(&[]),
            timestamp_ms: 1_000,
            next_validators: None,
            parent_info: Digest::ZERO,
        };
        let executor = SimExecutor::new(genesis.block_id, genesis.state_root);
        let mut corpus = Corpus {
            validators: validators.clone(),
            key: key.clone(),
            genesis: genesis.clone(),
            messages: Vec::new(),
            certificates: Vec::new(),
            block_infos: vec![encode(&genesis)],
            transactions: Vec::new(),
            network_json: String::new(),
            api_json: Vec::new(),
            inclusion_proofs: Vec::new(),
            proof_roots: (Digest::ZERO, Digest::ZERO),
            receipts: Vec::new(),
            heartbeats: Vec::new(),
            silence_reports: Vec::new(),
            key_file: String::new(),
            hex: Vec::new(),
        };
        let mut replica = Replica::genesis(
            Config::new(CHAIN_ID),
            key.clone(),
            executor,
            genesis,
            validators.clone(),
            1_000,
        )
        .expect("corpus chain starts");
        let mut now = 1_000;
        // Bounded: a one-validator chain commits every few steps.
        for step in 0..200u64 {
            if corpus.certificates.len() >= 6 {
                break;
            }
            now += 10;
            let _ = replica.handle_timeout(now);
            for output in replica.take_outputs() {
                match output {
                    Output::Broadcast(m) | Output::Send { message: m, .. } => {
                        corpus.messages.push(m.encode());
                    }
                    Output::NeedPayload { round, .. } => {
                        let payload = hash(Domain::Transaction, &step.to_le_bytes()).0.to_vec();
                        let _ = replica.handle_payload(now, round, payload);
                    }
                    Output::Committed(c) => {
                        let cert = c.certificate();
                        corpus.certificates.push((encode(&cert), cert));
                        corpus.block_infos.push(encode(&c.info));
                    }
                    _ => {}
                }
            }
        }
        // Outputs of the last step's payload are messages too.
        for output in replica.take_outputs() {
            if let Output::Broadcast(m) = output {
                corpus.messages.push(m.encode());
            }
        }
        let genesis_hash = corpus.genesis.block_id;
        for sequence in 0..3 {
            let tx = Transaction {
                chain_id: CHAIN_ID.into(),
                genesis_hash,
                signer: key.public(),
                sequence,
                body: TxBody::Revoke {
                    identity: SecretKey::from_seed([sequence as u8 + 1; 32]).public(),
                },
            }
            .sign(&key);
            corpus.transactions.push((encode(&tx), tx));
        }
        let network = NetworkFile {
            chain_id: CHAIN_ID.into(),
            datacenter: "dc1".into(),
            genesis_hash: hash(Domain::Genesis, b"audit corpus"),
            validators: validators.clone(),
            nodes: vec![NodeEndpoint {
                name: "node0".into(),
                public_key: key.public(),
                api_url: "http://127.0.0.1:7100".into(),
                p2p_addr: "/ip4/127.0.0.1/tcp/7000".into(),
            }],
        };
        corpus.network_json = serde_json::to_string_pretty(&network).expect("serialises");
        if let Some((_, cert)) = corpus.certificates.last() {
            if let Some(info) = &cert.ledger_info.commit {
                let block = BlockResponse {
                    height: info.height,
                    block: Hex::new(info),
                    info: Some(info.clone()),
                    certified: Some(cert.into()),
                    transactions: Vec::new(),
                };
                corpus
                    .api_json
                    .push(serde_json::to_string(&block).expect("serialises"));
            }
        }
        let status = StatusResponse {
            chain_id: CHAIN_ID.into(),
            node_key: key.public().to_hex(),
            height: 6,
            round: 7,
            epoch: 0,
            leader: key.public().to_hex(),
            peers: 3,
            mempool: 0,
            state_root: Digest::ZERO,
        };
        corpus
            .api_json
            .push(serde_json::to_string(&status).expect("serialises"));
        corpus.add_proofs_leases_and_keys();
        corpus
    }

    /// Inclusion proofs of the corpus transactions (one block of three),
    /// heartbeats and silence reports signed by the corpus key, its key file.
    fn add_proofs_leases_and_keys(&mut self) {
        self.receipts = self
            .transactions
            .iter()
            .enumerate()
            .map(|(i, (_, tx))| (tx.id(), i as u16))
            .collect();
        let ids: Vec<Digest> = self.receipts.iter().map(|(id, _)| *id).collect();
        self.proof_roots = (tx_root(&ids), receipt_root(&self.receipts));
        for i in 0..ids.len() {
            let proof = TxInclusionProof::build_receipt(&self.receipts, i);
            self.inclusion_proofs.push((encode(&proof), proof));
        }
        for sent_at_ms in [1_000, 2_000] {
            let h = LeaseHeartbeat {
                chain_id: CHAIN_ID.into(),
                identity: self.key.public(),
                sent_at_ms,
            }
            .sign(&self.key);
            self.heartbeats.push((encode(&h), h));
        }
        let report = SilenceReport {
            chain_id: CHAIN_ID.into(),
            epoch: 0,
            validator: self.key.public(),
            observed_at_ms: 5_000,
            namespace: "prod".into(),
            service: "api".into(),
            instances: vec!["a-1".into(), "b-2".into()],
        }
        .sign(&self.key);
        self.silence_reports.push((encode(&report), report));
        // Byte for byte what `palisade_keys::write_key_file` writes.
        let seed: String = self.key.seed().iter().map(|b| format!("{b:02x}")).collect();
        self.key_file = format!(
            "{}\n",
            serde_json::json!({
                "format": palisade_keys::KEY_FORMAT,
                "public_key": self.key.public().to_hex(),
                "secret_seed": seed,
            })
        );
        self.hex = vec![self.key.public().to_hex(), self.genesis.block_id.to_hex()];
    }
}
