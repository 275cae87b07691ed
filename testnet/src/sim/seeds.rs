//! Running a scenario over many seeds, with a one-line replay on failure.
//!
//! `SIM_SEED=N` runs exactly seed N; `SIM_SEEDS=K` runs K seeds instead of the
//! scenario's default count (seeds 0..K, offset by `SIM_SEED_BASE` if set).

/// Run `scenario` for each seed; on the first failure panic with the seed
/// and the command that replays it.
pub fn for_each_seed(
    test: &str,
    default_seeds: u64,
    mut scenario: impl FnMut(u64) -> Result<(), String>,
) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let base = env("SIM_SEED_BASE").unwrap_or(0);
            (base..base + env("SIM_SEEDS").unwrap_or(default_seeds)).collect()
        }
    };
    for seed in seeds {
        if let Err(reason) = scenario(seed) {
            panic!(
                "{test} failed for seed {seed}: {reason}\nreplay: SIM_SEED={seed} cargo nextest run -p palisade-testnet {test}"
            );
        }
    }
}
