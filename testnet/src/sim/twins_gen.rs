//! Twins scenario generation (Bano et al. 2020, §4): enumerate the ways to
//! partition the instances and the leader of a round, then build a scenario
//! as one (partition, leader) pair per round over the first rounds, and
//! sample scenarios from that space by index.
//!
//! For n = 4 with one twin there are 5 instances; their partitions into at
//! most 3 groups number 1 + 15 + 25 = 41. As in the paper, only partitions
//! where some group holds a quorum of distinct keys are kept (others cannot
//! finish a round, and a round-indexed partition would then last for ever):
//! 20 of them for any twin. With 4 leaders that is 80 choices per round, so
//! R rounds span 80^R scenarios. The leader of a scenario round is imposed
//! through `Config::leader_schedule` (a test-only hook of the core).

use super::{Link, RoundPartition};

/// Every partition of `instances` into at most `max_groups` non-empty
/// groups, in a fixed order (restricted growth strings, lexicographic).
pub fn partitions(instances: usize, max_groups: usize) -> Vec<Vec<Vec<usize>>> {
    let mut out = Vec::new();
    let mut label = vec![0usize; instances];
    fill(&mut label, 0, 0, max_groups.max(1), &mut out);
    out
}

fn fill(
    label: &mut [usize],
    at: usize,
    used: usize,
    max_groups: usize,
    out: &mut Vec<Vec<Vec<usize>>>,
) {
    if at == label.len() {
        let mut groups = vec![Vec::new(); used];
        for (i, g) in label.iter().enumerate() {
            groups[*g].push(i);
        }
        out.push(groups);
        return;
    }
    let limit = if at == 0 {
        1
    } else {
        (used + 1).min(max_groups)
    };
    for g in 0..limit {
        label[at] = g;
        fill(label, at + 1, used.max(g + 1), max_groups, out);
    }
}

/// The per-round choices for n = 4 with validator `twin` doubled (instance
/// 4 holds its key): partitions of the 5 instances into at most 3 groups
/// with a quorum (3 distinct keys) in one group, times the 4 leaders.
pub fn twins_space(twin: usize) -> Vec<(Vec<Vec<usize>>, usize)> {
    let key = |i: usize| if i == 4 { twin } else { i };
    let quorate = |groups: &Vec<Vec<usize>>| {
        groups.iter().any(|g| {
            let mut keys: Vec<usize> = g.iter().map(|i| key(*i)).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.len() >= 3
        })
    };
    partitions(5, 3)
        .into_iter()
        .filter(quorate)
        .flat_map(|p| (0..4).map(move |leader| (p.clone(), leader)))
        .collect()
}

/// One round of a Twins scenario: who hears whom, who leads, and which
/// messages arrive late instead of on time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinsRound {
    /// Groups of instances; a message sent in this round reaches only its
    /// sender's group (the Twins partition).
    pub groups: Vec<Vec<usize>>,
    /// Validator index that leads the round.
    pub leader: usize,
    /// Instances whose messages of this round to `late_to` arrive
    /// [`TwinsScenario::late_ms`] late (whatever the groups say).
    pub late_from: Vec<usize>,
    /// Instances that receive `late_from`'s messages late.
    pub late_to: Vec<usize>,
}

impl TwinsRound {
    /// All instances in one group, led by `leader`, nothing late.
    pub fn connected(instances: usize, leader: usize) -> Self {
        TwinsRound {
            groups: vec![(0..instances).collect()],
            leader,
            late_from: Vec::new(),
            late_to: Vec::new(),
        }
    }
}

/// A Twins scenario: one [`TwinsRound`] for each of rounds `1..=len`; later
/// rounds run on a connected network under the leader election.
///
/// Late messages extend the paper's round partitions with the one thing
/// they cannot say: that a message arrives after its receiver timed out
/// (a partition drops a message; with a round-indexed partition a receiver
/// then never sees it). A proposal that arrives after its voter timed out is
/// the schedule that tests the timeout rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinsScenario {
    /// Rounds `1..=rounds.len()`.
    pub rounds: Vec<TwinsRound>,
    /// How late a late message is (ms beyond the network's own delay).
    pub late_ms: u64,
}

