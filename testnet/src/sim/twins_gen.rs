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

use super::RoundPartition;

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

/// Round partitions and leader schedule of scenario `index` in
/// [`twins_space`]`(twin)` over rounds `1..=rounds`.
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
            _ => out.push(RoundPartition {
                from_round: round,
                to_round: round,
                groups: groups.clone(),
            }),
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
            _ => out.push(RoundPartition {
                from_round: round,
                to_round: round,
                groups: pick.clone(),
            }),
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
