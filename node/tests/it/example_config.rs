//! `deploy/palisade-node.toml` documents every option the node reads and
//! loads as it is: an option added to `NodeConfig` without an entry in the
//! example fails here.

use palisade_node::NodeConfig;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/palisade-node.toml");

/// Dotted keys of a TOML table (`api.watch_buffer`).
fn keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => keys(&key, t, out),
            _ => out.push(key),
        }
    }
}

#[test]
fn the_example_config_loads_and_names_every_option() {
    let config = NodeConfig::load(std::path::Path::new(EXAMPLE)).expect("the example loads");
    assert_eq!(
        config.consensus,
        Default::default(),
        "the example shows the defaults"
    );
    assert_eq!(config.api, Default::default());
    assert_eq!(config.mempool, Default::default());
    assert_eq!(config.probes, Default::default());

    // Every field, with optional ones filled in so they serialize.
    let mut full = NodeConfig::new("d".into(), "k".into(), "g".into());
    full.network_file = Some("n".into());
    let mut known = Vec::new();
    keys("", &toml::from_str(&full.to_toml()).unwrap(), &mut known);
    known.push("peers".into());
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let example: toml::Table = toml::from_str(&text).unwrap();
    let mut set = Vec::new();
    keys("", &example, &mut set);
    for key in &known {
        let leaf = key.rsplit('.').next().unwrap();
        let documented = set.contains(key)
            || text
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("# [[{leaf}]]")));
        assert!(
            documented,
            "deploy/palisade-node.toml does not document {key}"
        );
    }
}
