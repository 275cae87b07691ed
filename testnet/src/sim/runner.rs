//! The simulation loop: a virtual clock, an event queue and the network.
//!
//! Events (deliveries, timers, crashes, restarts) are ordered by
//! `(time, sequence)`, and every random choice comes from one ChaCha RNG
//! seeded by [`SimConfig::seed`], so a seed replays the same run exactly.
//! Messages cross the wire as borsh bytes ([`Replica::handle_bytes`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use palisade_consensus::executor::{ExecutionContext, Executor};
use palisade_consensus::hotstuff::{ConsensusError, Message, Output, Replica};
use palisade_crypto::{
    hash, BlockInfo, Digest, Domain, PublicKey, SecretKey, Validator, ValidatorSet,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::debug;

use super::checker::{Checker, Violation};
use super::network::{reach, WireStats};
use super::node::{Boot, SimNode};
use super::{PayloadSource, SharedVerdicts, SimConfig};

/// Messages kept for Byzantine tests to replay or mutate.
const RECORDED: usize = 512;

#[derive(Debug)]
enum Event {
    Deliver {
        to: usize,
        from: PublicKey,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
    },
    Crash {
        plan: usize,
    },
    Restart {
        plan: usize,
    },
}

/// Figures of a finished run (virtual time).
#[derive(Debug, Clone)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Virtual duration (ms).
    pub virtual_ms: u64,
    /// Highest height committed by an honest instance.
    pub height: u64,
    /// Highest round reached by an instance.
    pub max_round: u64,
    /// Committed height of each instance at the end (crashed: on disk).
    pub heights: Vec<u64>,
    /// What the network carried and saw (including twins' equivocations).
    pub wire: WireStats,
    /// Refused inputs, by error variant.
    pub errors: BTreeMap<String, u64>,
    /// Safety and liveness violations.
    pub violations: Vec<Violation>,
}

impl SimReport {
    /// Committed blocks per virtual second.
    pub fn commits_per_s(&self) -> f64 {
        self.height as f64 * 1000.0 / self.virtual_ms.max(1) as f64
    }
    /// Rounds per virtual second.
    pub fn rounds_per_s(&self) -> f64 {
        self.max_round as f64 * 1000.0 / self.virtual_ms.max(1) as f64
    }
}

/// A deterministic simulation of validators running the consensus core.
pub struct Simulation<E: Executor, P: PayloadSource> {
    config: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Event>,
    nodes: Vec<SimNode<E>>,
    genesis: BlockInfo,
    validators: ValidatorSet,
    make_executor: Box<dyn Fn() -> E>,
    crashed: HashMap<usize, usize>,
    payloads: P,
    verdicts: Arc<SharedVerdicts>,
    checker: Checker,
    wire: WireStats,
    errors: BTreeMap<String, u64>,
    recorded: Vec<(usize, Message)>,
    /// Re-executes the first honest commit of every height (certified roots
    /// must be what execution gives, whatever the voters checked).
    reference: E,
    reference_height: u64,
}

impl<E: Executor, P: PayloadSource> Simulation<E, P> {
    /// Build the run: keys from the seed, one instance per validator plus one
    /// per twin; `make_executor` makes a fresh executor at `genesis`.
    pub fn new(
        config: SimConfig,
        genesis: BlockInfo,
        make_executor: impl Fn(&ValidatorSet) -> E + 'static,
        payloads: P,
    ) -> Result<Self, ConsensusError> {
        Self::with_genesis(config, |_| genesis, make_executor, payloads)
    }

