//! The deployment guide (docs/deploy.md), run off loopback: four validators
//! in four network namespaces joined by a bridge, each with its own address,
//! created with the genesis ceremony's commands (`palisade-node keygen`,
//! `palisade genesis new`, `palisade genesis verify`), configured and started
//! as the guide says (the config block of docs/deploy.md, then the
//! `ExecStartPre=` and `ExecStart=` lines of deploy/palisade-node.service,
//! run inside the host's namespace); then an identity is enrolled, an instance registered and
//! looked up (verified), and resolved through `palisade dns` with `dig`, all
//! from a fifth (client) namespace through the bridge.
//!
//! Every address lives inside namespaces this test creates (the bridge too,
//! in its own "hub" namespace), so no packet reaches the host's interfaces.
//! Everything is removed however the test ends: processes by PID, then the
//! namespaces (which takes their links and the bridge with them).
//!
//! Needs root (CAP_NET_ADMIN) and iproute2; without them it fails, saying so.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use palisade_testnet::faults::{node_binary_for_tests, workspace_binary_for_tests};

const SUBNET: &str = "10.213.7";
const NODES: usize = 4;
/// The client namespace's address.
const CLIENT_HOST: u8 = 50;

/// Namespaces, and the processes started in them, removed on drop.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) {
        let ns = self.ns(name);
        // A leftover of an earlier run that died with the same PID.
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        in_ns(&ns, &["ip", "link", "set", "lo", "up"]);
    }

    /// A veth pair from namespace `name` (address `host`) to the hub's bridge.
    fn wire(&mut self, name: &str, index: usize, host: u8) {
        let ns = self.ns(name);
        let hub = self.ns("hub");
        let inner = format!("{}v{index}", self.prefix);
        let outer = format!("{}b{index}", self.prefix);
        ip(&[
            "link", "add", &inner, "netns", &ns, "type", "veth", "peer", "name", &outer, "netns",
            &hub,
        ]);
        in_ns(&hub, &["ip", "link", "set", &outer, "master", "br0"]);
        in_ns(&hub, &["ip", "link", "set", &outer, "up"]);
        let addr = format!("{SUBNET}.{host}/24");
        in_ns(&ns, &["ip", "addr", "add", &addr, "dev", &inner]);
        in_ns(&ns, &["ip", "link", "set", &inner, "up"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2; see scripts/deps.sh): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, args: &[&str]) {
    let mut full = vec!["netns", "exec", ns];
    full.extend(args);
    ip(&full);
}

/// Run to completion within `secs`, else kill it and fail.
fn run(cmd: &mut Command, secs: u64) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Say plainly why the test cannot run here, instead of passing.
fn require_netns(probe: &str) {
    let uid = ok(run(Command::new("id").arg("-u"), 5), "id -u");
    let out = Command::new("ip").args(["netns", "add", probe]).output();
    match out {
        Ok(o) if o.status.success() => ip(&["netns", "del", probe]),
        Ok(o) => panic!(
            "this test needs to create network namespaces (root or CAP_NET_ADMIN; uid is {}): \
             `ip netns add` said: {}",
            uid.trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("this test needs iproute2's `ip` (scripts/deps.sh): {e}"),
    }
}

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// docs/deploy.md's node config (the toml block after its `node-config`
/// marker), for host `i` whose files live in `dir`: the guide's example
/// address of host 1 and its /etc and /var/lib paths replaced.
fn node_config(i: usize, dir: &std::path::Path) -> String {
    let guide = repo_file("docs/deploy.md");
    let after = guide
        .split("<!-- node-config")
        .nth(1)
        .expect("docs/deploy.md has its node-config marker");
    let block = after
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block after the marker");
    assert!(
        block.contains("10.0.0.1"),
        "the guide's example is host 10.0.0.1"
    );
    let d = format!("{}/", dir.display());
    block
        .replace("10.0.0.1", &format!("{SUBNET}.{}", i + 1))
        .replace("/etc/palisade/", &d)
        .replace("/var/lib/palisade/", &d)
}

/// deploy/palisade-node.service's `KEY=` command line, with the installed
/// paths replaced by the built binary and host's config.
fn unit_command(key: &str, node_bin: &std::path::Path, config: &std::path::Path) -> Command {
    let unit = repo_file("deploy/palisade-node.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}= line"));
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/palisade-node"), "{line}");
    let mut cmd = Command::new(node_bin);
    for w in words {
        if w == "/etc/palisade/palisade-node.toml" {
            cmd.arg(config);
        } else {
            cmd.arg(w);
        }
    }
    cmd
}

/// `palisade-node` and `palisade`, built now (a no-op when fresh: a stale
/// binary from before a change would test old code).
fn binaries() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = run(
        Command::new(cargo).args([
            "build",
            "-p",
            "palisade-node",
            "--bin",
            "palisade-node",
            "-p",
            "palisade-client",
            "--bin",
            "palisade",
        ]),
        1800,
    );
    ok(built, "cargo build of palisade-node and palisade");
    let node = node_binary_for_tests(&exe).expect("palisade-node");
    let palisade =
        workspace_binary_for_tests(&exe, "palisade-client", "palisade").expect("palisade");
    (node, palisade)
}