impl TwinsScenario {
    /// Round partitions, leaders and linear votes of this scenario into `config`.
    ///
    /// Votes go to the next leader only (the paper's DiemBFT setting, and
    /// Jolteon's linear path): with votes broadcast, every voter of a round
    /// hears every vote of its group, and a QC formed by one replica only
    /// (the schedule that tests the lock and the TC rules) cannot be
    /// built from partitions alone.
    pub fn apply(&self, config: &mut crate::sim::SimConfig) {
        config.consensus.broadcast_votes = false;
        config.consensus.leader_schedule = self.rounds.iter().map(|r| r.leader).collect();
        config.round_partitions = self
            .rounds
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let round = i as u64 + 1;
                let mut p = RoundPartition::new(round, round, r.groups.clone());
                for &from in &r.late_from {
                    for &to in r.late_to.iter().filter(|to| **to != from) {
                        p.links.push(Link {
                            from,
                            to,
                            late_ms: Some(self.late_ms),
                        });
                    }
                }
                p
            })
            .collect();
    }

    /// One line: per round, its leader, groups and late messages, e.g.
    /// `r3 L3 [01234] late 034>124`.
    pub fn describe(&self) -> String {
        let digits = |v: &[usize]| v.iter().map(|i| i.to_string()).collect::<String>();
        self.rounds
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let groups: Vec<String> = r.groups.iter().map(|g| digits(g)).collect();
                let mut s = format!("r{} L{} [{}]", i + 1, r.leader, groups.join(" "));
                if !r.late_from.is_empty() && !r.late_to.is_empty() {
                    s.push_str(&format!(
                        " late {}>{}",
                        digits(&r.late_from),
                        digits(&r.late_to)
                    ));
                }
                s
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Sample a scenario of `rounds` rounds for n = 4 with validator `twin`
    /// doubled: each round one (partition, leader) of [`twins_space`],
    /// uniformly, and with probability `late_percent` a late set (each
    /// instance a late sender with probability 1/2, each a late receiver
    /// with probability 1/2).
    pub fn sample(
        twin: usize,
        rounds: u64,
        late_percent: u32,
        late_ms: u64,
        rng: &mut impl rand::Rng,
    ) -> Self {
        let space = twins_space(twin);
        let rounds = (0..rounds)
            .map(|_| {
                let (groups, leader) = space[rng.gen_range(0..space.len())].clone();
                let mut round = TwinsRound {
                    groups,
                    leader,
                    late_from: Vec::new(),
                    late_to: Vec::new(),
                };
                if rng.gen_range(0..100) < late_percent {
                    round.late_from = (0..5).filter(|_| rng.gen_bool(0.5)).collect();
                    round.late_to = (0..5).filter(|_| rng.gen_bool(0.5)).collect();
                }
                round
            })
            .collect();
        TwinsScenario { rounds, late_ms }
    }
}

impl TwinsScenario {
    /// A scenario like `base` (written for validator 0 doubled): its
    /// validators relabelled by a random permutation (the twin becomes
    /// validator `twin_of[0]`, returned), its late delay drawn in
    /// 1.2-2.4 s, and sampled rounds (`late_percent` late) after its own up
    /// to `rounds`. This is how the swarm reaches schedules like the named
    /// fork schedules, which uniform sampling of the 80^8 space almost never
    /// builds: the timeout fork needs two rounds of precise late sets.
    pub fn near(
        base: &TwinsScenario,
        rounds: u64,
        late_percent: u32,
        rng: &mut impl rand::Rng,
    ) -> (usize, Self) {
        let mut perm = [0usize, 1, 2, 3];
        for i in (1..4).rev() {
            perm.swap(i, rng.gen_range(0..=i));
        }
        let map = |i: &usize| if *i < 4 { perm[*i] } else { *i };
        let mut out: Vec<TwinsRound> = base
            .rounds
            .iter()
            .map(|r| TwinsRound {
                groups: r
                    .groups
                    .iter()
                    .map(|g| g.iter().map(map).collect())
                    .collect(),
                leader: perm[r.leader],
                late_from: r.late_from.iter().map(map).collect(),
                late_to: r.late_to.iter().map(map).collect(),
            })
            .collect();
        let twin = perm[0];
        let extra = rounds.saturating_sub(out.len() as u64);
        out.extend(TwinsScenario::sample(twin, extra, late_percent, 0, rng).rounds);
        let late_ms = rng.gen_range(1_200..2_400);
        (
            twin,
            TwinsScenario {
                rounds: out,
                late_ms,
            },
        )
    }
}

