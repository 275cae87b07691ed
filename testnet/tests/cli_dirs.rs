//! Every `palisade-testnet` command that takes `--dir` works with a relative
//! `--dir` from a working directory of its own, as a user runs them (the
//! tests elsewhere use absolute temporary directories, which is how a
//! doubled relative key path once killed every node of README's first
//! command unnoticed); and the `try:` lines `up` prints work when pasted.
#![allow(clippy::print_stderr)] // command output is the useful failure output

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use palisade_testnet::cluster::{alive, Layout};
use palisade_testnet::faults::{node_binary_for_tests, workspace_binary_for_tests};

/// `palisade-testnet ARGS` in `cwd`, bounded by the command's own timeouts.
fn testnet(cwd: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-testnet"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("palisade-testnet runs");
    eprintln!(
        "$ palisade-testnet {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = testnet(cwd, args);
    assert!(out.status.success(), "palisade-testnet {args:?} failed");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Stops the testnet in `dir` (by the pids it recorded) however the test ends.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if let Ok(mut net) = palisade_testnet::cluster::Testnet::open(&self.0) {
            let _ = net.down();
        }
    }
}

fn pids(dir: &Path) -> Vec<u32> {
    Layout::new(dir)
        .load()
        .map(|r| r.nodes.iter().filter_map(|n| n.pid).collect())
        .unwrap_or_default()
}

#[test]
fn every_dir_command_works_with_a_relative_dir_from_its_own_working_directory() {
    let exe = std::env::current_exe().expect("test binary path");
    node_binary_for_tests(&exe).expect("palisade-node next to palisade-testnet");
    workspace_binary_for_tests(&exe, "palisade-client", "palisade").expect("palisade binary");
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    let _down = Down(cwd.join("tn"));

    let out = ok(
        &cwd,
        &["up", "--dir", "tn", "--detach", "--round-timeout-ms", "500"],
    );
    assert!(out.contains("demo: verified lookup of demo/echo"), "{out}");
    // The generated configs name their files relative to themselves.
    let toml = std::fs::read_to_string(cwd.join("tn/node0/node.toml")).unwrap();
    assert!(toml.contains("key_file = \"../keys/node0.key\""), "{toml}");
    assert!(!toml.contains(&cwd.display().to_string()), "{toml}");

    // The try: lines, pasted as they are into a shell in the same directory.
    let try_block: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("try"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(try_block.len() >= 6, "{out}");
    let (setup, rest) = try_block.split_at(1);
    assert!(setup[0].starts_with("export PATH="), "{out}");
    // `down` last: run everything but it here, and check `down` below.
    let script: Vec<&str> = setup
        .iter()
        .chain(rest.iter().filter(|l| !l.contains(" down ")))
        .copied()
        .collect();
    let pasted = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script.join("\n")])
        .current_dir(&cwd)
        .output()
        .expect("bash runs");
    let pasted_out = String::from_utf8_lossy(&pasted.stdout);
    eprintln!(
        "pasted:\n{}\n{pasted_out}{}",
        script.join("\n"),
        String::from_utf8_lossy(&pasted.stderr)
    );
    assert!(pasted.status.success(), "a pasted try: line failed");
    assert!(
        pasted_out.contains("api-1"),
        "the pasted lookup shows the instance"
    );

    // Each fault command, relative --dir.
    let status = ok(&cwd, &["status", "--dir", "tn"]);
    assert_eq!(status.lines().count(), 5, "{status}");
    ok(&cwd, &["pause", "--dir", "tn", "--node", "2"]);
    ok(&cwd, &["resume", "--dir", "tn", "--node", "2"]);
    ok(&cwd, &["partition", "--dir", "tn", "0,1/2,3"]);
    ok(&cwd, &["heal", "--dir", "tn"]);
    ok(&cwd, &["kill", "--dir", "tn", "--node", "3"]);
    ok(&cwd, &["restart", "--dir", "tn", "--node", "3"]);
    let bench = ok(
        &cwd,
        &[
            "bench",
            "--dir",
            "tn",
            "--skip-etcd",
            "--duration",
            "1",
            "--single-duration",
            "1",
            "--idle",
            "1",
            "--writers",
            "2",
            "--clients",
            "1",
            "--read-instances",
            "1",
        ],
    );
    assert!(bench.contains("writes/s"), "{bench}");
    // Its figures beside the table: a CSV row per operation and an SVG.
    let figures: Vec<PathBuf> = std::fs::read_dir(cwd.join("tn/bench"))
        .expect("bench wrote its figures into DIR/bench")
        .map(|e| e.unwrap().path())
        .collect();
    let csv = figures
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "csv"));
    let svg = figures
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "svg"));
    let csv = std::fs::read_to_string(csv.expect("a CSV")).unwrap();
    assert!(
        csv.starts_with("system,phase,t_ms,latency_us\npalisade,"),
        "{csv}"
    );
    let svg = std::fs::read_to_string(svg.expect("an SVG")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("loaded writes per second"));
    let before = pids(&cwd.join("tn"));
    assert_eq!(before.len(), 4);
    let down = ok(&cwd, &["down", "--dir", "tn"]);
    assert!(down.contains("stopped 4 processes"), "{down}");
    for pid in before {
        assert!(!alive(pid), "pid {pid} still runs after down");
    }

    // faults: the table on stdout, the clients' warnings in its log file,
    // no colour codes.
    let out = testnet(
        &cwd,
        &[
            "faults",
            "--scenario",
            "crash-1-of-4",
            "--dir",
            "fl",
            "--writers",
            "1",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "faults failed");
    assert!(stdout.starts_with("scenario "), "{stdout}");
    assert!(stdout.contains("crash-1-of-4"), "{stdout}");
    assert!(stdout.contains("fl/faults.log"), "{stdout}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains('\u{1b}'), "colour codes in {text}");
        assert!(!text.contains("WARN"), "log lines in {text}");
    }
    assert!(cwd.join("fl/faults.log").exists());
    assert!(cwd.join("fl/crash-1-of-4-1/node0/node.log").exists());
}

#[test]
fn up_stops_at_once_when_a_node_cannot_start_and_shows_why() {
    let exe = std::env::current_exe().expect("test binary path");
    node_binary_for_tests(&exe).expect("palisade-node next to palisade-testnet");
    let tmp = tempfile::tempdir().expect("temp dir");
    let _down = Down(tmp.path().join("bad"));
    // A mode the node does not know: its config is refused at start.
    let out = testnet(
        tmp.path(),
        &[
            "up",
            "--dir",
            "bad",
            "--detach",
            "--byzantine",
            "2:no-such-mode",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Named, with its log's last lines, instead of a 60 s wait for heights.
    assert!(
        stderr.contains("node2 exited while the testnet was starting"),
        "{stderr}"
    );
    assert!(!stderr.contains("reached height"), "{stderr}");
    // The node said why in one line, without a backtrace.
    let log = std::fs::read_to_string(tmp.path().join("bad/node2/node.log")).unwrap();
    let why: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(why.len(), 1, "{log}");
    assert!(why[0].starts_with("palisade-node: error: "), "{log}");
    assert!(why[0].contains("no-such-mode"), "{log}");
    assert!(!log.contains("stack backtrace"), "{log}");
    // Every process up started is gone.
    for pid in pids(&tmp.path().join("bad")) {
        assert!(!alive(pid), "pid {pid} still runs");
    }
}
