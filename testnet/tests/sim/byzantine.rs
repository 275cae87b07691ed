//! Byzantine messages are refused with a typed reason, never a panic:
//! bad signatures, outsiders, duplicate signers, QCs below quorum, wrong
//! chain or epoch, replays, timestamps in the future or not after the parent.

use palisade_consensus::hotstuff::{
    Block, ConsensusError, Message, Proposal, QuorumCert, SyncInfo, Vote, VoteData,
};
use palisade_crypto::{CertError, Digest, LedgerInfo, SecretKey, SigError, ValidatorSet};
use palisade_testnet::sim::{for_each_seed, Crash, SimConfig};

use crate::{ensure, safe, simulation, simulation_with_epoch, Sim};

fn expect(
    got: Result<(), ConsensusError>,
    want: impl Fn(&ConsensusError) -> bool,
    what: &str,
) -> Result<(), String> {
    match got {
        Err(e) if want(&e) => Ok(()),
        other => Err(format!("{what}: got {other:?}")),
    }
}

/// An early proposal whose parent QC is signed, and its sender instance.
fn signed_proposal(sim: &Sim) -> Result<(usize, Proposal), String> {
    sim.recorded()
        .iter()
        .find_map(|(from, m)| match m {
            Message::Proposal(p) if !p.block.parent_qc.is_root() => Some((*from, p.clone())),
            _ => None,
        })
        .ok_or_else(|| "no proposal recorded".to_string())
}

fn recorded_vote(sim: &Sim) -> Result<Vote, String> {
    sim.recorded()
        .iter()
        .find_map(|(_, m)| match m {
            Message::Vote(v) => Some(v.clone()),
            _ => None,
        })
        .ok_or_else(|| "no vote recorded".to_string())
}

fn sync_info(qc: QuorumCert) -> Message {
    Message::SyncInfo(SyncInfo {
        high_qc: qc,
        high_commit: None,
        high_tc: None,
    })
}

