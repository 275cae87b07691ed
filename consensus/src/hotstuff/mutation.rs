//! Planted bugs for the simulator's mutation check (feature `mutation`).
//!
//! A simulator that passes with a safety rule removed is not testing that
//! rule (Twins, Bano et al. 2020, §6 found planted bugs this way). With the
//! `mutation` feature, the environment variable `PALISADE_MUTATION` names
//! one rule ([`Mutation::name`]), or several separated by commas, that the
//! core then skips, process-wide, read once. Without the feature [`active`] is a constant `false` and every
//! guarded rule compiles to exactly the unmutated code.

/// One safety rule that can be disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutation {
    /// 2-chain lock: `SafetyState::check_vote` never refuses a QC below the
    /// preferred round.
    Lock,
    /// Vote once per round, with the proposal and vote equivocation guards off.
    VoteOnce,
    /// Timeout rules: a timeout is signed whatever the safety state says, and
    /// signing one no longer forbids voting in its round.
    Timeout,
    /// TC high-QC rule: a block justified by a TC may extend any QC, on the
    /// leader's side and the voter's.
    TcHighQc,
    /// Execute before vote: the voter's re-executed state root is not compared.
    ExecRoot,
}

impl Mutation {
    /// Every mutation, in the order the mutation script runs them.
    pub const ALL: [Mutation; 5] = [
        Mutation::Lock,
        Mutation::VoteOnce,
        Mutation::Timeout,
        Mutation::TcHighQc,
        Mutation::ExecRoot,
    ];

    /// The value of `PALISADE_MUTATION` that selects it.
    pub fn name(self) -> &'static str {
        match self {
            Mutation::Lock => "lock",
            Mutation::VoteOnce => "vote-once",
            Mutation::Timeout => "timeout",
            Mutation::TcHighQc => "tc-high-qc",
            Mutation::ExecRoot => "exec-root",
        }
    }

    /// The mutation named `name`, if any.
    pub fn parse(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The mutations this process runs with: `PALISADE_MUTATION` names one
    /// rule, or several separated by commas (rules that cover for each other,
    /// e.g. `lock,tc-high-qc`), when the `mutation` feature is on.
    pub fn selected() -> &'static [Mutation] {
        #[cfg(feature = "mutation")]
        {
            static SELECTED: std::sync::OnceLock<Vec<Mutation>> = std::sync::OnceLock::new();
            SELECTED.get_or_init(|| {
                let names = std::env::var("PALISADE_MUTATION").unwrap_or_default();
                names
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .filter_map(|name| {
                        let m = Mutation::parse(name);
                        if m.is_none() {
                            tracing::warn!(%name, "PALISADE_MUTATION names no mutation; ignored");
                        }
                        m
                    })
                    .collect()
            })
        }
        #[cfg(not(feature = "mutation"))]
        {
            &[]
        }
    }
}

/// Is rule `m` disabled in this process?
#[inline(always)]
pub(crate) fn active(m: Mutation) -> bool {
    cfg!(feature = "mutation") && Mutation::selected().contains(&m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mutation::ALL {
            assert_eq!(Mutation::parse(m.name()), Some(m));
        }
        assert_eq!(Mutation::parse("nothing"), None);
    }
}
