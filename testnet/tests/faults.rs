//! The bounded CI subset of the fault-injection suite, on real
//! `palisade-node` processes over 127.0.0.1: crash 1 of 4, partition and
//! heal, a node forging lookups, a node telling every lie it has a mode for,
//! an outsider flooding every public endpoint. Each scenario checks replica agreement per
//! height, that every acknowledged registration is present, and that lookups
//! verify. The whole suite: `palisade-testnet faults --scenario all`.
#![allow(clippy::print_stderr)] // the scenario table is the useful failure output

use palisade_testnet::faults::{
    node_binary_for_tests, run_scenario, scenarios, table, workspace_binary_for_tests,
    SuiteOptions, CI_SUBSET,
};

#[test]
fn ci_fault_scenarios_on_real_processes() {
    let exe = std::env::current_exe().expect("test binary path");
    let node_binary = node_binary_for_tests(&exe).expect("palisade-node binary");
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = std::env::var("FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let opts = SuiteOptions {
        base_dir: dir.path().to_path_buf(),
        node_binary,
        seed,
        writers: 2,
        audit_binary: Some(
            workspace_binary_for_tests(&exe, "palisade-audits", "palisade-audit")
                .expect("palisade-audit binary"),
        ),
    };
    let outcomes: Vec<_> = scenarios()
        .iter()
        .filter(|s| CI_SUBSET.contains(&s.name))
        .map(|s| run_scenario(s, &opts))
        .collect();
    assert_eq!(outcomes.len(), CI_SUBSET.len());
    let report = table(&outcomes);
    eprintln!("{report}");
    for o in &outcomes {
        assert!(
            o.violations.is_empty(),
            "scenario {} violated its invariants (replay: FAULTS_SEED={seed} cargo nextest run -p palisade-testnet --test faults):\n{report}",
            o.name
        );
        assert!(
            o.acked > 0,
            "scenario {} acknowledged no registration:\n{report}",
            o.name
        );
    }
}