#[test]
fn byzantine_messages_get_typed_rejections() {
    for_each_seed("byzantine_messages_get_typed_rejections", 4, |seed| {
        let mut sim = simulation(SimConfig::new(seed, 4));
        sim.run_until(2_000);
        let (sender, proposal) = signed_proposal(&sim)?;
        let to = (sender + 1) % 4;
        let proposer = proposal.block.proposer;
        let validator = sim.key(sender).public();

        // A proposal with a corrupted signature.
        let mut bad = proposal.clone();
        bad.signature.0[5] ^= 0x40;
        expect(
            sim.inject(to, proposer, Message::Proposal(bad)),
            |e| *e == ConsensusError::Signature(SigError::BadSignature(proposer)),
            "corrupted proposal signature",
        )?;

        // A proposal relayed by someone else than its proposer.
        let other = sim.key(to).public();
        let relay = if other == proposer {
            sim.key((to + 1) % 4).public()
        } else {
            other
        };
        expect(
            sim.inject(to, relay, Message::Proposal(proposal.clone())),
            |e| matches!(e, ConsensusError::ProposerNotSender { .. }),
            "proposal relayed by a non-proposer",
        )?;

        // A vote from a key outside the validator set, correctly signed by it.
        let outsider = SecretKey::from_seed([0xEE; 32]);
        let mut vote = recorded_vote(&sim)?;
        vote.signature = outsider.sign_digest(&vote.ledger_info.digest());
        expect(
            sim.inject(to, outsider.public(), Message::Vote(vote)),
            |e| *e == ConsensusError::NotAValidator(outsider.public()),
            "vote from a non-validator",
        )?;

        let qc = proposal.block.parent_qc.clone();
        // Duplicate signer padding a QC.
        let mut dup = qc.clone();
        let first = dup.signatures[0];
        let last = dup.signatures.len() - 1;
        dup.signatures[last] = first;
        expect(
            sim.inject(to, validator, sync_info(dup)),
            |e| *e == ConsensusError::Certificate(CertError::DuplicateSigner(first.0)),
            "QC with a duplicate signer",
        )?;

        // A QC below quorum.
        let mut thin = qc.clone();
        thin.signatures.truncate(2);
        expect(
            sim.inject(to, validator, sync_info(thin)),
            |e| {
                matches!(
                    e,
                    ConsensusError::Certificate(CertError::InsufficientPower {
                        got: 2,
                        needed: 3,
                        total: 4
                    })
                )
            },
            "QC below quorum",
        )?;

        // A QC of another chain, and of an epoch that does not exist yet.
        let mut foreign = qc.clone();
        foreign.ledger_info.chain_id = "another-chain".into();
        expect(
            sim.inject(to, validator, sync_info(foreign)),
            |e| matches!(e, ConsensusError::WrongChain { .. }),
            "QC of another chain",
        )?;
        let mut future = qc.clone();
        future.ledger_info.epoch = 7;
        future.vote_data.epoch = 7;
        expect(
            sim.inject(to, validator, sync_info(future)),
            |e| *e == ConsensusError::WrongEpoch { got: 7, current: 0 },
            "QC of a future epoch",
        )?;

        // A forged signature inside an otherwise well-formed QC.
        let mut forged = qc.clone();
        forged.signatures[0].1 .0[9] ^= 1;
        expect(
            sim.inject(to, validator, sync_info(forged)),
            |e| matches!(e, ConsensusError::Certificate(CertError::Signature(_))),
            "QC with a forged signature",
        )?;

        // Replays of an old proposal and an old vote.
        expect(
            sim.inject(to, proposer, Message::Proposal(proposal.clone())),
            |e| matches!(e, ConsensusError::StaleRound { .. }),
            "replayed proposal",
        )?;
        let old_vote = recorded_vote(&sim)?;
        let voter = sim
            .recorded()
            .iter()
            .find(|(_, m)| *m == Message::Vote(old_vote.clone()))
            .map(|(i, _)| *i)
            .unwrap();
        expect(
            sim.inject(
                (voter + 1) % 4,
                sim.key(voter).public(),
                Message::Vote(old_vote),
            ),
            |e| matches!(e, ConsensusError::StaleRound { .. }),
            "replayed vote",
        )?;

        // Unsolicited sync answers.
        expect(
            sim.inject(
                to,
                validator,
                Message::BlockResponse(palisade_consensus::hotstuff::BlockResponse {
                    block_id: Digest::ZERO,
                    blocks: vec![],
                }),
            ),
            |e| *e == ConsensusError::UnsolicitedResponse(validator),
            "unsolicited block response",
        )?;

        // A well-formed block from a validator that does not lead the round.
        let (leader_instance, mut block) = leader_block(&sim, to, 0)?;
        let usurper = (0..4)
            .find(|i| *i != leader_instance && *i != to)
            .ok_or("no usurper")?;
        block.proposer = sim.key(usurper).public();
        expect(
            inject_signed(&mut sim, to, usurper, block),
            |e| matches!(e, ConsensusError::WrongLeader { .. }),
            "block from a validator that does not lead the round",
        )?;

        // Timestamps: far in the future, and not after the parent.
        let (leader_instance, block) = leader_block(&sim, to, 3_600_000)?;
        expect(
            inject_signed(&mut sim, to, leader_instance, block),
            |e| matches!(e, ConsensusError::TimestampInFuture { .. }),
            "block an hour in the future",
        )?;
        let (leader_instance, mut block) = leader_block(&sim, to, 0)?;
        block.timestamp_ms = parent_timestamp(&sim, to)?;
        expect(
            inject_signed(&mut sim, to, leader_instance, block),
            |e| matches!(e, ConsensusError::TimestampNotAfterParent { .. }),
            "block not after its parent",
        )?;

        // The network shrugs all of it off.
        sim.run_until(4_000);
        let r = sim.report();
        safe(&r)?;
        ensure(r.height >= 80, || {
            format!("only {} blocks after the attack", r.height)
        })
    });
}

