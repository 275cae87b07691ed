//! `palisade genesis new|verify` as an operator runs them: files written
//! once, checked, and a tampered network file refused.

use std::path::Path;
use std::process::{Command, Output};

use palisade_crypto::{NetworkFile, SecretKey};

fn palisade(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn genesis_new_writes_both_files_once_and_verify_checks_them() {
    let tmp = tempfile::tempdir().unwrap();
    let key = |i: u8| SecretKey::from_seed([i; 32]).public().to_hex();
    let validators: Vec<String> = (1..=4)
        .map(|i| format!("{}=/ip4/10.0.0.{i}/tcp/7000,http://10.0.0.{i}:7100", key(i)))
        .collect();
    let mut args = vec![
        "genesis",
        "new",
        "--chain-id",
        "prod-eu-1",
        "--datacenter",
        "eu-1",
    ];
    for v in &validators {
        args.extend(["--validator", v]);
    }
    let (a, b) = (key(20), key(21));
    args.extend(["--authority", &a, "--authority", &b, "--threshold", "2"]);
    args.extend(["--out", "ceremony"]);

    let o = palisade(&args, tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    let dir = tmp.path().join("ceremony");
    let network =
        NetworkFile::from_json(&std::fs::read_to_string(dir.join("network.json")).unwrap())
            .unwrap();
    assert!(text(&o).contains(&format!("genesis hash {}", network.genesis_hash)));
    assert_eq!(network.nodes.len(), 4);
    assert_eq!(network.datacenter, "eu-1");

    // Never overwritten.
    let again = palisade(&args, tmp.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("exists"), "{}", text(&again));

    let ok = palisade(&["genesis", "verify"], &dir);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("4 validators, authority 2 of 2"),
        "{}",
        text(&ok)
    );

    // A network file naming a node key that is not a genesis validator is refused.
    let mut forged = network.clone();
    forged.nodes[1].public_key = SecretKey::from_seed([99; 32]).public();
    std::fs::write(
        dir.join("network.json"),
        serde_json::to_string(&forged).unwrap(),
    )
    .unwrap();
    let bad = palisade(&["genesis", "verify"], &dir);
    assert_eq!(bad.status.code(), Some(1));
    assert!(text(&bad).contains("not a genesis validator") || text(&bad).contains("node entries"));

    // Bad input is refused with the reason.
    let o = palisade(
        &[
            "genesis",
            "new",
            "--chain-id",
            "x",
            "--datacenter",
            "d",
            "--validator",
            "nonsense",
            "--authority",
            &a,
            "--threshold",
            "1",
            "--out",
            "other",
        ],
        tmp.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("KEY=P2P_ADDR,API_URL"), "{}", text(&o));
    assert!(!tmp.path().join("other").exists());
}
