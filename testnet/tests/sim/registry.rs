//! The registry state machine as the simulator's executor (issue 4): random
//! signed workloads (registrations, heartbeats, deregistrations, overwrites
//! of another identity's instance, short leases that expire on block time;
//! writes into a namespace the signer does not hold are inadmissible, so a
//! leader's payload never carries them) run on every replica
//! under message loss, duplication, reordering and crashes with restarts.
//!
//! Beyond the checker's per-height agreement, each replica's own store is
//! read back: at every committed height its map root equals the certified
//! root of the block, so no replica reached a root by another path (a crash
//! restart replays the committed log into a fresh executor).

use palisade_consensus::executor::Executor;
use palisade_consensus::state::{
    encode_payload, Authority, Genesis, MemStore, RegistryExecutor, StateReader, TxOutcome,
};
use palisade_crypto::{
    BlockInfo, Endpoint, Enrollment, Label, Registration, Role, SecretKey, Transaction, TxBody,
    ValidatorSet,
};
use palisade_testnet::sim::{
    for_each_seed, Crash, NetFaults, PayloadSource, SimConfig, Simulation,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ensure, safe};

const CHAIN: &str = "palisade-sim";
const GENESIS_MS: u64 = 1_700_000_000_000;
const IDENTITIES: u8 = 4;

fn identity(i: u8) -> SecretKey {
    SecretKey::from_seed([100 + i; 32])
}

/// Identities 0 and 1 hold `shop`, 2 holds `billing`, 3 holds both.
fn namespaces_of(i: u8) -> Vec<String> {
    match i {
        0 | 1 => vec!["shop".into()],
        2 => vec!["billing".into()],
        _ => vec!["shop".into(), "billing".into()],
    }
}

fn registry_genesis(validators: &ValidatorSet) -> Genesis {
    let authority = SecretKey::from_seed([90; 32]);
    let mut g = Genesis::new(
        CHAIN,
        GENESIS_MS,
        validators.validators.clone(),
        Authority {
            members: vec![authority.public()],
            threshold: 1,
        },
    );
    g.enrollments = (0..IDENTITIES)
        .map(|i| Enrollment {
            identity: identity(i).public(),
            namespaces: namespaces_of(i),
            role: Role::Service,
        })
        .collect();
    g
}

fn open(validators: &ValidatorSet) -> RegistryExecutor<MemStore> {
    RegistryExecutor::open(MemStore::new(), &registry_genesis(validators))
        .expect("registry genesis opens")
}

fn genesis_info(validators: &ValidatorSet) -> BlockInfo {
    open(validators).committed_meta().genesis_info()
}

/// Random signed registry transactions; sequence numbers only grow, so a
/// payload that never commits leaves a gap (allowed) and a resent one is
/// refused as a replay.
struct RegistryPayloads {
    rng: ChaCha8Rng,
    /// The genesis transactions name, learnt when the simulation builds it.
    genesis_hash: std::sync::Arc<std::sync::Mutex<palisade_crypto::Digest>>,
    seqs: [u64; IDENTITIES as usize],
    /// Transactions generated (valid or not).
    generated: u64,
}

impl RegistryPayloads {
    fn new(seed: u64) -> Self {
        RegistryPayloads {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f7e),
            genesis_hash: Default::default(),
            seqs: [0; IDENTITIES as usize],
            generated: 0,
        }
    }
}

impl PayloadSource for RegistryPayloads {
    fn payload(&mut self, _node: usize, _round: u64) -> Vec<u8> {
        let n = self.rng.gen_range(0..6);
        let txs: Vec<_> = (0..n)
            .map(|_| {
                let who = self.rng.gen_range(0..IDENTITIES);
                // Its own namespace: a write elsewhere is inadmissible (the
                // leader drops it before proposing; a block carrying it is
                // refused), as node admission refuses it with 403.
                let _ = self.rng.gen_bool(0.85);
                let own = namespaces_of(who);
                let namespace = own[self.rng.gen_range(0..own.len())].clone();
                // Instances collide across identities, so some writes hit
                // another identity's instance and must be refused.
                let instance = format!("i{}", self.rng.gen_range(0..5));
                let body = match self.rng.gen_range(0..6) {
                    0..=2 => TxBody::Register(Registration {
                        namespace,
                        service: "web".into(),
                        instance,
                        endpoints: vec![Endpoint {
                            protocol: "http".into(),
                            host: format!("10.0.0.{}", who),
                            port: self.rng.gen_range(1024..2048),
                            weight: 1,
                        }],
                        labels: vec![Label {
                            key: "zone".into(),
                            value: ["a", "b"][self.rng.gen_range(0..2)].into(),
                        }],
                        version: "1.0.0".into(),
                        // 1-4 s leases: many expire on block time during the run.
                        ttl_secs: self.rng.gen_range(1..5),
                        probe: None,
                    }),
                    3 | 4 => TxBody::Heartbeat {
                        namespace,
                        service: "web".into(),
                        instance,
                    },
                    _ => TxBody::Deregister {
                        namespace,
                        service: "web".into(),
                        instance,
                    },
                };
                let key = identity(who);
                self.seqs[who as usize] += 1;
                self.generated += 1;
                Transaction {
                    chain_id: CHAIN.into(),
                    genesis_hash: *self.genesis_hash.lock().expect("genesis hash lock"),
                    signer: key.public(),
                    sequence: self.seqs[who as usize],
                    body,
                }
                .sign(&key)
            })
            .collect();
        encode_payload(&txs)
    }
}

