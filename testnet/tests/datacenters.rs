//! Two datacenters as two real testnets: B's registration is looked up
//! through A's nodes and verified against B's validators; a WAN cut turns
//! A's link partitioned within the bound, the record stays served (frozen,
//! marked stale, still verifying), and a heal brings the link back live.
//! Every command runs from a working directory of its own with relative
//! `--dir`s (the one path rule).
#![allow(clippy::print_stderr)] // command output is the useful failure output

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use palisade_testnet::cluster::fetch_metric;
use palisade_testnet::faults::{node_binary_for_tests, workspace_binary_for_tests};
use palisade_testnet::link::bench::link_state;

fn run(bin: &Path, cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("command runs");
    eprintln!(
        "$ {} {}\n{}{}",
        bin.file_name().unwrap().to_string_lossy(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(bin: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = run(bin, cwd, args);
    assert!(out.status.success(), "{args:?} failed");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Register prod/api/INSTANCE in testnet `dir` with svc.key.
/// `palisade lookup --json --no-cache` of `prod/SERVICE` in datacenter `dc`
/// (testnet `remote`) through testnet `local`'s nodes, with `extra` flags.
fn remote_lookup(
    palisade: &Path,
    cwd: &Path,
    (local, remote, dc): (&str, &str, &str),
    service: &str,
    extra: &[&str],
) -> std::process::Output {
    let (network, remote, service) = (
        format!("{local}/network.json"),
        format!("{remote}/network.json"),
        format!("prod/{service}"),
    );
    let mut args = vec![
        "lookup",
        "--network",
        &network,
        "--remote",
        &remote,
        "--dc",
        dc,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[&service, "--json", "--no-cache"]);
    run(palisade, cwd, &args)
}

/// Enroll `identity` in `prod` of testnet `dir` with its authority.
fn enroll(palisade: &Path, cwd: &Path, dir: &str, identity: &str) {
    let network = format!("{dir}/network.json");
    let authority = format!("{dir}/keys/authority.key");
    ok(
        palisade,
        cwd,
        &[
            "enroll",
            "--network",
            &network,
            "--key",
            &authority,
            "--identity",
            identity,
            "--namespace",
            "prod",
        ],
    );
}

fn register(palisade: &Path, cwd: &Path, dir: &str, service: &str, instance: &str) {
    let network = format!("{dir}/network.json");
    ok(
        palisade,
        cwd,
        &[
            "register",
            "--network",
            &network,
            "--key",
            "svc.key",
            "--namespace",
            "prod",
            "--service",
            service,
            "--instance",
            instance,
            "--endpoint",
            "127.0.0.1:8080",
            "--ttl",
            "600",
        ],
    );
}

/// Kills a process started by the test (by its pid) however the test ends.
struct Kill(u32);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = palisade_testnet::cluster::stop(self.0, Duration::from_secs(2));
    }
}

/// Stops both testnets and the link proxies however the test ends.
struct Down(Vec<PathBuf>);

impl Drop for Down {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = palisade_testnet::link::stop_proxies(dir);
            if let Ok(mut net) = palisade_testnet::cluster::Testnet::open(dir) {
                let _ = net.down();
            }
        }
    }
}

