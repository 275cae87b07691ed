//! Named fork schedules: Twins scenarios written by hand, each the shortest
//! schedule we found in which the chain forks when one safety rule of the
//! core is missing (and stays safe with every rule in place). They are
//! regression scenarios for the mutation check (`scripts/mutations.sh`) and
//! read like the paper's examples: n = 4, validator 0 doubled (instances 0
//! and 4 share its key), A = 1, B = 2, C = 3, votes to the next leader.
//!
//! Why each forks is argued step by step in `audits/THREAT_MODEL.md`
//! ("Mutation check"); `palisade-testnet sim schedule NAME` runs one.

use super::twins_gen::{TwinsRound, TwinsScenario};
use super::SimConfig;

/// A named schedule and the rule whose absence it exposes.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Its name (`sim schedule NAME`).
    pub name: &'static str,
    /// The `PALISADE_MUTATION` rule it catches.
    pub catches: &'static str,
    /// The scenario.
    pub scenario: TwinsScenario,
}

impl Schedule {
    /// The simulation of this schedule (seed 1, 2 transactions a block):
    /// the scenario's rounds, then a connected network until 6 s.
    pub fn config(&self) -> SimConfig {
        let mut config = SimConfig::new(1, 4);
        config.twins = vec![0];
        config.duration_ms = 6_000;
        self.scenario.apply(&mut config);
        config
    }
}

fn round(leader: usize, groups: &[&[usize]], late: (&[usize], &[usize])) -> TwinsRound {
    TwinsRound {
        groups: groups.iter().map(|g| g.to_vec()).collect(),
        leader,
        late_from: late.0.to_vec(),
        late_to: late.1.to_vec(),
    }
}

const NONE: (&[usize], &[usize]) = (&[], &[]);
const ALL: &[usize] = &[0, 1, 2, 3, 4];

/// Without the TC high-QC rule (leader and voter side), a leader that never
/// stored the block of the TC's high QC extends an older QC, and replicas
/// whose lock is only the *parent* round of that high QC vote for it.
///
/// - r1: A proposes P; votes go to X (both twins form QC(P)).
/// - r2: X's twin 0 proposes Bk to everyone but twin 4; votes go to B.
/// - r3: B proposes B' (extends QC(Bk)); all four vote; votes go to A
///   only, which forms QC(B') and commits Bk. Nobody else sees QC(B').
/// - r4: A is cut off; 0, B, C time out (high QC: QC(Bk)), form TC(3) and
///   time out in r4, all reaching twin 4, which never stored Bk.
/// - r5: twin 4 forms TC(4) (high QC: QC(Bk), block unknown) and proposes
///   B'' extending QC(P) at once; B and C (lock: Bk's parent round) vote.
/// - r6, r7: C and B extend B'' in consecutive rounds: B commits B'' at
///   Bk's height.
pub fn tc_high_qc_fork() -> Schedule {
    let rounds = vec![
        round(1, &[ALL], NONE),
        round(0, &[&[0, 1, 2, 3], &[4]], NONE),
        round(2, &[&[0, 1, 2, 3], &[4]], NONE),
        round(1, &[&[0, 2, 3, 4], &[1]], NONE),
        round(0, &[&[4, 2, 3], &[0, 1]], NONE),
        round(3, &[&[4, 2, 3], &[0, 1]], NONE),
        round(2, &[&[4, 2, 3], &[0, 1]], NONE),
    ];
    Schedule {
        name: "tc-high-qc-fork",
        catches: "tc-high-qc",
        scenario: TwinsScenario {
            rounds,
            late_ms: 1_500,
        },
    }
}

/// Without the timeout rules, a replica that timed out in a round (reporting
/// an old QC) still votes in it when the proposal arrives late; the TC
/// made of those timeouts then justifies a block that forks the one voted.
///
/// - r1, r2: connected. A proposes P; B proposes Bk; votes go to C, which
///   forms QC(Bk) and proposes B' at once.
/// - r3: B' (and everything C and twin 0 send) reaches A, B and twin 4
///   1.5 s late. A, B and twin 4 time out in r2 and r3 (high QC: QC(P));
///   twin 4 forms TC(3) from them and, leading r4, proposes B'' on QC(P).
///   Then B' reaches A and B, already timed out in r3: they vote for it
///   (the mutation); twin 0 forms QC(B') and tells C, which commits Bk.
/// - r4: B'' reaches A and B late, after B': they vote for it (TC(3)'s
///   high QC is QC(P), their lock Bk's parent round).
/// - r5, r6: A and B extend B'' in consecutive rounds; B commits it at
///   Bk's height.
pub fn timeout_fork() -> Schedule {
    let rounds = vec![
        round(1, &[ALL], NONE),
        round(2, &[ALL], NONE),
        round(3, &[ALL], (&[0, 3, 4], &[1, 2, 4])),
        round(0, &[&[0, 3], &[1, 2, 4]], (&[4], &[1, 2])),
        round(1, &[&[1, 2, 4], &[0, 3]], NONE),
        round(2, &[&[1, 2, 4], &[0, 3]], NONE),
        round(3, &[&[1, 2, 4], &[0, 3]], NONE),
    ];
    Schedule {
        name: "timeout-fork",
        catches: "timeout",
        scenario: TwinsScenario {
            rounds,
            late_ms: 1_500,
        },
    }
}

/// Every named schedule.
pub fn all() -> Vec<Schedule> {
    vec![tc_high_qc_fork(), timeout_fork()]
}

/// The schedule called `name`.
pub fn named(name: &str) -> Option<Schedule> {
    all().into_iter().find(|s| s.name == name)
}
