//! Config parsing: defaults, and errors that name the field.

use palisade_node::{ConfigError, NodeConfig};

const MINIMAL: &str = r#"
data_dir = "data"
key_file = "node.key"
genesis_file = "genesis.json"
"#;

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = NodeConfig::from_toml(MINIMAL).unwrap();
    assert_eq!(c.listen_api, "127.0.0.1:7100");
    assert_eq!(c.consensus.round_timeout_ms, 1000);
    assert_eq!(c.probes.interval_secs, 5);
    assert_eq!(c.probes.backoff_base_secs, 10);
    assert!(!c.fault_injection);
    let again = NodeConfig::from_toml(&c.to_toml()).unwrap();
    assert_eq!(again, c, "to_toml round-trips");
}

fn field_of(text: &str) -> String {
    match NodeConfig::from_toml(text).unwrap_err() {
        ConfigError::Invalid { field, .. } => field.to_string(),
        ConfigError::Parse(msg) => msg,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bad_values_name_their_field() {
    assert_eq!(
        field_of(&format!("{MINIMAL}listen_api = \"nowhere\"")),
        "listen_api"
    );
    assert_eq!(
        field_of(&format!("{MINIMAL}listen_p2p = \"tcp:7000\"")),
        "listen_p2p"
    );
    assert_eq!(
        field_of(&format!("{MINIMAL}[consensus]\nround_timeout_ms = 1")),
        "consensus.round_timeout_ms"
    );
    assert_eq!(
        field_of(&format!(
            "{MINIMAL}[consensus]\nround_timeout_ms = 100\ncommit_linger_ms = 100"
        )),
        "consensus.commit_linger_ms"
    );
    assert_eq!(
        field_of(&format!(
            "{MINIMAL}[mempool]\nmax_txs = 10\nmax_per_signer = 11"
        )),
        "mempool.max_per_signer"
    );
    let typo = field_of(&format!("{MINIMAL}[api]\nwatch_bufer = 3"));
    assert!(
        typo.contains("watch_bufer"),
        "unknown field is named: {typo}"
    );
    let wrong_type = field_of(&format!("{MINIMAL}[probes]\ninterval_secs = \"five\""));
    assert!(
        wrong_type.contains("interval_secs"),
        "mistyped field is named: {wrong_type}"
    );
    let missing = field_of("data_dir = \"d\"\nkey_file = \"k\"");
    assert!(
        missing.contains("genesis_file"),
        "missing field is named: {missing}"
    );
}
