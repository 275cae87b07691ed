//! Fuzz target for node config files (proptest on stable): arbitrary text
//! and structured mutations of `deploy/palisade-node.toml` and of a config
//! the node writes (`NodeConfig::to_toml`). Parsing and validating must never
//! panic; what parses writes back to a config that parses to the same value.
//! `FUZZ_CASES` sets the case count (default 2,000).

use palisade_node::NodeConfig;
use proptest::prelude::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/palisade-node.toml");

fn seeds() -> Vec<String> {
    let example = std::fs::read_to_string(EXAMPLE).expect("the example config");
    let mut written = NodeConfig::new("data".into(), "node.key".into(), "genesis.json".into());
    written.network_file = Some("network.json".into());
    vec![example, written.to_toml()]
}

fn mutate(seed: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut b = seed.as_bytes().to_vec();
    for &(at, kind, v) in edits {
        let at = at % (b.len() + 1);
        match kind % 4 {
            0 if at < b.len() => b[at] = v,
            1 => b.insert(at, v),
            2 if at < b.len() => {
                b.remove(at);
            }
            // TOML's structural bytes and digits, where most parsers break.
            3 => b.insert(at, b"\n=[]\"'.#,{}0-9"[v as usize % 14]),
            _ => {}
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn input() -> impl Strategy<Value = String> {
    let seeds = seeds();
    let n = seeds.len();
    prop_oneof![
        ".{0,256}",
        (
            0..n,
            prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
        )
            .prop_map(move |(i, edits)| mutate(&seeds[i], &edits)),
    ]
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn config_seeds_are_real() {
    for seed in seeds() {
        NodeConfig::from_toml(&seed).expect("seed config parses");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fuzz_node_config(text in input()) {
        if let Ok(config) = NodeConfig::from_toml(&text) {
            let _ = config.validate();
            let _ = config.p2p_multiaddr();
            let _ = config.api_socket_addr();
            let again = NodeConfig::from_toml(&config.to_toml());
            prop_assert_eq!(again.ok(), Some(config));
        }
    }
}
