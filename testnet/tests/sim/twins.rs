//! Twins (Bano et al. 2020): a twin is a second instance with a validator's
//! key running the same code, so equivocating leaders and double votes arise
//! whenever the twins see different things (random per-round partitions).

use palisade_testnet::sim::{for_each_seed, RoundPartition, SimConfig, Violation};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{ensure, safe, simulation};

/// Random partitions of `instances` for rounds 1..`rounds`, each for 1-4 rounds.
fn random_round_partitions(
    rng: &mut ChaCha8Rng,
    instances: usize,
    rounds: u64,
) -> Vec<RoundPartition> {
    let mut out = Vec::new();
    let mut round = 1;
    while round < rounds {
        let len = rng.gen_range(1..=4);
        let groups_n = rng.gen_range(1..=3);
        let mut groups = vec![Vec::new(); groups_n];
        for i in 0..instances {
            groups[rng.gen_range(0..groups_n)].push(i);
        }
        out.push(RoundPartition::new(round, round + len - 1, groups));
        round += len;
    }
    out
}

#[test]
fn twins_f_equivocating_is_safe() {
    for_each_seed("twins_f_equivocating_is_safe", 16, |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7715);
        let (n, twins) = if seed % 2 == 0 {
            (4, vec![0])
        } else {
            (7, vec![0, 1])
        };
        let instances = n + twins.len();
        let mut c = SimConfig::new(seed, n);
        c.twins = twins;
        c.duration_ms = 15_000;
        c.heal_at_ms = Some(6_000);
        c.liveness_bound_ms = 8_000;
        c.round_partitions = random_round_partitions(&mut rng, instances, 120);
        let r = simulation(c).run();
        safe(&r)?;
        eprintln!(
            "twins n={n} seed={seed}: height {} rounds {}, {} equivocating proposals, {} double votes, {} refused as equivocation",
            r.height,
            r.max_round,
            r.wire.equivocations,
            r.wire.double_votes,
            r.errors.get("Equivocation").copied().unwrap_or(0)
        );
        // The twins did say two things under one key: the run tested something.
        ensure(r.wire.equivocations + r.wire.double_votes > 0, || {
            "the twins never equivocated".into()
        })?;
        ensure(r.height >= 20, || {
            format!("only {} blocks committed", r.height)
        })?;
        Ok(())
    });
}

/// A twin on a connected network proposes its own block whenever its key
/// leads: honest replicas accept the first and refuse the second as
/// equivocation (a typed, counted reason), and safety holds.
#[test]
fn twin_proposals_are_refused_as_equivocation() {
    for_each_seed("twin_proposals_are_refused_as_equivocation", 4, |seed| {
        let mut c = SimConfig::new(seed, 4);
        c.twins = vec![0];
        c.duration_ms = 3_000;
        let r = simulation(c).run();
        safe(&r)?;
        let refused = r.errors.get("Equivocation").copied().unwrap_or(0);
        ensure(r.wire.equivocations > 0 && refused > 0, || {
            format!(
                "{} equivocating proposals sent, {refused} refused as equivocation",
                r.wire.equivocations
            )
        })
    });
}

#[test]
fn checker_sees_the_fork_of_f_plus_1_twins() {
    for_each_seed("checker_sees_the_fork_of_f_plus_1_twins", 4, |seed| {
        // 4 validators, f = 1; validators 0 and 1 have twins (instances 4, 5).
        // Each side of the split holds three keys: a quorum each.
        let mut c = SimConfig::new(seed, 4);
        c.twins = vec![0, 1];
        c.duration_ms = 3_000;
        c.round_partitions = vec![RoundPartition::new(
            0,
            u64::MAX,
            vec![vec![0, 1, 2], vec![4, 5, 3]],
        )];
        let r = simulation(c).run();
        let forked = r
            .violations
            .iter()
            .any(|v| matches!(v, Violation::ConflictingCommit { .. }));
        ensure(forked, || {
            format!(
                "f+1 twins did not fork, or the checker missed it: {:?}",
                r.violations
            )
        })
    });
}