/// Poll `check` every 200 ms until it holds or `bound` passes; the elapsed time.
fn within(bound: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

#[test]
fn a_remote_registration_is_served_verified_and_survives_a_wan_cut() {
    let testnet = PathBuf::from(env!("CARGO_BIN_EXE_palisade-testnet"));
    let exe = std::env::current_exe().expect("test binary path");
    node_binary_for_tests(&exe).expect("palisade-node next to palisade-testnet");
    let palisade =
        workspace_binary_for_tests(&exe, "palisade-client", "palisade").expect("palisade");
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    let _down = Down(vec![cwd.join("a"), cwd.join("b")]);
    for (dir, dc) in [("a", "dc-a"), ("b", "dc-b")] {
        ok(
            &testnet,
            &cwd,
            &[
                "up",
                "--dir",
                dir,
                "--datacenter",
                dc,
                "--detach",
                "--round-timeout-ms",
                "500",
            ],
        );
    }
    // A link to one's own chain is refused.
    assert!(!run(&testnet, &cwd, &["link", "--dir", "a", "--to", "a"])
        .status
        .success());
    ok(&testnet, &cwd, &["link", "--dir", "a", "--to", "b"]);
    let toml = std::fs::read_to_string(cwd.join("a/node0/node.toml")).unwrap();
    assert!(
        toml.contains("network_file = \"../links/dc-b/network.json\""),
        "{toml}"
    );

    // Register prod/api/api-1 in B.
    let identity = ok(&palisade, &cwd, &["keys", "gen", "--out", "svc.key"]);
    enroll(&palisade, &cwd, "b", identity.trim());
    register(&palisade, &cwd, "b", "api", "api-1");
    let b_through_a = || remote_lookup(&palisade, &cwd, ("a", "b", "dc-b"), "api", &[]);
    let mut answer = serde_json::Value::Null;
    within(Duration::from_secs(20), || {
        let out = b_through_a();
        answer = serde_json::from_slice(&out.stdout).unwrap_or_default();
        out.status.success() && answer["instances"][0]["instance"] == "api-1"
    })
    .expect("B's registration is served verified through A");
    assert_eq!(answer["datacenter"], "dc-b");
    assert!(answer["lag_ms"].as_u64().is_some(), "{answer}");
    assert_eq!(answer["stale"], false);

    // And the other way: B links to A and serves A's services, verified
    // against A's validators (two testnets linked both ways).
    ok(&testnet, &cwd, &["link", "--dir", "b", "--to", "a"]);
    enroll(&palisade, &cwd, "a", identity.trim());
    register(&palisade, &cwd, "a", "web", "web-1");
    let mut back = serde_json::Value::Null;
    within(Duration::from_secs(30), || {
        let out = remote_lookup(&palisade, &cwd, ("b", "a", "dc-a"), "web", &[]);
        back = serde_json::from_slice(&out.stdout).unwrap_or_default();
        out.status.success() && back["instances"][0]["instance"] == "web-1"
    })
    .expect("A's registration is served verified through B");
    assert_eq!(back["datacenter"], "dc-a");

    // Against validators B does not have, the same answer is refused (exit 3).
    let mut fake: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("b/network.json")).unwrap())
            .unwrap();
    let a_net: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cwd.join("a/network.json")).unwrap())
            .unwrap();
    fake["validators"] = a_net["validators"].clone();
    std::fs::write(cwd.join("fake-b.json"), fake.to_string()).unwrap();
    let forged = run(
        &palisade,
        &cwd,
        &[
            "lookup",
            "--network",
            "a/network.json",
            "--remote",
            "fake-b.json",
            "--dc",
            "dc-b",
            "prod/api",
            "--no-cache",
        ],
    );
    assert_eq!(
        forged.status.code(),
        Some(3),
        "a remote answer against the wrong validators"
    );
    assert!(forged.stdout.is_empty(), "nothing unverified is printed");

    // local-first: A has no prod/api, so the answer is dc-b's; once A has
    // a passing instance of its own, A's.
    let local_first = || {
        let out = remote_lookup(
            &palisade,
            &cwd,
            ("a", "b", "dc-b"),
            "api",
            &["--policy", "local-first"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = local_first();
    assert_eq!(first["datacenter"], "dc-b", "{first}");
    assert_eq!(first["instances"][0]["instance"], "api-1");

    // A verified remote watch through A's nodes: the current state first,
    // then B's next registration.
    let mut watch = Command::new(&palisade)
        .args([
            "watch",
            "--network",
            "a/network.json",
            "--remote",
            "b/network.json",
            "--dc",
            "dc-b",
            "prod/api",
            "--json",
        ])
        .current_dir(&cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch starts");
    let _stop_watch = Kill(watch.id());
    let (tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx
                .send(serde_json::from_str(&line).unwrap_or_default())
                .is_err()
            {
                break;
            }
        }
    });
    let instances = |v: &serde_json::Value| -> Vec<String> {
        v["instances"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["instance"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let current = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the remote watch delivers the current state");
    assert_eq!(current["datacenter"], "dc-b", "{current}");
    assert_eq!(instances(&current), ["api-1"]);
    register(&palisade, &cwd, "b", "api", "api-2");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next = serde_json::Value::Null;
    while Instant::now() < deadline && !instances(&next).contains(&"api-2".to_string()) {
        next = lines.recv_timeout(Duration::from_secs(1)).unwrap_or(next);
    }
    assert!(
        instances(&next).contains(&"api-2".to_string()),
        "B's registration reached the remote watch: {next}"
    );
    assert!(next["lag_ms"].as_u64().is_some(), "{next}");
    drop(_stop_watch);
    let _ = watch.wait();

    // A passing instance of A's own: local-first answers locally.
    register(&palisade, &cwd, "a", "api", "local-1");
    let local = local_first();
    assert_eq!(local["datacenter"], "dc-a", "{local}");
    assert_eq!(instances(&local), ["local-1"]);

    // Cut the WAN: partitioned within 10 s, served frozen and marked stale.
    let a_node = a_net["nodes"][0]["api_url"].as_str().unwrap().to_string();
    assert_eq!(link_state(&a_node), "live");
    // The link metrics while live.
    let metric = |name: &str, label: &str| fetch_metric(&a_node, name, label).unwrap();
    let dc = "datacenter=\"dc-b\"";
    assert_eq!(metric("palisade_link_state", "kind=\"live\""), 1.0);
    assert_eq!(metric("palisade_link_state", "kind=\"partitioned\""), 0.0);
    let height_before = metric("palisade_link_imported_height", dc);
    assert!(height_before > 0.0);
    assert!(metric("palisade_link_lag_seconds_count", dc) > 0.0);
    assert!(metric("palisade_link_bytes_in_total", dc) > 0.0);
    assert!(metric("palisade_link_age_ms", dc) >= 0.0);
    let unreachable_before = metric("palisade_link_refusals_total", "kind=\"unreachable\"");
    assert_eq!(metric("palisade_link_equivocations_total", dc), 0.0);
    ok(&testnet, &cwd, &["wan", "--dir", "a", "--to", "b", "cut"]);
    let detected = within(Duration::from_secs(12), || {
        link_state(&a_node) == "partitioned"
    })
    .expect("the link is declared partitioned");
    eprintln!("partition detected after {detected:?}");
    assert!(detected <= Duration::from_secs(10), "{detected:?}");
    let out = b_through_a();
    assert!(out.status.success(), "the frozen record still verifies");
    let frozen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(frozen["stale"], true, "{frozen}");
    assert_eq!(
        frozen["instances"][0]["instance"], "api-1",
        "no remote instance lost"
    );
    // The metrics say so too: partitioned, refusals counted, height held.
    assert_eq!(metric("palisade_link_state", "kind=\"partitioned\""), 1.0);
    assert_eq!(metric("palisade_link_state", "kind=\"live\""), 0.0);
    assert!(
        metric("palisade_link_refusals_total", "kind=\"unreachable\"") > unreachable_before,
        "silent remote nodes are counted as refusals"
    );
    let height_cut = metric("palisade_link_imported_height", dc);
    ok(&testnet, &cwd, &["wan", "--dir", "a", "--to", "b", "heal"]);
    within(Duration::from_secs(15), || link_state(&a_node) == "live").expect("heal: live again");
    within(Duration::from_secs(15), || {
        metric("palisade_link_imported_height", dc) > height_cut
    })
    .expect("the imported height moves again after the heal");
    assert_eq!(metric("palisade_link_state", "kind=\"live\""), 1.0);
    let (up, down) = palisade_testnet::link::link_bytes(&cwd.join("a"), "dc-b").unwrap();
    assert!(up > 0 && down > 0, "the proxies counted the link's bytes");
}