/// A block by the leader of `to`'s current round on `to`'s highest QC,
/// `ahead_ms` after `to`'s clock (roots are irrelevant: checks come first).
fn leader_block(sim: &Sim, to: usize, ahead_ms: u64) -> Result<(usize, Block), String> {
    let replica = sim.replica(to).ok_or("target not running")?;
    let round = replica.round();
    let leader = replica.leader_of(round);
    let instance = (0..4)
        .find(|i| sim.key(*i).public() == leader)
        .ok_or("leader not found")?;
    let high_qc = replica.high_qc().clone();
    let now = sim.genesis().timestamp_ms + sim.elapsed();
    let block = Block {
        epoch: 0,
        round,
        height: high_qc.vote_data.height + 1,
        parent_info: high_qc.vote_data.info_hash,
        parent_qc: high_qc,
        payload: Vec::new(),
        proposer: leader,
        timestamp_ms: now + ahead_ms,
        state_root: Digest::ZERO,
        tx_root: Digest::ZERO,
        next_validators: None,
    };
    Ok((instance, block))
}

fn parent_timestamp(sim: &Sim, to: usize) -> Result<u64, String> {
    let replica = sim.replica(to).ok_or("target not running")?;
    let parent = replica.high_qc().certified_id();
    let disk = sim.disk(to);
    disk.blocks
        .get(&parent)
        .map(|b| b.timestamp_ms)
        .or_else(|| {
            disk.committed
                .iter()
                .find(|c| c.info.block_id == parent)
                .map(|c| c.info.timestamp_ms)
        })
        .ok_or_else(|| "parent block not on disk".to_string())
}

fn inject_signed(
    sim: &mut Sim,
    to: usize,
    leader: usize,
    block: Block,
) -> Result<(), ConsensusError> {
    let key = sim.key(leader).clone();
    let signature = key.sign_digest(&block.signing_digest("sim-chain"));
    let proposal = Proposal {
        block,
        tc: None,
        signature,
    };
    sim.inject(to, key.public(), Message::Proposal(proposal))
}

#[test]
fn epoch_change_retires_the_old_set() {
    for_each_seed("epoch_change_retires_the_old_set", 4, |seed| {
        // Instance 3 loses its disk before the epoch ends and comes back
        // after it: it must follow the set change through sync.
        let mut config = SimConfig::new(seed, 4);
        config.crashes.push(Crash {
            node: 3,
            leader: false,
            at_ms: 300,
            restart_at_ms: Some(2_000),
            lose_state: true,
        });
        let mut sim = simulation_with_epoch(config, Some(30));
        sim.run_until(5_000);
        let r = sim.report();
        safe(&r)?;
        for i in 0..4 {
            let replica = sim.replica(i).ok_or("replica stopped")?;
            ensure(replica.epoch() == 1, || {
                format!("instance {i} is in epoch {}", replica.epoch())
            })?;
            let behind = r.height - replica.committed().height;
            ensure(behind <= 5, || {
                format!("instance {i} is {behind} blocks behind")
            })?;
        }
        ensure(r.height > 60, || format!("only {} blocks", r.height))?;
        // A client follows the set change: the certificate of block 30 names epoch 1.
        let set1 = sim.replica(0).unwrap().validators().clone();
        let set0 = ValidatorSet {
            epoch: 0,
            validators: set1.validators.clone(),
        };
        let disk = sim.disk(0);
        let end = disk
            .committed
            .iter()
            .find(|c| c.info.height == 30)
            .ok_or("no block 30")?;
        let next = end
            .certificate()
            .next_epoch(&set0, "sim-chain")
            .map_err(|e| e.to_string())?;
        ensure(next == set1, || "epoch change names another set".into())?;
        let later = disk
            .committed
            .iter()
            .find(|c| c.info.height == 50)
            .ok_or("no block 50")?;
        later
            .certificate()
            .verify(&set1, "sim-chain")
            .map_err(|e| e.to_string())?;
        ensure(
            later.certificate().verify(&set0, "sim-chain").is_err(),
            || "retired set accepted".into(),
        )?;
        // Messages of the retired epoch are refused.
        let (sender, old) = signed_proposal(&sim)?;
        let to = (sender + 1) % 4;
        expect(
            sim.inject(to, old.block.proposer, Message::Proposal(old.clone())),
            |e| *e == ConsensusError::WrongEpoch { got: 0, current: 1 },
            "proposal of the retired epoch",
        )?;
        expect(
            sim.inject(to, sim.key(sender).public(), sync_info(old.block.parent_qc)),
            |e| *e == ConsensusError::WrongEpoch { got: 0, current: 1 },
            "QC of the retired epoch",
        )
    });
}

