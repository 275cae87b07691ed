//! Byzantine test modes: a node that lies on purpose, so that testnets and
//! fault scenarios can show clients and honest nodes rejecting or routing
//! around it. Configured as `byzantine = ["forge-lookups", ...]` in the node
//! config (and `palisade-testnet up --byzantine I:MODE`); never set outside
//! fault-injection testnets. Each mode is a lie one node can tell; none of
//! them changes what the node signs as a validator.

use serde::{Deserialize, Serialize};

/// One way a Byzantine node lies. The names are the config and CLI spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ByzantineMode {
    /// Answer lookups with altered records (every endpoint's port moved) and
    /// the honest proof, which then no longer matches.
    ForgeLookups,
    /// Serve the state at the oldest stored certificate as each fresh watch
    /// update (a validly certified but old state replayed as new).
    ReplayWatch,
    /// Answer every watch stream with an immediate `cutoff`.
    CutWatch,
    /// Keep every watch stream open with keepalives only, never an event.
    StallWatch,
    /// Answer account queries with a next sequence of `u64::MAX - 1` (the
    /// proof of the committed sequence stays honest).
    LieAccounts,
    /// Answer receipts with the opposite outcome ("applied" for a rejected
    /// transaction and the reverse), beside the honest inclusion proof.
    ClaimOutcomes,
    /// Answer every submission with "pending", never admit or gossip it,
    /// and answer receipt polls with "pending" too.
    PendingForever,
    /// Export (cross-DC link) answers carry a certificate whose committed
    /// state root is altered, so its signatures no longer verify.
    ForgeCheckpoint,
    /// Export answers carry the certificate of an older certified height: a
    /// head request shows an old head, a delta claims the newest height
    /// with the old certificate.
    StaleCheckpoint,
    /// Export deltas and snapshot pages leave out their first changed leaf.
    OmitChange,
    /// Export deltas and snapshot pages alter their first leaf's value.
    AlterChange,
    /// Send namespace watch streams no change at all, only `synced` events
    /// (with their honest proofs): every change is withheld.
    OmitWatch,
}

impl ByzantineMode {
    /// Every mode, for help texts and tests.
    pub const ALL: &'static [ByzantineMode] = &[
        ByzantineMode::ForgeLookups,
        ByzantineMode::ReplayWatch,
        ByzantineMode::CutWatch,
        ByzantineMode::StallWatch,
        ByzantineMode::LieAccounts,
        ByzantineMode::ClaimOutcomes,
        ByzantineMode::PendingForever,
        ByzantineMode::ForgeCheckpoint,
        ByzantineMode::StaleCheckpoint,
        ByzantineMode::OmitChange,
        ByzantineMode::AlterChange,
        ByzantineMode::OmitWatch,
    ];

    /// The config and CLI name (`forge-lookups`).
    pub fn name(self) -> &'static str {
        match self {
            ByzantineMode::ForgeLookups => "forge-lookups",
            ByzantineMode::ReplayWatch => "replay-watch",
            ByzantineMode::CutWatch => "cut-watch",
            ByzantineMode::StallWatch => "stall-watch",
            ByzantineMode::LieAccounts => "lie-accounts",
            ByzantineMode::ClaimOutcomes => "claim-outcomes",
            ByzantineMode::PendingForever => "pending-forever",
            ByzantineMode::ForgeCheckpoint => "forge-checkpoint",
            ByzantineMode::StaleCheckpoint => "stale-checkpoint",
            ByzantineMode::OmitChange => "omit-change",
            ByzantineMode::AlterChange => "alter-change",
            ByzantineMode::OmitWatch => "omit-watch",
        }
    }
}

impl std::fmt::Display for ByzantineMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ByzantineMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ByzantineMode::ALL
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = ByzantineMode::ALL.iter().map(|m| m.name()).collect();
                format!("unknown Byzantine mode {s:?} (known: {})", known.join(", "))
            })
    }
}

/// The set of modes a node runs with (empty for an honest node).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Byzantine(Vec<ByzantineMode>);

impl Byzantine {
    /// A node lying in the given ways.
    pub(crate) fn new(modes: &[ByzantineMode]) -> Self {
        let mut v = modes.to_vec();
        v.sort();
        v.dedup();
        Byzantine(v)
    }

    /// Whether this node lies in this way.
    pub(crate) fn has(&self, mode: ByzantineMode) -> bool {
        self.0.contains(&mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_config_and_cli_spelling() {
        for m in ByzantineMode::ALL {
            assert_eq!(m.name().parse::<ByzantineMode>(), Ok(*m));
            let json = serde_json::to_string(m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
        }
        let err = "forge".parse::<ByzantineMode>().unwrap_err();
        assert!(err.contains("forge-lookups"), "{err}");
    }
}
