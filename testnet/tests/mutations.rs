//! The mutation check's regression tests (only with `--features mutation`):
//! each safety rule of the core, disabled in a child process through
//! `PALISADE_MUTATION`, makes its first catch of `scripts/mutations.sh`
//! (a named fork schedule or a swarm/Twins seed) report a violation, and the
//! 2-chain lock alone, an equivalent mutant (audits/THREAT_MODEL.md), does
//! not. Without the mutation every one of these runs is safe (the
//! `sim_swarm` tests run them in every CI build).
//!
//! `cargo test -p palisade-testnet --features mutation --test mutations`

use std::process::Command;

use palisade_consensus::hotstuff::Mutation;
use palisade_testnet::sim::swarm::{draw, draw_twins, run_plan};

/// Run `palisade-testnet sim ARGS` with `rule` disabled; its stdout and
/// whether it exited zero.
fn sim(rule: &str, args: &[&str]) -> (String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-testnet"))
        .arg("sim")
        .args(args)
        .env("PALISADE_MUTATION", rule)
        .env("RUST_LOG", "off")
        .output()
        .expect("palisade-testnet runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for name in rule.split(',') {
        assert!(
            stdout.contains(&format!("mutation: {name} disabled")),
            "the binary was not built with the mutation feature: {stdout}"
        );
    }
    (stdout, out.status.success())
}

fn caught(rule: &str, args: &[&str], violation: &str) {
    let (stdout, ok) = sim(rule, args);
    assert!(
        !ok && stdout.contains("FAILED") && stdout.contains(violation),
        "{rule} disabled, `sim {}` should report {violation}:\n{stdout}",
        args.join(" ")
    );
}

fn seed(from: &str, twins: bool) -> Vec<&str> {
    let mut args = vec!["swarm", "--from", from, "--seeds", "1", "--progress", "0"];
    if twins {
        args.insert(1, "--twins");
    }
    args
}

#[test]
fn tc_high_qc_off_forks_its_schedule_and_twins_seed_33() {
    caught(
        "tc-high-qc",
        &["schedule", "tc-high-qc-fork"],
        "ConflictingCommit",
    );
    caught("tc-high-qc", &seed("33", true), "ConflictingCommit");
}

#[test]
fn timeout_off_forks_its_schedule_and_twins_seed_4() {
    caught(
        "timeout",
        &["schedule", "timeout-fork"],
        "ConflictingCommit",
    );
    caught("timeout", &seed("4", true), "ConflictingCommit");
}

#[test]
fn vote_once_off_forks_swarm_seed_28() {
    caught("vote-once", &seed("28", false), "ConflictingCommit");
}

#[test]
fn exec_root_off_commits_a_wrong_root_in_swarm_seed_24() {
    caught("exec-root", &seed("24", false), "WrongExecution");
}

#[test]
fn lock_off_alone_is_safe_where_the_others_fork() {
    for args in [
        vec!["schedule"],
        seed("33", true),
        seed("4", true),
        seed("28", false),
    ] {
        let (stdout, ok) = sim("lock", &args);
        assert!(
            ok,
            "the lock alone forked `sim {}`: the equivalence argument is wrong\n{stdout}",
            args.join(" ")
        );
    }
    caught(
        "lock,tc-high-qc",
        &["schedule", "tc-high-qc-fork"],
        "ConflictingCommit",
    );
}

/// The environment alone disables nothing: this test binary links the core
/// built with the `mutation` feature and never arms it, as a node of a
/// workspace `--all-features` build does. With every rule named in
/// `PALISADE_MUTATION`, the seeds that catch each rule in the simulator's
/// command (which arms them) stay safe in-process.
#[test]
fn the_environment_alone_disables_no_rule_in_a_mutation_build() {
    std::env::set_var(
        "PALISADE_MUTATION",
        "vote-once,timeout,tc-high-qc,exec-root",
    );
    assert_eq!(Mutation::selected(), &[] as &[Mutation]);
    for (seed, twins) in [(33, true), (4, true), (28, false), (24, false)] {
        let plan = if twins { draw_twins(seed) } else { draw(seed) };
        if let Err(e) = run_plan(&plan) {
            panic!("seed {seed} (twins: {twins}) obeyed the environment: {e}");
        }
    }
}
