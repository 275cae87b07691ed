//! The `palisade` binary's submitting commands: exit 0 only once committed,
//! verified and confirmed; M-of-N enrollment; renewing leases.

use std::path::Path;

use crate::cli::{first_lines, palisade, stderr, stdout, write_network};
use crate::support::fixture::Chain;
use crate::support::{tx_node, TxBehavior};

fn key_file(dir: &Path, seed: u8) -> String {
    let path = dir.join(format!("k{seed}.key"));
    palisade_keys::write_key_file(&path, &palisade_crypto::SecretKey::from_seed([seed; 32]))
        .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn register_exits_zero_only_once_committed() {
    let chain = Chain::test();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), 30);
    let register = |url: &str| {
        let net = write_network(dir.path(), &chain, &[url.to_string()]);
        palisade(&[
            "register",
            "--network",
            &net,
            "--key",
            &key,
            "--namespace",
            "prod",
            "--service",
            "api",
            "--instance",
            "api-9",
            "--endpoint",
            "10.0.0.9:8080",
            "--label",
            "zone=b",
            "--ttl",
            "15",
            "--timeout",
            "1",
        ])
    };
    let (good, seen) = tx_node(chain.clone(), TxBehavior::Commit);
    let o = register(&good.url);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("registration committed"),
        "{}",
        stdout(&o)
    );
    match &seen.lock().unwrap()[0].tx.body {
        palisade_crypto::TxBody::Register(r) => {
            assert_eq!(
                (r.instance.as_str(), r.ttl_secs, r.endpoints[0].port),
                ("api-9", 15, 8080)
            );
            assert_eq!(r.labels[0].value, "b");
        }
        other => panic!("unexpected body {other:?}"),
    }

    let (refusing, _) = tx_node(chain.clone(), TxBehavior::Reject("not enrolled in prod"));
    let o = register(&refusing.url);
    assert_eq!(o.status.code(), Some(4));
    assert!(stderr(&o).contains("not enrolled in prod"));

    let (forging, _) = tx_node(chain.clone(), TxBehavior::ForgeReceipt);
    let o = register(&forging.url);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("forged receipt"));

    let (pretending, _) = tx_node(chain.clone(), TxBehavior::Pretend);
    let o = register(&pretending.url);
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("does not show instance api-9"),
        "{}",
        stderr(&o)
    );

    let (slow, _) = tx_node(chain.clone(), TxBehavior::AlwaysPending);
    let o = register(&slow.url);
    assert_eq!(o.status.code(), Some(5));
    assert!(stderr(&o).contains("timed out"));
}

#[test]
fn enroll_is_cosigned_by_every_authority_member_given() {
    let chain = Chain::test();
    let dir = tempfile::tempdir().unwrap();
    let (authority, second, third) = (
        key_file(dir.path(), 40),
        key_file(dir.path(), 41),
        key_file(dir.path(), 42),
    );
    let (node, seen) = tx_node(chain.clone(), TxBehavior::Commit);
    let net = write_network(dir.path(), &chain, &[node.url.clone()]);
    let identity = palisade_crypto::SecretKey::from_seed([50; 32])
        .public()
        .to_hex();
    let o = palisade(&[
        "enroll",
        "--network",
        &net,
        "--key",
        &authority,
        "--cosign",
        &second,
        "--cosign",
        &third,
        "--identity",
        &identity,
        "--namespace",
        "prod",
        "--namespace",
        "staging",
        "--role",
        "admin",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let receipt: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(receipt["outcome"], "applied");
    let tx = seen.lock().unwrap()[0].clone();
    // Signed for the genesis network.json names.
    let (_, signers) = tx.verify(&chain.chain_id, &chain.genesis_hash).unwrap();
    assert_eq!(signers.len(), 3);
    assert!(matches!(
        tx.tx.body,
        palisade_crypto::TxBody::Enroll(ref e)
            if e.namespaces == ["prod", "staging"] && e.role == palisade_crypto::Role::Admin
    ));
    let bad = palisade(&[
        "enroll",
        "--network",
        &net,
        "--key",
        &authority,
        "--identity",
        "xyz",
        "--namespace",
        "prod",
    ]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn heartbeat_every_keeps_renewing_until_stopped() {
    let chain = Chain::test();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), 31);
    let (node, seen) = tx_node(chain.clone(), TxBehavior::Commit);
    let net = write_network(dir.path(), &chain, &[node.url.clone()]);
    let target = [
        "--namespace",
        "prod",
        "--service",
        "api",
        "--instance",
        "api-1",
    ];
    let common = [
        "--network",
        net.as_str(),
        "--key",
        key.as_str(),
        "--timeout",
        "5",
    ];
    let o = palisade(
        &[
            &["register"][..],
            &common,
            &target,
            &["--endpoint", "10.0.0.1:80"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = first_lines(
        &[&["heartbeat"][..], &common, &target, &["--every", "1"]].concat(),
        2,
    );
    for line in lines {
        assert!(line.unwrap().starts_with("heartbeat committed"));
    }
    let seen = seen.lock().unwrap();
    let beats: Vec<u64> = seen[1..].iter().take(2).map(|t| t.tx.sequence).collect();
    assert!(seen[1..3]
        .iter()
        .all(|t| matches!(t.tx.body, palisade_crypto::TxBody::Heartbeat { .. })));
    assert_eq!(beats[1], beats[0] + 1);
}