    /// Like [`Simulation::new`], for a genesis that depends on the validator
    /// set the seed draws (e.g. a registry genesis, whose state lists the
    /// validators): `make_genesis` gets that set before any instance starts.
    pub fn with_genesis(
        config: SimConfig,
        make_genesis: impl FnOnce(&ValidatorSet) -> BlockInfo,
        make_executor: impl Fn(&ValidatorSet) -> E + 'static,
        payloads: P,
    ) -> Result<Self, ConsensusError> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let keys: Vec<SecretKey> = (0..config.validators)
            .map(|_| SecretKey::from_seed(rng.gen()))
            .collect();
        let validators = ValidatorSet {
            epoch: 0,
            validators: keys
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        };
        let genesis = make_genesis(&validators);
        let genesis_set = validators.clone();
        let mut instance_keys = keys.clone();
        for &t in &config.twins {
            instance_keys.push(keys[t].clone());
        }
        let honest = (0..instance_keys.len())
            .map(|i| {
                let v = if i < config.validators {
                    i
                } else {
                    config.twins[i - config.validators]
                };
                !config.twins.contains(&v) && !config.liars.contains(&v)
            })
            .collect();
        let verdicts = Arc::new(SharedVerdicts::default());
        let reference = make_executor(&genesis_set);
        let mut sim = Simulation {
            reference,
            reference_height: genesis.height,
            rng,
            now: genesis.timestamp_ms,
            seq: 0,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            nodes: Vec::new(),
            genesis,
            validators,
            make_executor: Box::new(move || make_executor(&genesis_set)),
            crashed: HashMap::new(),
            payloads,
            verdicts,
            checker: Checker::new(honest),
            wire: WireStats::default(),
            errors: BTreeMap::new(),
            recorded: Vec::new(),
            config,
        };
        for key in instance_keys {
            let node = SimNode::start(key, &sim.boot())?;
            sim.nodes.push(node);
        }
        let start = sim.now;
        for (plan, crash) in sim.config.crashes.clone().into_iter().enumerate() {
            sim.schedule(start + crash.at_ms, Event::Crash { plan });
            if let Some(at) = crash.restart_at_ms {
                sim.schedule(start + at, Event::Restart { plan });
            }
        }
        for i in 0..sim.nodes.len() {
            sim.drain(i);
        }
        Ok(sim)
    }

    fn boot(&self) -> Boot<'_, E> {
        Boot {
            config: &self.config.consensus,
            genesis: &self.genesis,
            validators: &self.validators,
            make_executor: &*self.make_executor,
            verifier: self.verdicts.clone(),
            now: self.now,
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, event);
    }

    /// Virtual milliseconds since genesis.
    pub fn elapsed(&self) -> u64 {
        self.now - self.genesis.timestamp_ms
    }

    /// Run until `duration_ms` of virtual time have passed since genesis.
    pub fn run_until(&mut self, elapsed_ms: u64) {
        let end = self.genesis.timestamp_ms + elapsed_ms;
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > end {
                break;
            }
            self.queue.pop();
            self.now = self.now.max(at);
            let event = self.events.remove(&seq).expect("scheduled event");
            self.handle(event);
        }
        self.now = self.now.max(end);
    }

    /// Run the configured duration and report.
    pub fn run(mut self) -> SimReport {
        self.run_until(self.config.duration_ms);
        self.report()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { to, from, bytes } => {
                let now = self.now;
                let Some(replica) = self.nodes[to].replica.as_mut() else {
                    return;
                };
                if let Err(e) = replica.handle_bytes(now, from, &bytes) {
                    self.count_error(to, &e);
                }
                self.drain(to);
            }
            Event::Timer { node } => {
                if self.nodes[node].timer_at != Some(self.now) {
                    return; // superseded
                }
                self.nodes[node].timer_at = None;
                let now = self.now;
                if let Some(replica) = self.nodes[node].replica.as_mut() {
                    if let Err(e) = replica.handle_timeout(now) {
                        self.count_error(node, &e);
                    }
                }
                self.drain(node);
            }
            Event::Crash { plan } => {
                let crash = &self.config.crashes[plan];
                let node = if crash.leader {
                    self.current_leader().unwrap_or(crash.node)
                } else {
                    crash.node
                };
                debug!(node, "crash");
                self.crashed.insert(plan, node);
                self.nodes[node].crash();
            }
            Event::Restart { plan } => {
                let Some(&node) = self.crashed.get(&plan) else {
                    return;
                };
                let wipe = self.config.crashes[plan].lose_state;
                debug!(node, wipe, "restart");
                let stand_in = placeholder(&self.nodes[node]);
                let mut n = std::mem::replace(&mut self.nodes[node], stand_in);
                let result = n.restart(&self.boot(), wipe);
                self.nodes[node] = n;
                if let Err(e) = result {
                    self.count_error(node, &e);
                }
                if wipe {
                    self.checker.reset_node(node);
                }
                self.drain(node);
            }
        }
    }

    /// The instance leading the highest round any running instance is in.
    pub fn current_leader(&self) -> Option<usize> {
        let replica = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .max_by_key(|r| r.round())?;
        let leader = replica.leader_of(replica.round());
        self.nodes
            .iter()
            .position(|n| n.replica.is_some() && n.key.public() == leader)
    }

    /// Which instance a crash plan hit, once it happened.
    pub fn crashed_instance(&self, plan: usize) -> Option<usize> {
        self.crashed.get(&plan).copied()
    }

    fn count_error(&mut self, node: usize, e: &ConsensusError) {
        debug!(node, at_ms = self.elapsed(), error = %e, "refused");
        *self.errors.entry(e.kind()).or_default() += 1;
    }

    /// Carry out instance `i`'s outputs, in order, until there are none.
    fn drain(&mut self, i: usize) {
        loop {
            let Some(replica) = self.nodes[i].replica.as_mut() else {
                return;
            };
            let outputs = replica.take_outputs();
            if outputs.is_empty() {
                break;
            }
            for output in outputs {
                self.apply(i, output);
            }
        }
        if let Some(replica) = self.nodes[i].replica.as_ref() {
            let deadline = replica.next_deadline().max(self.now);
            if self.nodes[i].timer_at != Some(deadline) {
                self.nodes[i].timer_at = Some(deadline);
                self.schedule(deadline, Event::Timer { node: i });
            }
        }
    }

    fn apply(&mut self, i: usize, output: Output) {
        let now = self.now;
        match output {
            Output::PersistSafety(s) => self.nodes[i].disk.safety = s,
            Output::PersistBlock(b) => {
                self.nodes[i].disk.blocks.insert(b.id(), b);
            }
            Output::Send { to, message } => {
                let targets: Vec<usize> = (0..self.nodes.len())
                    .filter(|j| *j != i && self.nodes[*j].key.public() == to)
                    .collect();
                self.send(i, &targets, message);
            }
            Output::Broadcast(message) => {
                let targets: Vec<usize> = (0..self.nodes.len()).filter(|j| *j != i).collect();
                self.send(i, &targets, message);
            }
            Output::NeedPayload { round, .. } => {
                let payload = self.payloads.payload(i, round);
                if let Some(replica) = self.nodes[i].replica.as_mut() {
                    if let Err(e) = replica.handle_payload(now, round, payload) {
                        self.count_error(i, &e);
                    }
                }
            }
            Output::Committed(c) => {
                self.checker.on_commit(i, now, &c.info);
                if self.checker.is_honest(i) && c.info.height == self.reference_height + 1 {
                    self.re_execute(&c);
                }
                let disk = &mut self.nodes[i].disk;
                disk.blocks.retain(|_, b| b.height > c.info.height);
                disk.committed.push(c);
            }
            Output::NewEpoch(set) => {
                let disk = &mut self.nodes[i].disk;
                disk.validators = set;
                disk.blocks.clear();
            }
            Output::Halt { reason } => {
                // The shell stops a halted replica, as the node stops its process.
                debug!(node = i, %reason, "halted");
                *self.errors.entry("Halted".into()).or_default() += 1;
                self.nodes[i].crash();
            }
        }
    }

    /// Execute committed block `c` on the reference executor and compare.
    fn re_execute(&mut self, c: &palisade_consensus::hotstuff::CommittedBlock) {
        self.reference_height = c.info.height;
        let ctx = ExecutionContext {
            parent_id: c.block.parent_id(),
            block_id: c.info.block_id,
            height: c.info.height,
            epoch: c.block.epoch,
            timestamp_ms: c.info.timestamp_ms,
        };
        let wrong = match self.reference.execute(&ctx, &c.block.payload) {
            Ok(r) if r.state_root != c.info.state_root => Some("state_root"),
            Ok(r) if r.tx_root != c.info.tx_root => Some("tx_root"),
            Ok(_) => self
                .reference
                .commit(&c.info.block_id)
                .err()
                .map(|_| "execution"),
            Err(_) => Some("execution"),
        };
        if let Some(field) = wrong {
            self.checker.push(Violation::WrongExecution {
                height: c.info.height,
                field,
            });
            // The reference is off the certified chain now: one report is enough.
            self.reference_height = u64::MAX - 1;
        }
    }

    /// A liar's proposal leaves with a false state root, re-signed.
    fn lie(&self, from: usize, message: Message) -> Message {
        let Message::Proposal(mut p) = message else {
            return message;
        };
        if from >= self.config.validators || !self.config.liars.contains(&from) {
            return Message::Proposal(p);
        }
        p.block.state_root = hash(Domain::Jmt, &p.block.state_root.0);
        let digest = p.block.signing_digest(&self.config.consensus.chain_id);
        p.signature = self.nodes[from].key.sign_digest(&digest);
        Message::Proposal(p)
    }

    fn send(&mut self, from: usize, targets: &[usize], message: Message) {
        let message = self.lie(from, message);
        if self.recorded.len() < RECORDED {
            self.recorded.push((from, message.clone()));
        }
        let bytes = message.encode();
        let sender_key = self.nodes[from].key.public();
        self.wire.observe(sender_key, &message);
        let round = self.nodes[from].replica.as_ref().map_or(0, Replica::round);
        let healed = self.config.heal_at_ms.is_some_and(|h| self.elapsed() >= h);
        let elapsed = self.elapsed();
        for &to in targets {
            self.wire.sent += 1;
            let cfg = &self.config;
            let late = if healed {
                Some(0)
            } else {
                reach(
                    &cfg.round_partitions,
                    &cfg.time_partitions,
                    from,
                    to,
                    round,
                    elapsed,
                )
            };
            let Some(late) = late else {
                self.wire.dropped += 1;
                continue;
            };
            let faults = self.config.faults.clone();
            if !healed && self.rng.gen_range(0..100) < faults.drop_percent {
                self.wire.dropped += 1;
                continue;
            }
            let copies = if !healed && self.rng.gen_range(0..100) < faults.duplicate_percent {
                self.wire.duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let mut bytes = bytes.clone();
                if !healed && self.rng.gen_range(0..100) < faults.corrupt_percent {
                    let at = self.rng.gen_range(0..bytes.len());
                    bytes[at] ^= 1 << self.rng.gen_range(0..8);
                    self.wire.corrupted += 1;
                }
                let mut delay = late
                    + self.rng.gen_range(
                        faults.min_delay_ms..=faults.max_delay_ms.max(faults.min_delay_ms),
                    );
                if !healed
                    && faults.slow_percent > 0
                    && self.rng.gen_range(0..100) < faults.slow_percent
                {
                    delay += self.rng.gen_range(300..1_500);
                }
                let at = self.now + delay;
                self.schedule(
                    at,
                    Event::Deliver {
                        to,
                        from: sender_key,
                        bytes,
                    },
                );
            }
        }
    }

    /// Finish: run the end-of-run checks and gather figures.
    pub fn report(&mut self) -> SimReport {
        if let Some(heal) = self.config.heal_at_ms {
            let start = self.genesis.timestamp_ms;
            self.checker
                .check_heal(start + heal, self.config.liveness_bound_ms, self.now);
        }
        SimReport {
            seed: self.config.seed,
            virtual_ms: self.elapsed(),
            height: self.checker.height(),
            max_round: self
                .nodes
                .iter()
                .filter_map(|n| n.replica.as_ref().map(|r| r.round()))
                .max()
                .unwrap_or(0),
            heights: self
                .nodes
                .iter()
                .map(|n| n.disk.committed.last().map_or(0, |c| c.info.height))
                .collect(),
            wire: self.wire.clone(),
            errors: self.errors.clone(),
            violations: self.checker.violations().to_vec(),
        }
    }

    /// The checker (e.g. for throughput over a window).
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Instance `i`'s replica, if running.
    pub fn replica(&self, i: usize) -> Option<&Replica<E>> {
        self.nodes[i].replica.as_ref()
    }

    /// What instance `i` has persisted.
    pub fn disk(&self, i: usize) -> &super::Disk {
        &self.nodes[i].disk
    }

    /// Instance `i`'s key.
    pub fn key(&self, i: usize) -> &SecretKey {
        &self.nodes[i].key
    }

    /// Genesis block info.
    pub fn genesis(&self) -> &BlockInfo {
        &self.genesis
    }

    /// Messages sent so far (the first few hundred), with the sending instance.
    pub fn recorded(&self) -> &[(usize, Message)] {
        &self.recorded
    }

    /// Hand instance `to` a message as if `from` had sent it now; its outputs
    /// are carried out like any other. Returns the replica's verdict.
    ///
    /// # Panics
    /// If instance `to` is crashed (a test bug, not a protocol outcome).
    pub fn inject(
        &mut self,
        to: usize,
        from: PublicKey,
        message: Message,
    ) -> Result<(), ConsensusError> {
        let now = self.now;
        let replica = self.nodes[to]
            .replica
            .as_mut()
            .expect("inject into a running instance");
        let result = replica.handle_bytes(now, from, &message.encode());
        self.drain(to);
        result
    }
}