#[test]
fn four_validators_in_four_namespaces_from_the_genesis_ceremony() {
    let prefix = format!("pld{}", std::process::id() % 100_000);
    require_netns(&format!("{prefix}-probe"));
    let (node_bin, palisade) = binaries();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut lab = Lab {
        prefix,
        namespaces: Vec::new(),
        children: Vec::new(),
    };

    // The network: a hub namespace holding the bridge, four hosts, a client.
    lab.add_ns("hub");
    let hub = lab.ns("hub");
    in_ns(&hub, &["ip", "link", "add", "br0", "type", "bridge"]);
    in_ns(&hub, &["ip", "link", "set", "br0", "up"]);
    for i in 0..NODES {
        lab.add_ns(&format!("n{i}"));
        lab.wire(&format!("n{i}"), i, i as u8 + 1);
    }
    lab.add_ns("c");
    lab.wire("c", NODES, CLIENT_HOST);
    let client_ns = lab.ns("c");

    // The ceremony: each host makes its key; the authority makes its own.
    let mut validators = Vec::new();
    for i in 0..NODES {
        let host = root.join(format!("host{i}"));
        fs::create_dir_all(&host).unwrap();
        let key = ok(
            run(
                Command::new(&node_bin)
                    .args(["keygen", "--out"])
                    .arg(host.join("validator.key")),
                30,
            ),
            "palisade-node keygen",
        );
        let h = i + 1;
        validators.push(format!(
            "{}=/ip4/{SUBNET}.{h}/tcp/7000,http://{SUBNET}.{h}:7100",
            key.trim()
        ));
    }
    let authority_key = root.join("authority.key");
    let authority = ok(
        run(
            Command::new(&palisade)
                .args(["keys", "gen", "--out"])
                .arg(&authority_key),
            30,
        ),
        "palisade keys gen",
    );
    let ceremony = root.join("ceremony");
    let mut new = Command::new(&palisade);
    new.args([
        "genesis",
        "new",
        "--chain-id",
        "lab-1",
        "--datacenter",
        "lab",
    ]);
    for v in &validators {
        new.args(["--validator", v]);
    }
    new.args(["--authority", authority.trim(), "--threshold", "1", "--out"])
        .arg(&ceremony);
    let said = ok(run(&mut new, 30), "palisade genesis new");
    assert!(said.starts_with("genesis hash "), "{said}");
    let verified = ok(
        run(
            Command::new(&palisade)
                .args(["genesis", "verify", "--genesis"])
                .arg(ceremony.join("genesis.json"))
                .arg("--network")
                .arg(ceremony.join("network.json")),
            30,
        ),
        "palisade genesis verify",
    );
    assert!(verified.contains("4 validators"), "{verified}");
    let network = ceremony.join("network.json");

    // Each host: the two files, its config, `check`, then `run` in its namespace.
    for i in 0..NODES {
        let host = root.join(format!("host{i}"));
        for f in ["genesis.json", "network.json"] {
            fs::copy(ceremony.join(f), host.join(f)).unwrap();
        }
        let config = host.join("palisade-node.toml");
        fs::write(&config, node_config(i, &host)).unwrap();
        ok(
            run(&mut unit_command("ExecStartPre", &node_bin, &config), 30),
            "the unit's ExecStartPre (palisade-node check)",
        );
        let log = fs::File::create(host.join("node.log")).unwrap();
        let start = unit_command("ExecStart", &node_bin, &config);
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(&format!("n{i}"))])
            .arg(start.get_program())
            .args(start.get_args())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        lab.children.push(child);
    }
    let logs = || {
        (0..NODES)
            .map(|i| {
                let text =
                    fs::read_to_string(root.join(format!("host{i}/node.log"))).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(8).collect();
                format!(
                    "--- node {i}\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };

    // From the client namespace, through the bridge only.
    let cli = |args: &[&str], secs: u64| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &client_ns])
            .arg(&palisade)
            .args(args);
        run(&mut c, secs)
    };
    let net = network.to_str().unwrap();
    let svc_key = root.join("svc.key");
    let svc = ok(
        run(
            Command::new(&palisade)
                .args(["keys", "gen", "--out"])
                .arg(&svc_key),
            30,
        ),
        "palisade keys gen",
    );
    // The first commit needs the four to find each other: bounded retries.
    let mut enrolled = None;
    for _ in 0..6 {
        let out = cli(
            &[
                "enroll",
                "--network",
                net,
                "--key",
                authority_key.to_str().unwrap(),
                "--identity",
                svc.trim(),
                "--namespace",
                "prod",
                "--timeout",
                "20",
            ],
            40,
        );
        if out.status.success() {
            enrolled = Some(out);
            break;
        }
        for (i, c) in lab.children.iter_mut().enumerate() {
            if let Some(status) = c.try_wait().unwrap() {
                panic!("node {i} exited ({status}):\n{}", logs());
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        enrolled.is_some(),
        "no enrollment committed in time:\n{}",
        logs()
    );
    let endpoint = format!("{SUBNET}.{CLIENT_HOST}:8080");
    ok(
        cli(
            &[
                "register",
                "--network",
                net,
                "--key",
                svc_key.to_str().unwrap(),
                "--namespace",
                "prod",
                "--service",
                "api",
                "--instance",
                "api-1",
                "--endpoint",
                &endpoint,
                "--ttl",
                "120",
            ],
            60,
        ),
        "palisade register",
    );
    let answer = ok(
        cli(
            &[
                "lookup",
                "--network",
                net,
                "--strict",
                "--no-cache",
                "--json",
                "prod/api",
            ],
            30,
        ),
        "palisade lookup",
    );
    let json: serde_json::Value = serde_json::from_str(answer.trim()).unwrap();
    let text = json.to_string();
    assert!(text.contains(&format!("{SUBNET}.{CLIENT_HOST}")), "{text}");
    assert!(text.contains("api-1"), "{text}");

    // Every validator answers on its own address, from the client namespace.
    let status = ok(
        cli(&["status", "--network", net, "--json"], 30),
        "palisade status",
    );
    for i in 1..=NODES {
        assert!(status.contains(&format!("{SUBNET}.{i}:7100")), "{status}");
    }
    assert_eq!(
        status.lines().filter(|l| l.contains("\"error\"")).count(),
        0,
        "{status}"
    );

    // And through `palisade dns` in the client namespace, with dig.
    let dns_addr = format!("{SUBNET}.{CLIENT_HOST}:5353");
    let dns_log = fs::File::create(root.join("dns.log")).unwrap();
    let dns = Command::new("ip")
        .args(["netns", "exec", &client_ns])
        .arg(&palisade)
        .args(["dns", "--network", net, "--listen", &dns_addr])
        .stdout(Stdio::null())
        .stderr(dns_log)
        .spawn()
        .unwrap();
    lab.children.push(dns);
    let mut a = String::new();
    for _ in 0..20 {
        let mut dig = Command::new("ip");
        dig.args(["netns", "exec", &client_ns, "dig"])
            .arg(format!("@{SUBNET}.{CLIENT_HOST}"))
            .args([
                "-p",
                "5353",
                "api.prod.palisade.",
                "A",
                "+short",
                "+time=3",
                "+tries=1",
            ]);
        let out = run(&mut dig, 10);
        a = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if a == format!("{SUBNET}.{CLIENT_HOST}") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        a,
        format!("{SUBNET}.{CLIENT_HOST}"),
        "dig through palisade dns"
    );
    drop(lab);
    assert_no_leftovers(&format!("pld{}", std::process::id() % 100_000));
}

/// Nothing of ours is left: no namespace with our prefix.
fn assert_no_leftovers(prefix: &str) {
    let out = ok(
        run(Command::new("ip").args(["netns", "list"]), 10),
        "ip netns list",
    );
    assert!(
        !out.lines().any(|l| l.starts_with(prefix)),
        "namespaces left behind: {out}"
    );
}
