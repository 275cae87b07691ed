//! The `palisade` binary: exit codes, stdout only for verified answers.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use palisade_crypto::PublicKey;

use crate::support::fixture::{namespace_response, tamper, Chain, World};
use crate::support::server::{dead_url, MockNode, Reply};

pub(crate) fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

pub(crate) fn write_network(dir: &Path, chain: &Chain, urls: &[String]) -> String {
    let path = dir.join("network.json");
    std::fs::write(&path, serde_json::to_string(&chain.network(urls)).unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Kill `child` after 30 s, so a test reading its output cannot hang when it
/// prints less than expected.
pub(crate) fn watchdog(child: &std::process::Child) {
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(30));
        let _ = Command::new("kill").args(["-9", &pid]).status();
    });
}

/// Run `palisade ARGS` (a long-running command such as `watch` or
/// `heartbeat`), read its first `n` stdout lines, then kill it. A line is
/// missing (`None`) if the process ended before printing it.
pub(crate) fn first_lines(args: &[&str], n: usize) -> Vec<Option<String>> {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    watchdog(&child);
    // Reading ends if the child dies (the watchdog, or an early exit).
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let out = (0..n).map(|_| lines.next().and_then(Result::ok)).collect();
    child.kill().unwrap();
    child.wait().unwrap();
    out
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn keys_gen_prints_the_public_key_alone_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("id.key");
    let o = palisade(&["keys", "gen", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = stdout(&o);
    let key = PublicKey::from_hex(printed.trim_end()).unwrap();
    assert_eq!(printed, format!("{}\n", key.to_hex()));
    assert_eq!(palisade_keys::load_key_file(&out).unwrap().public(), key);
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = palisade(&["keys", "gen", "--out", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stdout(&again).is_empty());
}

#[test]
fn lookup_json_prints_the_verified_instances() {
    let world = World::new();
    let node = MockNode::start({
        let r = world.answer("prod", "api", 5);
        move |_| Reply::ok(&r)
    });
    let dir = tempfile::tempdir().unwrap();
    let net = write_network(dir.path(), &world.chain, &[dead_url(), node.url.clone()]);
    let o = palisade(&[
        "lookup",
        "--network",
        &net,
        "prod/api",
        "--json",
        "--no-cache",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["height"], 5);
    assert_eq!(v["stale"], false);
    let instances = v["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances[0]["instance"], "api-1");
    assert_eq!(instances[0]["endpoints"][0]["host"], "10.0.0.1");
    assert_eq!(instances[0]["labels"]["zone"], "a");
    assert_eq!(instances[0]["health"], "passing");

    let table = palisade(&["lookup", "--network", &net, "prod/api", "--no-cache"]);
    assert!(table.status.success());
    let text = stdout(&table);
    assert!(
        text.contains("INSTANCE")
            && text.contains("api-2")
            && text.contains("http://10.0.0.2:8080"),
        "{text}"
    );
}

/// Filters run on the verified record: `--label` (all must match) and
/// `--healthy` narrow the instances shown; `services --prefix` the services.
#[test]
fn lookup_and_services_filter_the_verified_answer() {
    let world = World::new();
    let (api, ns) = (
        world.answer("prod", "api", 5),
        namespace_response(&world, "prod", 6),
    );
    let node = MockNode::start(move |req| {
        if req.path.starts_with("/v1/namespaces/") {
            Reply::ok(&ns)
        } else {
            Reply::ok(&api)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let net = write_network(dir.path(), &world.chain, &[node.url.clone()]);
    let shown = |extra: &[&str]| -> usize {
        let mut args = vec![
            "lookup",
            "--network",
            &net,
            "prod/api",
            "--json",
            "--no-cache",
        ];
        args.extend_from_slice(extra);
        let o = palisade(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(
            v["height"], 5,
            "the certified height stays the whole answer's"
        );
        v["instances"].as_array().unwrap().len()
    };
    assert_eq!(shown(&[]), 2);
    assert_eq!(shown(&["--label", "zone=a"]), 2);
    assert_eq!(shown(&["--label", "zone=a", "--label", "zone=b"]), 0);
    assert_eq!(shown(&["--label", "zone=b"]), 0);
    assert_eq!(shown(&["--healthy"]), 2);
    let bad = palisade(&["lookup", "--network", &net, "prod/api", "--label", "zone"]);
    assert!(!bad.status.success());
    let o = palisade(&[
        "services",
        "--network",
        &net,
        "prod",
        "--prefix",
        "a",
        "--json",
        "--no-cache",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["services"], serde_json::json!(["api"]));
}

#[test]
fn lookup_of_a_forged_answer_fails_and_prints_nothing() {
    let world = World::new();
    let forged = tamper(&world.answer("prod", "api", 5), |r| {
        r.instances[0].endpoints[0].host = "6.6.6.6".into()
    });
    let liar = MockNode::start(move |_| Reply::ok(&forged));
    let dir = tempfile::tempdir().unwrap();
    let net = write_network(dir.path(), &world.chain, &[liar.url.clone()]);
    for json in [true, false] {
        let mut args = vec![
            "lookup",
            "--network",
            &net,
            "prod/api",
            "--no-cache",
            "--node",
            &liar.url,
        ];
        if json {
            args.push("--json");
        }
        let o = palisade(&args);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        assert!(stdout(&o).is_empty());
        assert!(stderr(&o).contains("forged proof"), "{}", stderr(&o));
    }
    // A stale certificate: with --strict, refused with its age; by default
    // served, verified but marked stale.
    let old = world.answer_at(
        "prod",
        "api",
        5,
        crate::support::fixture::now_ms() - 600_000,
        &[0, 1, 2],
    );
    let stale = MockNode::start(move |_| Reply::ok(&old));
    let args = [
        "lookup",
        "--network",
        &net,
        "prod/api",
        "--no-cache",
        "--json",
        "--node",
        &stale.url,
    ];
    let o = palisade(&[&args[..], &["--strict"]].concat());
    assert_eq!(o.status.code(), Some(3));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("old; the bound is 60000 ms"),
        "{}",
        stderr(&o)
    );
    let o = palisade(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["stale"].as_bool(), v["height"].as_u64()),
        (Some(true), Some(5))
    );
    assert!(stderr(&o).contains("STALE"), "{}", stderr(&o));
}

#[test]
fn lookup_serves_the_cache_marked_stale_when_no_node_answers() {
    let world = World::new();
    let node = MockNode::start({
        let r = world.answer("prod", "api", 5);
        move |_| Reply::ok(&r)
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let net = write_network(dir.path(), &world.chain, &[node.url.clone()]);
    let o = palisade(&[
        "lookup",
        "--network",
        &net,
        "prod/api",
        "--json",
        "--cache-dir",
        cache,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dead = dead_url();
    let o = palisade(&[
        "lookup",
        "--network",
        &net,
        "prod/api",
        "--json",
        "--cache-dir",
        cache,
        "--node",
        &dead,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["stale"].as_bool(), v["height"].as_u64()),
        (Some(true), Some(5))
    );
    assert!(stderr(&o).contains("serving the newest verified answer"));
    let o = palisade(&[
        "lookup",
        "--network",
        &net,
        "prod/api",
        "--no-cache",
        "--node",
        &dead,
    ]);
    assert_eq!(o.status.code(), Some(5));
}

#[test]
fn services_lists_the_verified_namespace() {
    let world = World::new();
    let node = MockNode::start({
        let r = namespace_response(&world, "prod", 6);
        move |_| Reply::ok(&r)
    });
    let dir = tempfile::tempdir().unwrap();
    let net = write_network(dir.path(), &world.chain, &[node.url.clone()]);
    let o = palisade(&[
        "services",
        "--network",
        &net,
        "prod",
        "--json",
        "--no-cache",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["services"], serde_json::json!(["api", "db"]));
    assert!(node.paths()[0].starts_with("GET /v1/namespaces/prod"));
}

#[test]
fn watch_prints_the_current_state_then_each_verified_change() {
    let world = World::new();
    let current = world.answer("prod", "api", 5);
    let change = palisade_crypto::api::WatchUpdate {
        namespace: "prod".into(),
        service: "api".into(),
        lookup: world.answer("prod", "api", 6),
    };
    let event =
        crate::support::server::sse_event("update", &serde_json::to_string(&change).unwrap());
    let node = MockNode::start(move |req| {
        if req.path.starts_with("/v1/watch") {
            Reply::Sse(vec![event.clone()])
        } else {
            Reply::ok(&current)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let net = write_network(dir.path(), &world.chain, &[node.url.clone()]);
    let lines = first_lines(
        &[
            "watch",
            "--network",
            &net,
            "prod/api",
            "--json",
            "--no-cache",
        ],
        2,
    );
    let json = |l: &Option<String>| -> serde_json::Value {
        serde_json::from_str(l.as_deref().expect("a line before the process ended")).unwrap()
    };
    let (first, second) = (json(&lines[0]), json(&lines[1]));
    assert_eq!(
        (first["height"].as_u64(), second["height"].as_u64()),
        (Some(5), Some(6))
    );
    assert!(
        node.paths().iter().any(|p| p.ends_with("from_height=6")),
        "{:?}",
        node.paths()
    );
}

#[test]
fn watch_of_one_lying_node_exits_with_the_forgery() {
    let world = World::new();
    let current = world.answer("prod", "api", 5);
    let forged = palisade_crypto::api::WatchUpdate {
        namespace: "prod".into(),
        service: "api".into(),
        lookup: tamper(&world.answer("prod", "api", 6), |r| r.instances.truncate(1)),
    };
    let event =
        crate::support::server::sse_event("update", &serde_json::to_string(&forged).unwrap());
    let liar = MockNode::start(move |req| {
        if req.path.starts_with("/v1/watch") {
            Reply::Sse(vec![event.clone()])
        } else {
            Reply::ok(&current)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let net = write_network(dir.path(), &world.chain, &[liar.url.clone()]);
    let o = palisade(&[
        "watch",
        "--network",
        &net,
        "prod/api",
        "--json",
        "--no-cache",
        "--node",
        &liar.url,
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Only the verified current state was printed, never the forged update.
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["height"], 5);
    assert!(stderr(&o).contains("forged proof"));
}

#[test]
fn status_reports_every_node_and_fails_only_when_none_answers() {
    let world = World::new();
    let report = palisade_crypto::api::StatusResponse {
        chain_id: world.chain.chain_id.clone(),
        node_key: world.chain.keys[0].public().to_hex(),
        height: 12,
        round: 14,
        epoch: 0,
        leader: world.chain.keys[1].public().to_hex(),
        peers: 3,
        mempool: 0,
        state_root: palisade_crypto::Digest([1; 32]),
    };
    let node = MockNode::start(move |_| Reply::ok(&report));
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_url();
    let net = write_network(dir.path(), &world.chain, &[node.url.clone(), dead.clone()]);
    let o = palisade(&["status", "--network", &net, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["status"]["height"], 12);
    assert!(lines[1]["error"].as_str().unwrap().contains("unreachable"));
    let none = write_network(dir.path(), &world.chain, &[dead]);
    assert_eq!(
        palisade(&["status", "--network", &none]).status.code(),
        Some(5)
    );
}

#[test]
fn node_text_reaches_the_terminal_escaped() {
    let world = World::new();
    // A refusal whose message tries to erase the line and move the cursor.
    let node = MockNode::start(|_| {
        Reply::Json(
            409,
            r#"{"code":"conflict\u001b[31m","message":"\u001b[2K\u001b[1Aall good\u009b0m"}"#
                .into(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let net = write_network(dir.path(), &world.chain, &[node.url.clone()]);
    let o = palisade(&["lookup", "--network", &net, "prod/api", "--no-cache"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("all good"), "{err}");
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "control characters reached the terminal: {err:?}"
    );
}
