//! Replica tests over a tiny lossless in-process network (the full
//! simulator with faults lives in `palisade-testnet`).

use std::collections::VecDeque;

use palisade_crypto::{
    hash, BlockInfo, Digest, Domain, PublicKey, SecretKey, Validator, ValidatorSet,
};

use super::*;
use crate::hotstuff::{SimExecutor, MAX_MESSAGE_BYTES};

pub(crate) struct Net {
    pub(crate) replicas: Vec<Replica<SimExecutor>>,
    pub(crate) queue: VecDeque<(usize, PublicKey, Message)>,
    pub(crate) committed: Vec<Vec<CommittedBlock>>,
    pub(crate) now: u64,
    pub(crate) errors: Vec<ConsensusError>,
}

pub(crate) fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
        .collect()
}

pub(crate) fn set(keys: &[SecretKey], epoch: u64) -> ValidatorSet {
    ValidatorSet {
        epoch,
        validators: keys
            .iter()
            .map(|k| Validator {
                key: k.public(),
                power: 1,
            })
            .collect(),
    }
}

pub(crate) fn genesis() -> BlockInfo {
    SimExecutor::genesis_info(hash(Domain::Genesis, b"g"), Digest::ZERO, 1_000)
}

pub(crate) fn config() -> Config {
    let mut c = Config::new("test-chain");
    c.base_timeout_ms = 500;
    c
}

impl Net {
    pub(crate) fn new(n: usize) -> Self {
        let keys = keys(n);
        let set = set(&keys, 0);
        let g = genesis();
        let replicas = keys
            .iter()
            .map(|k| {
                Replica::genesis(
                    config(),
                    k.clone(),
                    SimExecutor::new(g.block_id, g.state_root),
                    g.clone(),
                    set.clone(),
                    1_000,
                )
                .unwrap()
            })
            .collect();
        Net {
            replicas,
            queue: VecDeque::new(),
            committed: vec![Vec::new(); n],
            now: 1_000,
            errors: Vec::new(),
        }
    }

    fn route(&mut self, from: usize) {
        let me = self.replicas[from].public_key();
        for out in self.replicas[from].take_outputs() {
            match out {
                Output::Send { to, message } => {
                    for (i, r) in self.replicas.iter().enumerate() {
                        if r.public_key() == to && i != from {
                            self.queue.push_back((i, me, message.clone()));
                        }
                    }
                }
                Output::Broadcast(message) => {
                    for i in 0..self.replicas.len() {
                        if i != from {
                            self.queue.push_back((i, me, message.clone()));
                        }
                    }
                }
                Output::NeedPayload { round, .. } => {
                    let payload = hash(Domain::Transaction, &round.to_le_bytes()).0.to_vec();
                    let now = self.now;
                    if let Err(e) = self.replicas[from].handle_payload(now, round, payload) {
                        self.errors.push(e);
                    }
                    self.route(from);
                }
                Output::Committed(c) => self.committed[from].push(c),
                Output::PersistSafety(_) | Output::PersistBlock(_) | Output::NewEpoch(_) => {}
            }
        }
    }

    /// Deliver everything, advancing time by 10 ms per step, up to `steps`.
    pub(crate) fn run(&mut self, steps: usize) {
        for i in 0..self.replicas.len() {
            self.route(i);
        }
        for _ in 0..steps {
            self.now += 10;
            for i in 0..self.replicas.len() {
                let now = self.now;
                if let Err(e) = self.replicas[i].handle_timeout(now) {
                    self.errors.push(e);
                }
                self.route(i);
            }
            let batch: Vec<_> = self.queue.drain(..).collect();
            for (to, from, msg) in batch {
                let now = self.now;
                if let Err(e) = self.replicas[to].handle_message(now, from, msg) {
                    self.errors.push(e);
                }
                self.route(to);
            }
        }
    }
}

#[test]
fn four_replicas_commit_the_same_chain() {
    let mut net = Net::new(4);
    net.run(60);
    let heights: Vec<usize> = net.committed.iter().map(|c| c.len()).collect();
    assert!(
        heights.iter().all(|h| *h >= 10),
        "commits: {heights:?}, errors {:?}",
        net.errors
    );
    let shortest = *heights.iter().min().unwrap();
    for c in &net.committed {
        for (a, b) in c[..shortest].iter().zip(&net.committed[0][..shortest]) {
            assert_eq!(a.info, b.info);
        }
    }
    // Every committed block carries a certificate the client can verify.
    let set = net.replicas[0].validators().clone();
    for c in &net.committed[0] {
        let verified = c.certificate().verify(&set, "test-chain").unwrap();
        assert!(verified.block().height >= c.info.height);
    }
}

#[test]
fn wire_messages_round_trip_and_are_capped() {
    let mut net = Net::new(4);
    net.run(5);
    let msg = Message::SyncInfo(net.replicas[0].sync_info());
    assert_eq!(Message::decode(&msg.encode()).unwrap(), msg);
    let huge = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        Message::decode(&huge),
        Err(ConsensusError::Decode(
            palisade_crypto::DecodeError::TooLarge { .. }
        ))
    ));
}