/// Round partitions and leader schedule of scenario `index` in
/// [`twins_space`]`(twin)` over rounds `1..=rounds` (no late messages).
pub fn twins_scenario(twin: usize, rounds: u64, index: u128) -> (Vec<RoundPartition>, Vec<usize>) {
    let space = twins_space(twin);
    let base = space.len() as u128;
    let mut index = index;
    let mut partitions = Vec::new();
    let mut leaders = Vec::new();
    for _ in 0..rounds {
        let (groups, leader) = &space[(index % base) as usize];
        index /= base;
        partitions.push(groups.clone());
        leaders.push(*leader);
    }
    (scenario_of(&partitions), leaders)
}

fn scenario_of(per_round: &[Vec<Vec<usize>>]) -> Vec<RoundPartition> {
    let mut out: Vec<RoundPartition> = Vec::new();
    for (i, groups) in per_round.iter().enumerate() {
        let round = i as u64 + 1;
        match out.last_mut() {
            Some(last) if last.groups == *groups => last.to_round = round,
            _ => out.push(RoundPartition::new(round, round, groups.clone())),
        }
    }
    out
}

/// Scenario number `index` of the space "one of `space` per round, rounds
/// `1..=rounds`": round r gets partition `(index / |space|^(r-1)) mod |space|`
/// (the index in mixed radix). Consecutive equal partitions are merged.
pub fn scenario(space: &[Vec<Vec<usize>>], rounds: u64, mut index: u128) -> Vec<RoundPartition> {
    let base = space.len().max(1) as u128;
    let mut out: Vec<RoundPartition> = Vec::new();
    for round in 1..=rounds {
        let pick = &space[(index % base) as usize];
        index /= base;
        match out.last_mut() {
            Some(last) if last.groups == *pick && last.to_round + 1 == round => {
                last.to_round = round;
            }
            _ => out.push(RoundPartition::new(round, round, pick.clone())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_instances_into_three_groups_is_41() {
        let p = partitions(5, 3);
        assert_eq!(p.len(), 41);
        // Each is a partition: every instance in exactly one group.
        for groups in &p {
            let mut all: Vec<usize> = groups.concat();
            all.sort_unstable();
            assert_eq!(all, vec![0, 1, 2, 3, 4]);
            assert!(groups.iter().all(|g| !g.is_empty()));
        }
        let mut distinct = p.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), 41);
        assert_eq!(partitions(4, 2).len(), 8);
    }

    #[test]
    fn twins_space_keeps_quorate_partitions_with_every_leader() {
        for twin in 0..4 {
            let space = twins_space(twin);
            assert_eq!(space.len(), 20 * 4, "twin {twin}");
        }
        let (parts, leaders) = twins_scenario(0, 5, 3 + 80 * 70);
        assert_eq!(leaders, vec![3, 2, 0, 0, 0]);
        assert_eq!(parts.first().map(|p| p.from_round), Some(1));
        assert_eq!(parts.last().map(|p| p.to_round), Some(5));
    }

    #[test]
    fn scenario_index_is_mixed_radix() {
        let space = partitions(3, 2); // 4 partitions
        let s = scenario(&space, 3, 1 + 4 * 2 + 16 * 2);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].from_round, s[0].to_round), (1, 1));
        assert_eq!(s[0].groups, space[1]);
        assert_eq!((s[1].from_round, s[1].to_round), (2, 3));
        assert_eq!(s[1].groups, space[2]);
    }
}