#[test]
fn corrupted_messages_are_refused_and_never_panic() {
    for_each_seed(
        "corrupted_messages_are_refused_and_never_panic",
        4,
        |seed| {
            let mut config = SimConfig::new(seed, if seed % 2 == 0 { 4 } else { 7 });
            config.duration_ms = 10_000;
            config.faults.corrupt_percent = 5;
            config.heal_at_ms = Some(6_000);
            config.liveness_bound_ms = 4_000;
            let r = simulation(config).run();
            safe(&r)?;
            // Every corrupted copy was refused (or was a harmless duplicate of
            // something already known); the chain kept going.
            let refused: u64 = r.errors.values().sum();
            ensure(r.wire.corrupted > 0 && refused > 0, || {
                format!("corrupted {} refused {}", r.wire.corrupted, refused)
            })?;
            ensure(r.height >= 100, || format!("only {} blocks", r.height))?;
            eprintln!(
                "corrupted seed={seed}: {} copies flipped, refusals {:?}, height {}",
                r.wire.corrupted, r.errors, r.height
            );
            Ok(())
        },
    );
}

/// A vote by `voter` for a made-up block `id` of round `round`.
fn vote_for(sim: &Sim, voter: usize, round: u64, id: u8) -> Vote {
    let vote_data = VoteData {
        epoch: 0,
        block_id: Digest([id; 32]),
        round,
        height: round,
        parent_id: Digest([id.wrapping_add(1); 32]),
        parent_round: round - 1,
        info_hash: Digest([id.wrapping_add(2); 32]),
    };
    let ledger_info = LedgerInfo {
        chain_id: "sim-chain".into(),
        genesis_hash: Digest::ZERO,
        epoch: 0,
        commit: None,
        consensus_data_hash: vote_data.hash(),
    };
    Vote {
        signature: sim.key(voter).sign_digest(&ledger_info.digest()),
        vote_data,
        ledger_info,
    }
}

/// Double votes are refused and reported (double proposals: the twins test).
#[test]
fn equivocating_votes_are_reported() {
    for_each_seed("equivocating_votes_are_reported", 4, |seed| {
        let mut sim = simulation(SimConfig::new(seed, 4));
        sim.run_until(2_000);
        let to = 0;
        // Two different votes of one validator in one round.
        // The next round: nobody voted in it yet (virtual time stands still
        // while messages are injected).
        let round = sim.replica(to).ok_or("target stopped")?.round() + 1;
        let voter = (to + 1) % 4;
        let key = sim.key(voter).public();
        let first = vote_for(&sim, voter, round, 1);
        let again = first.clone();
        let other = vote_for(&sim, voter, round, 9);
        let counted = sim.inject(to, key, Message::Vote(first));
        ensure(counted.is_ok(), || format!("the first vote: {counted:?}"))?;
        ensure(sim.inject(to, key, Message::Vote(again)).is_ok(), || {
            "the same vote again is not equivocation".into()
        })?;
        expect(
            sim.inject(to, key, Message::Vote(other)),
            |e| {
                *e == ConsensusError::Equivocation {
                    key,
                    round,
                    kind: "vote",
                }
            },
            "a second, different vote in the round",
        )?;
        safe(&sim.report())
    });
}