/// A stand-in while a node is being restarted in place.
fn placeholder<E: Executor>(node: &SimNode<E>) -> SimNode<E> {
    SimNode {
        key: node.key.clone(),
        replica: None,
        disk: node.disk.clone(),
        timer_at: None,
    }
}

/// The genesis of simulated chains: a fixed id and an empty state root.
pub fn sim_genesis() -> BlockInfo {
    palisade_consensus::hotstuff::SimExecutor::genesis_info(
        hash(Domain::Genesis, b"palisade sim genesis"),
        Digest::ZERO,
        1_700_000_000_000,
    )
}

impl Simulation<palisade_consensus::hotstuff::SimExecutor, super::SimPayloads> {
    /// A run over the hash-chain test executor at [`sim_genesis`], with
    /// `txs` transaction ids per block.
    pub fn hash_chain(config: SimConfig, txs: usize) -> Result<Self, ConsensusError> {
        Self::hash_chain_with_epoch(config, txs, None)
    }

    /// [`Simulation::hash_chain`] whose executor ends epoch 0 at height
    /// `epoch_end` (the next epoch keeps the same validators), if given.
    pub fn hash_chain_with_epoch(
        config: SimConfig,
        txs: usize,
        epoch_end: Option<u64>,
    ) -> Result<Self, ConsensusError> {
        let genesis = sim_genesis();
        let (id, root) = (genesis.block_id, genesis.state_root);
        Simulation::new(
            config,
            genesis,
            move |set: &ValidatorSet| {
                let executor = palisade_consensus::hotstuff::SimExecutor::new(id, root);
                match epoch_end {
                    Some(height) => executor.with_epoch_change(
                        height,
                        ValidatorSet {
                            epoch: set.epoch + 1,
                            validators: set.validators.clone(),
                        },
                    ),
                    None => executor,
                }
            },
            super::SimPayloads::new(txs),
        )
    }
}