/// Every live replica's store holds, at each committed height, the root
/// certified for that height; returns how many heights were compared.
fn stores_match_committed_roots(
    sim: &Simulation<RegistryExecutor<MemStore>, RegistryPayloads>,
    instances: usize,
) -> Result<u64, String> {
    let mut compared = 0;
    for i in 0..instances {
        let Some(replica) = sim.replica(i) else {
            continue; // crashed at the end
        };
        let store = replica.executor().store();
        let committed = replica.executor().committed();
        let disk = &sim.disk(i).committed;
        if let Some(last) = disk.last() {
            ensure(
                committed == (last.info.block_id, last.info.state_root),
                || {
                    format!(
                        "replica {i}: executor at {committed:?}, log ends at height {}",
                        last.info.height
                    )
                },
            )?;
        }
        for c in disk {
            let root = StateReader::at(store, c.info.height)
                .root()
                .map_err(|e| format!("replica {i} height {}: {e}", c.info.height))?;
            ensure(root == c.info.state_root, || {
                format!(
                    "replica {i} height {}: store root {root} != certified {}",
                    c.info.height, c.info.state_root
                )
            })?;
            compared += 1;
        }
    }
    Ok(compared)
}

#[test]
fn registry_replicas_agree_under_loss_and_crashes() {
    for_each_seed(
        "registry::registry_replicas_agree_under_loss_and_crashes",
        3,
        |seed| {
            let mut config = SimConfig::new(seed, 4);
            config.duration_ms = 8_000;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            config.faults = NetFaults {
                drop_percent: rng.gen_range(10..=20),
                duplicate_percent: 10,
                min_delay_ms: 5,
                max_delay_ms: 40,
                ..NetFaults::healthy()
            };
            // One replica crashes and restarts from its disk; the leader of the
            // moment crashes and comes back with its disk lost.
            config.crashes = vec![
                Crash {
                    node: rng.gen_range(0..4),
                    leader: false,
                    at_ms: 1_500,
                    restart_at_ms: Some(3_500),
                    lose_state: false,
                },
                Crash {
                    node: 0,
                    leader: true,
                    at_ms: 4_500,
                    restart_at_ms: Some(5_500),
                    lose_state: true,
                },
            ];
            config.heal_at_ms = Some(5_500);
            let payloads = RegistryPayloads::new(seed);
            let genesis_hash = payloads.genesis_hash.clone();
            let make_genesis = move |v: &ValidatorSet| {
                *genesis_hash.lock().expect("genesis hash lock") = registry_genesis(v).hash();
                genesis_info(v)
            };
            let mut sim = Simulation::with_genesis(config, make_genesis, open, payloads)
                .map_err(|e| e.to_string())?;
            sim.run_until(8_000);
            let report = sim.report();
            safe(&report)?;
            ensure(report.height >= 20, || {
                format!("only {} blocks committed", report.height)
            })?;
            let compared = stores_match_committed_roots(&sim, 4)?;
            // The workload did something: some transactions applied, some were
            // refused (replays, foreign namespaces, another identity's instance).
            let live = (0..4)
                .find_map(|i| sim.replica(i))
                .ok_or("no live replica at the end")?;
            let store = live.executor().store();
            let (mut applied, mut refused) = (0, 0);
            for h in 1..=live.committed().height {
                for r in store
                    .block_receipts(h)
                    .map(|b| b.receipts)
                    .unwrap_or_default()
                {
                    match r.outcome {
                        TxOutcome::Applied => applied += 1,
                        TxOutcome::Rejected(_) => refused += 1,
                    }
                }
            }
            ensure(applied > 20 && refused > 0, || {
                format!("a trivial workload: {applied} applied, {refused} refused")
            })?;
            eprintln!(
            "registry sim seed={seed}: height {}, {compared} heights compared across replicas, {applied} txs applied, {refused} refused",
            report.height,
        );
            Ok(())
        },
    );
}
