//! Planted bugs for the simulator's mutation check (feature `mutation`).
//!
//! A simulator that passes with a safety rule removed is not testing that
//! rule (Twins, Bano et al. 2020, §6 found planted bugs this way). With the
//! `mutation` feature, `Mutation::arm` names the rules the core then
//! skips, process-wide, once. Only the simulator's command arms them (from
//! `PALISADE_MUTATION`, `palisade-testnet sim`); this crate never reads the
//! environment outside its own unit tests, so a node linked against a core
//! built with the feature (a workspace `--all-features` build) still runs
//! every rule: nothing in a node arms a mutation. Without the feature
//! [`active`] is a constant `false` and every guarded rule compiles to
//! exactly the unmutated code.

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

    /// Parse a comma-separated list of rule names (`lock,tc-high-qc`); an
    /// unknown name is an error (a typo must not run the unmutated core).
    pub fn parse_list(names: &str) -> Result<Vec<Mutation>, String> {
        names
            .split(',')
            .filter(|n| !n.is_empty())
            .map(|name| Mutation::parse(name).ok_or_else(|| format!("no mutation named {name:?}")))
            .collect()
    }

    /// Disable `rules` in this process (feature `mutation`). Once per
    /// process: `false` (and nothing changes) if rules were armed already
    /// or [`Mutation::selected`] was read before. Only the simulator calls
    /// it; see the module docs.
    #[cfg(feature = "mutation")]
    pub fn arm(rules: &[Mutation]) -> bool {
        SELECTED.set(rules.to_vec()).is_ok()
    }

    /// The mutations this process runs with: the rules armed by
    /// `Mutation::arm` (none unless the `mutation` feature is on and the
    /// simulator armed some). This crate's own unit tests take them from
    /// `PALISADE_MUTATION` (`scripts/mutations.sh` checks the lock's unit
    /// test that way); those test builds are never a node.
    pub fn selected() -> &'static [Mutation] {
        #[cfg(feature = "mutation")]
        {
            #[cfg(test)]
            if SELECTED.get().is_none() {
                let names = std::env::var("PALISADE_MUTATION").unwrap_or_default();
                let _ = SELECTED.set(Mutation::parse_list(&names).unwrap_or_default());
            }
            SELECTED.get_or_init(Vec::new)
        }
        #[cfg(not(feature = "mutation"))]
        {
            &[]
        }
    }
}

#[cfg(feature = "mutation")]
static SELECTED: std::sync::OnceLock<Vec<Mutation>> = std::sync::OnceLock::new();

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
        assert_eq!(
            Mutation::parse_list("lock,tc-high-qc"),
            Ok(vec![Mutation::Lock, Mutation::TcHighQc])
        );
        assert!(Mutation::parse_list("lock,lokc").is_err());
        assert_eq!(Mutation::parse_list(""), Ok(vec![]));
    }
}
