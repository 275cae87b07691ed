//! The PBFT-style fault-injection suite on real processes.
//!
//! Each scenario starts a fresh 4-validator testnet (plus twins or a
//! Byzantine node where the scenario says), puts it under signed registration
//! load ([`load`]), injects its faults, heals, and then checks what must
//! always hold:
//! - honest nodes committed the same block at every height they share;
//! - every registration whose receipt verified is present in a verified lookup;
//! - lookups verify (a forged answer is rejected, never shown);
//! - the network makes progress once healthy.
//!
//! A scenario returns its violations; the suite prints a table.

pub mod datacenters;
pub mod load;
pub mod outsider;
pub mod watcher;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use palisade_client::{load_network_file, Client, ClientConfig, ClientError, Freshness, Signer};

use crate::cluster::{self, Testnet, TestnetError, UpOptions};
use load::{Acked, Load, LOAD_NAMESPACE};

/// What a scenario run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Scenario name.
    pub name: &'static str,
    /// Faults injected, in words.
    pub faults: String,
    /// Blocks committed during the run (highest honest height at the end).
    pub commits: u64,
    /// Acknowledged registrations.
    pub acked: usize,
    /// What went wrong; empty when the scenario passed.
    pub violations: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// A named scenario.
pub struct Scenario {
    /// Name for `--scenario`.
    pub name: &'static str,
    /// Twins (extra processes sharing validator keys 0..twins).
    twins: usize,
    /// Byzantine test modes per node (`palisade-testnet up --byzantine I:MODE`).
    byzantine: &'static [(usize, &'static str)],
    /// Whether a verified namespace watch must deliver every acknowledged write.
    watch: bool,
    /// The fault schedule; returns a description.
    inject: fn(&mut Run<'_>) -> Result<String, TestnetError>,
    /// Nodes whose state the checker trusts (validators not twinned or forging).
    honest: fn(usize) -> bool,
    /// Validators of the scenario's testnet.
    nodes: usize,
    /// The testnet is datacenter `dc-b`, which the scenario links another
    /// testnet to ([`datacenters`]).
    remote_dc: bool,
    /// `[storage] retain_heights` of every node (0 = archive).
    retain_heights: u64,
}

/// Every scenario, in suite order.
pub fn scenarios() -> Vec<Scenario> {
    fn all(_: usize) -> bool {
        true
    }
    vec![
        Scenario {
            name: "crash-1-of-4",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: crash_one,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "crash-2-of-4",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: crash_two,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "leader-pause",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: leader_pause,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "partition-heal",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: partition_heal,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "membership",
            twins: 0,
            byzantine: &[],
            watch: true,
            inject: membership,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "restart-all",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: restart_all,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "kill9-under-load",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: kill9_under_load,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "twins",
            twins: 1,
            byzantine: &[],
            watch: false,
            inject: twins,
            honest: |i| i != 0 && i < 4,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "byzantine-node",
            twins: 0,
            byzantine: BYZANTINE_NODE,
            watch: true,
            inject: byzantine_node,
            honest: |i| i != 0,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "outsider-flood",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: outsider_flood,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "forged-lookups",
            twins: 0,
            byzantine: &[(3, "forge-lookups")],
            watch: true,
            inject: forged_lookups,
            honest: |i| i != 3,
            nodes: 4,
            remote_dc: false,
            retain_heights: 0,
        },
        Scenario {
            name: "remote-liar",
            twins: 0,
            byzantine: datacenters::REMOTE_LIARS,
            watch: false,
            inject: datacenters::remote_liar,
            honest: all,
            nodes: 5,
            remote_dc: true,
            retain_heights: 0,
        },
        Scenario {
            name: "remote-equivocation",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: datacenters::remote_equivocation,
            honest: all,
            nodes: 4,
            remote_dc: true,
            retain_heights: 0,
        },
        Scenario {
            name: "wipe-catch-up",
            twins: 0,
            byzantine: &[],
            watch: false,
            inject: wipe_catch_up,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: WIPE_WINDOW,
        },
        Scenario {
            name: "membership-pruning",
            twins: 0,
            byzantine: &[],
            watch: true,
            inject: membership_pruning,
            honest: all,
            nodes: 4,
            remote_dc: false,
            retain_heights: MEMBERSHIP_WINDOW,
        },
    ]
}

/// Every lie one node can tell at once, on node0 (listed first, so clients
/// meet it first): each client class must reject or route around it.
const BYZANTINE_NODE: &[(usize, &str)] = &[
    (0, "forge-lookups"),
    (0, "replay-watch"),
    (0, "lie-accounts"),
    (0, "claim-outcomes"),
    (0, "pending-forever"),
    // Namespace streams carry no change at all: the verified watcher
    // delivers every one from the change chain its `synced` events prove.
    (0, "omit-watch"),
];

/// The scenarios CI runs (bounded: about a minute each).
pub const CI_SUBSET: &[&str] = &[
    "crash-1-of-4",
    "partition-heal",
    "forged-lookups",
    "byzantine-node",
    "outsider-flood",
    "membership",
    "remote-liar",
];

/// A scenario in progress.
pub struct Run<'a> {
    /// The testnet.
    pub net: &'a mut Testnet,
    /// Extra violations found during injection.
    pub violations: Vec<String>,
    seed: u64,
}

impl Run<'_> {
    fn height(&self, honest: &[usize]) -> u64 {
        self.heights(honest)
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
    }

    /// Each node's committed height, asking again (bounded) when a status
    /// call fails: under CPU load a 2 s status call can time out, and a
    /// node missing from one measurement must not look like progress in the
    /// next. `None` for a node that did not answer within 10 s.
    fn heights(&self, nodes: &[usize]) -> Vec<Option<u64>> {
        nodes
            .iter()
            .map(|i| {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match self.net.node_status(*i) {
                        Ok(s) => return Some(s.height),
                        Err(_) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(200))
                        }
                        Err(_) => return None,
                    }
                }
            })
            .collect()
    }

    /// Expect progress on the given nodes within `within`.
    fn expect_progress(&mut self, nodes: &[usize], blocks: u64, within: Duration, what: &str) {
        let start = self.height(nodes);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.height(nodes) >= start + blocks {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.violations.push(format!(
            "{what}: fewer than {blocks} commits within {within:?} (height stayed near {start})"
        ));
    }

    /// Expect no progress on the given nodes for `during`: the highest
    /// committed height among the nodes that answered both times grows by at
    /// most one (a block in flight as the fault lands). A lagging node that
    /// catches up on blocks committed before the fault does not raise it.
    fn expect_stall(&mut self, nodes: &[usize], during: Duration, what: &str) {
        // Messages sent before the fault landed (it lands on one node after
        // another, and a loaded node works through its inbox late) may still
        // certify and commit: wait until the heights hold still for a
        // second (bounded by 5 s) before taking the first measurement.
        let settle_until = Instant::now() + Duration::from_secs(5);
        let mut before = self.heights(nodes);
        let mut still_since = Instant::now();
        while Instant::now() < settle_until && still_since.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(250));
            let now = self.heights(nodes);
            if now != before {
                before = now;
                still_since = Instant::now();
            }
        }
        std::thread::sleep(during);
        let after = self.heights(nodes);
        let both = |v: &[Option<u64>]| -> u64 {
            v.iter()
                .zip(&before)
                .zip(&after)
                .filter_map(|((h, b), a)| b.and(*a).and(*h))
                .max()
                .unwrap_or(0)
        };
        let (start, end) = (both(&before), both(&after));
        if end > start + 1 {
            self.violations.push(format!(
                "{what}: committed {} blocks without a quorum (heights {before:?} -> {after:?})",
                end - start
            ));
        }
    }
}

fn crash_one(run: &mut Run<'_>) -> Result<String, TestnetError> {
    run.net.kill(3)?;
    run.expect_progress(&[0, 1, 2], 5, Duration::from_secs(30), "1 of 4 crashed");
    run.net.restart(3)?;
    Ok("SIGKILL node3; restart".into())
}

fn crash_two(run: &mut Run<'_>) -> Result<String, TestnetError> {
    run.net.kill(2)?;
    run.net.kill(3)?;
    run.expect_stall(&[0, 1], Duration::from_secs(6), "2 of 4 crashed");
    // Committed state still verifies (with the freshness bound relaxed: no new
    // certificates can exist without a quorum).
    if let Err(e) = verified_lookup(run, Duration::from_secs(3600), None) {
        run.violations
            .push(format!("lookup of committed state without a quorum: {e}"));
    }
    run.net.restart(2)?;
    run.net.restart(3)?;
    run.expect_progress(
        &[0, 1, 2, 3],
        3,
        Duration::from_secs(45),
        "after restarting 2 of 4",
    );
    Ok("SIGKILL node2, node3; lookups; restart both".into())
}

fn leader_pause(run: &mut Run<'_>) -> Result<String, TestnetError> {
    let leader_key = run.net.node_status(0)?.leader;
    let leader = run
        .net
        .record()
        .nodes
        .iter()
        .position(|n| n.public_key == leader_key)
        .unwrap_or(0);
    run.net.pause(leader)?;
    let others: Vec<usize> = (0..4).filter(|i| *i != leader).collect();
    run.expect_progress(&others, 3, Duration::from_secs(30), "leader paused");
    run.net.resume(leader)?;
    Ok(format!(
        "SIGSTOP leader node{leader} ~until 3 commits; SIGCONT"
    ))
}

fn partition_heal(run: &mut Run<'_>) -> Result<String, TestnetError> {
    run.net.partition("0,1/2,3")?;
    run.expect_stall(&[0, 1, 2, 3], Duration::from_secs(6), "partition 0,1/2,3");
    run.net.heal()?;
    run.expect_progress(&[0, 1, 2, 3], 3, Duration::from_secs(45), "after heal");
    Ok("partition 0,1/2,3 for 6 s; heal".into())
}

/// Grow the validators from 4 to 5 under load and shrink them back: the new
/// node must catch up as a learner, then vote as a validator (with node 3
/// down, 4 of the 5 are a quorum only with its votes); clients (the load, the
/// verified watch) follow both epoch changes.
fn membership(run: &mut Run<'_>) -> Result<String, TestnetError> {
    membership_with(run, false)
}

/// The retention window of the pruning membership scenario's nodes.
const MEMBERSHIP_WINDOW: u64 = 100;

/// Heights past which no peer serves height 1 from memory either (the
/// default `consensus.retain_committed` is 1024 committed blocks).
const PAST_MEMORY: u64 = 1100;

/// `membership` on nodes that prune: once every node pruned height 1 and
/// the chain is past the committed blocks peers keep in memory, the new
/// node cannot replay from genesis; it must join from a certified snapshot
/// and then vote.
fn membership_pruning(run: &mut Run<'_>) -> Result<String, TestnetError> {
    let deadline = Instant::now() + Duration::from_secs(240);
    while run
        .heights(&[0, 1, 2, 3])
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(0)
        <= PAST_MEMORY
    {
        if Instant::now() > deadline {
            run.violations.push(format!(
                "the chain did not pass height {PAST_MEMORY} within 240 s"
            ));
            return Ok("too slow to pass the in-memory window".into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !wait_pruned_height_one(run, 4, Duration::from_secs(120)) {
        return Ok("peers never pruned".into());
    }
    let done = membership_with(run, true)?;
    Ok(format!(
        "peers pruning (window {MEMBERSHIP_WINDOW}); {done}"
    ))
}

fn membership_with(run: &mut Run<'_>, from_snapshot: bool) -> Result<String, TestnetError> {
    let added = run.net.add_node()?;
    let joined = run.net.node_status(added)?;
    if from_snapshot && !pruned_height_one(run, added) {
        run.violations.push(format!(
            "node{added} did not join from a snapshot (height 1 is not pruned there)"
        ));
    }
    run.expect_progress(
        &[0, 1, 2, 3, added],
        3,
        Duration::from_secs(45),
        "with 5 validators",
    );
    run.net.kill(3)?;
    let from = run.net.node_status(0)?.height + 1;
    run.expect_progress(
        &[0, 1, 2, added],
        3,
        Duration::from_secs(45),
        "with node3 down (a quorum needs the new node's votes)",
    );
    let key = run.net.record().nodes[added].public_key.clone();
    let head = run.net.node_status(0)?.height;
    let signed = (from..=head)
        .filter(|h| signers(run.net, 0, *h).contains(&key))
        .count();
    if signed == 0 {
        run.violations.push(format!(
            "node{added} signed none of the certificates of heights {from}..={head}, made while node3 was down"
        ));
    }
    run.net.restart(3)?;
    run.net.remove_node(added)?;
    let left = run.net.node_status(0)?.epoch;
    run.expect_progress(
        &[0, 1, 2, 3],
        3,
        Duration::from_secs(45),
        "after removing it",
    );
    Ok(format!(
        "node{added} added under load ({}learner, then validator of epoch {}; with node3 down it signed {signed} of {} certificates); removed at epoch {left}",
        if from_snapshot {
            "from a certified snapshot, "
        } else {
            ""
        },
        joined.epoch,
        (head + 1).saturating_sub(from)
    ))
}

/// Keys (hex) that signed the certificate node `i` keeps for `height`.
fn signers(net: &Testnet, i: usize, height: u64) -> Vec<String> {
    let url = format!("{}/v1/blocks/{height}", net.record().nodes[i].api_url);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let Ok(resp) = agent.get(&url).call() else {
        return Vec::new();
    };
    let Ok(json) = resp.into_body().read_json::<serde_json::Value>() else {
        return Vec::new();
    };
    json["certified"]["signers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn restart_all(run: &mut Run<'_>) -> Result<String, TestnetError> {
    for i in 0..4 {
        run.net.kill(i)?;
    }
    for i in 0..4 {
        run.net.restart(i)?;
    }
    run.expect_progress(
        &[0, 1, 2, 3],
        3,
        Duration::from_secs(45),
        "after restarting all",
    );
    Ok("SIGKILL all 4; restart all".into())
}

fn kill9_under_load(run: &mut Run<'_>) -> Result<String, TestnetError> {
    let victim = (run.seed % 4) as usize;
    std::thread::sleep(Duration::from_secs(2));
    run.net.kill(victim)?;
    std::thread::sleep(Duration::from_secs(3));
    run.net.restart(victim)?;
    // The restarted node catches up with the others.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let others = run.height(&(0..4).filter(|i| *i != victim).collect::<Vec<_>>());
        let mine = run.net.node_status(victim).map(|s| s.height).unwrap_or(0);
        if mine + 2 >= others && mine > 0 {
            break;
        }
        if Instant::now() > deadline {
            run.violations.push(format!(
                "node{victim} did not catch up after kill -9 (height {mine}, others {others})"
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(format!(
        "SIGKILL node{victim} under load; restart; catch up"
    ))
}

/// The retention window of the wipe scenario's nodes.
const WIPE_WINDOW: u64 = 40;

/// Wait (bounded by `within`) until nodes `0..n` all answer 410 for height
/// 1 (one pruning pass every 10 s); a violation if they never do.
fn wait_pruned_height_one(run: &mut Run<'_>, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while !(0..n).all(|i| pruned_height_one(run, i)) {
        if Instant::now() > deadline {
            run.violations.push(format!(
                "the nodes did not prune height 1 within {} s",
                within.as_secs()
            ));
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    true
}

/// Whether node `i` answers that height 1 is pruned (410).
fn pruned_height_one(run: &Run<'_>, i: usize) -> bool {
    matches!(run.net.block(i, 1), Err(e) if e.to_string().contains("HTTP 410"))
}

fn wipe_catch_up(run: &mut Run<'_>) -> Result<String, TestnetError> {
    let victim = 3;
    // Under load until every node pruned height 1 (one pass every 10 s):
    // replaying from genesis is then impossible.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(0..4).all(|i| pruned_height_one(run, i)) {
        if Instant::now() > deadline {
            run.violations
                .push("the nodes did not prune height 1 within 90 s".into());
            return Ok("peers never pruned".into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let others: Vec<usize> = (0..4).filter(|i| *i != victim).collect();
    let at = run.height(&others);
    run.net.kill(victim)?;
    let data = run.net.layout().node_dir(victim).join("data");
    std::fs::remove_dir_all(&data).map_err(|source| TestnetError::Io {
        path: data.clone(),
        source,
    })?;
    let started = Instant::now();
    run.net.restart(victim)?;
    let api_up = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught_up = loop {
        let top = run.height(&others);
        let mine = run.net.node_status(victim).map(|s| s.height).unwrap_or(0);
        if mine > at && mine + 2 >= top {
            break Some(started.elapsed());
        }
        if Instant::now() > deadline {
            run.violations.push(format!(
                "wiped node{victim} did not catch up (height {mine}, others {top})"
            ));
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !pruned_height_one(run, victim) {
        run.violations.push(format!(
            "wiped node{victim} does not stand on a snapshot (height 1 is not pruned there)"
        ));
    }
    let took = caught_up.map_or("never".into(), |t| format!("{:.1} s", t.as_secs_f64()));
    Ok(format!(
        "peers pruning (window {WIPE_WINDOW}); wiped node{victim}'s data at height {at} under load; \
         API up after {:.1} s, caught up from a snapshot in {took}",
        api_up.as_secs_f64()
    ))
}

fn twins(run: &mut Run<'_>) -> Result<String, TestnetError> {
    run.expect_progress(
        &[1, 2, 3],
        5,
        Duration::from_secs(30),
        "with a twin of node0",
    );
    // Did the twin equivocate visibly (two valid proposals or two votes
    // under node0's key in one round)? Honest nodes count what they refused,
    // by reason. Node0's key leads about a quarter of the rounds, so this
    // takes a few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut count = 0;
    while count == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        count = 0;
        for i in 1..=3 {
            count += run.net.node_metric(
                i,
                "palisade_consensus_refused_total",
                "reason=\"Equivocation\"",
            )? as u64;
        }
    }
    // Not a violation when zero: honest nodes reach the two processes that
    // share node0's libp2p identity over whichever connection libp2p picks,
    // so in some runs the twin lags and its messages are refused as stale
    // rather than as conflicting (measured: 0, 6 and 3 such refusals in
    // three runs). The simulator's Twins tests assert equivocation happened.
    Ok(format!(
        "twin of node0 (same key, own process); honest nodes refused {count} conflicting messages{}",
        if count == 0 {
            " (the twin never equivocated visibly this run)"
        } else {
            ""
        }
    ))
}

fn forged_lookups(run: &mut Run<'_>) -> Result<String, TestnetError> {
    let forger = run.net.record().nodes[3].api_url.clone();
    // The forger alters instances; a service with none (or not yet
    // registered: under CPU load the first registrations can lag) has
    // nothing to alter, and its honest absence proof rightly verifies. So
    // first wait, bounded, until honest nodes show svc0 with an instance.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let client = client_for(run, Duration::from_secs(60), None);
        let present = client
            .and_then(|c| c.lookup(LOAD_NAMESPACE, "svc0"))
            .is_ok_and(|a| !a.service().instances().is_empty());
        if present {
            break;
        }
        if Instant::now() > deadline {
            run.violations
                .push("svc0 had no verified instance within 60 s of load".into());
            return Ok("node3 alters lookup answers; svc0 never registered".into());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // A lookup from the forger must fail verification. A timeout or a
    // refused connection under load says nothing either way: ask again,
    // bounded, and count only what an answer shows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        match verified_lookup(run, Duration::from_secs(60), Some(forger.clone())) {
            Err(e) if e.is_verification_failure() => break,
            Ok(()) => {
                run.violations
                    .push("a lookup from the forging node verified".into());
                break;
            }
            Err(e) if Instant::now() < deadline => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                run.violations.push(format!(
                    "the forging node never answered within 60 s: {e} (before: {last:?})"
                ));
                break;
            }
        }
    }
    // Honest nodes still answer verifiably.
    if let Err(e) = verified_lookup(run, Duration::from_secs(60), None) {
        run.violations.push(format!("honest lookup failed: {e}"));
    }
    Ok("node3 alters lookup answers; client asks it directly".into())
}

fn byzantine_node(run: &mut Run<'_>) -> Result<String, TestnetError> {
    run.expect_progress(&[1, 2, 3], 5, Duration::from_secs(30), "with node0 lying");
    // Lookups through every node, the liar first, verify (the client routes
    // around it; forged-lookups shows a lookup pinned to a liar fails).
    if let Err(e) = verified_lookup(run, Duration::from_secs(60), None) {
        run.violations
            .push(format!("a lookup through all nodes failed: {e}"));
    }
    let modes: Vec<&str> = BYZANTINE_NODE.iter().map(|(_, m)| *m).collect();
    Ok(format!("node0 lies: {}", modes.join(", ")))
}

fn outsider_flood(run: &mut Run<'_>) -> Result<String, TestnetError> {
    let nodes: Vec<std::net::SocketAddr> = run
        .net
        .record()
        .nodes
        .iter()
        .filter_map(|n| n.api_url.trim_start_matches("http://").parse().ok())
        .collect();
    let chain_id = run.net.record().chain_id.clone();
    let path = run.net.layout().network_file();
    let genesis_hash = load_network_file(&path)
        .map_err(|e| TestnetError::Record {
            path,
            reason: e.to_string(),
        })?
        .genesis_hash;
    let seed = run.seed;
    let flood = std::thread::spawn(move || {
        outsider::flood(
            &nodes,
            (&chain_id, &genesis_hash),
            load::LOAD_NAMESPACE,
            seed,
            Duration::from_secs(20),
            3_000,
            64,
        )
    });
    run.expect_progress(
        &[0, 1, 2, 3],
        5,
        Duration::from_secs(30),
        "under an outsider's flood",
    );
    let report = flood.join().map_err(|_| TestnetError::State {
        index: 0,
        reason: "the flood thread panicked".into(),
    })?;
    // Let anything admitted reach a block if it ever would.
    std::thread::sleep(Duration::from_secs(3));
    let mut committed = 0;
    for id in &report.sent {
        if let Ok(Some(h)) = run.net.tx_height(0, id) {
            committed += 1;
            if committed <= 3 {
                run.violations.push(format!(
                    "outsider transaction {id} (a throwaway key's) committed at height {h}"
                ));
            }
        }
    }
    if committed > 3 {
        run.violations.push(format!(
            "... {committed} outsider transactions committed in all"
        ));
    }
    for i in 0..4 {
        if run.net.node_status(i).is_err() && run.heights(&[i])[0].is_none() {
            run.violations
                .push(format!("node{i} does not answer after the flood"));
        }
    }
    let statuses: Vec<String> = report
        .statuses
        .iter()
        .map(|(code, n)| format!("{n}x{code}"))
        .collect();
    Ok(format!(
        "outsider at 127.0.0.2: {} requests ({}), {} throwaway-key txs ({} admitted, {committed} committed), {} watch streams held",
        report.requests,
        statuses.join(" "),
        report.sent.len(),
        report.admitted.len(),
        report.watches_held
    ))
}

fn client_for(
    run: &Run<'_>,
    max_age: Duration,
    only: Option<String>,
) -> Result<Client, ClientError> {
    let network = load_network_file(&run.net.layout().network_file())?;
    Client::new(
        network,
        ClientConfig {
            freshness: Freshness {
                max_age,
                ..Freshness::default()
            },
            only_node: only,
            request_timeout: Duration::from_secs(3),
            retries: 1,
            ..ClientConfig::default()
        },
    )
}

fn verified_lookup(
    run: &Run<'_>,
    max_age: Duration,
    only: Option<String>,
) -> Result<(), ClientError> {
    let c = client_for(run, max_age, only)?;
    c.lookup(LOAD_NAMESPACE, "svc0").map(|_| ())
}

/// Compare committed blocks across honest nodes and check every
/// acknowledged registration is present.
fn check(run: &Run<'_>, honest: &[usize], acked: &[Acked]) -> Vec<String> {
    let mut violations = Vec::new();
    let heights: Vec<(usize, u64)> = honest
        .iter()
        .zip(run.heights(honest))
        .filter_map(|(i, h)| h.map(|h| (*i, h)))
        .collect();
    if heights.len() < 2 {
        violations.push(format!("fewer than 2 honest nodes answer ({heights:?})"));
    }
    let shared = heights.iter().map(|(_, h)| *h).min().unwrap_or(0);
    let from = shared.saturating_sub(400).max(1);
    for h in from..=shared {
        let mut seen: Option<(usize, palisade_crypto::BlockInfo)> = None;
        for (i, _) in &heights {
            // Bounded retries: a timed-out read under load is not a fork.
            let block = (0..3)
                .map(|_| run.net.block(*i, h))
                .find(Result::is_ok)
                .unwrap_or_else(|| run.net.block(*i, h));
            match block {
                // Below a node's pruned mark (a retention window, or the
                // snapshot it started from): not kept there, nothing to compare.
                Err(e) if e.to_string().contains("HTTP 410") => {}
                Ok(b) => match &seen {
                    Some((j, other)) if *other != b => violations.push(format!(
                        "height {h}: node{j} committed {} and node{i} committed {}",
                        other.block_id, b.block_id
                    )),
                    Some(_) => {}
                    None => seen = Some((*i, b)),
                },
                Err(e) => violations.push(format!("height {h}: {e}")),
            }
        }
        if violations.len() > 10 {
            break;
        }
    }
    let client = match client_for(run, Duration::from_secs(120), None) {
        Ok(c) => c,
        Err(e) => return vec![format!("client: {e}")],
    };
    let mut by_service: BTreeMap<&str, Vec<&Acked>> = BTreeMap::new();
    for a in acked {
        by_service.entry(a.service.as_str()).or_default().push(a);
    }
    for (service, list) in by_service {
        match client.lookup(LOAD_NAMESPACE, service) {
            Ok(answer) => {
                let found = answer.service();
                for a in list {
                    if !found.instances().iter().any(|i| i.instance == a.instance) {
                        violations.push(format!(
                            "acknowledged {service}/{} (height {}) missing at height {}",
                            a.instance, a.height, found.height
                        ));
                    }
                }
            }
            Err(e) => violations.push(format!("lookup {LOAD_NAMESPACE}/{service}: {e}")),
        }
    }
    violations
}

/// Options of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Where scenario testnets are created (one subdirectory each).
    pub base_dir: PathBuf,
    /// The palisade-node binary.
    pub node_binary: PathBuf,
    /// Seed for identities and victim choice.
    pub seed: u64,
    /// Load writers per scenario.
    pub writers: usize,
    /// `palisade-audit`: when given, every scenario ends by replaying the
    /// honest nodes' whole history from genesis (a mismatch is a violation).
    pub audit_binary: Option<PathBuf>,
}

/// Run one scenario end to end; the testnet is always stopped afterwards.
pub fn run_scenario(s: &Scenario, opts: &SuiteOptions) -> Outcome {
    let started = Instant::now();
    let dir = opts.base_dir.join(format!("{}-{}", s.name, opts.seed));
    let mut outcome = Outcome {
        name: s.name,
        faults: String::new(),
        commits: 0,
        acked: 0,
        violations: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut up = UpOptions::new(&dir, &opts.node_binary);
    up.twins = s.twins;
    up.byzantine = s
        .byzantine
        .iter()
        .map(|&(i, m)| (i, m.to_string()))
        .collect();
    up.round_timeout_ms = 500;
    up.nodes = s.nodes;
    if s.remote_dc {
        up.datacenter = datacenters::REMOTE_DC.into();
        up.chain_id = format!("palisade-{}", datacenters::REMOTE_DC);
    }
    up.retain_heights = s.retain_heights;
    let mut net = match cluster::generate(&up) {
        Ok(n) => n,
        Err(e) => {
            outcome.violations.push(format!("setup: {e}"));
            return outcome;
        }
    };
    let result = drive(s, &mut net, opts, &mut outcome);
    if let Err(e) = result {
        outcome.violations.push(format!("harness: {e}"));
    }
    if let Err(e) = net.down() {
        outcome.violations.push(format!("stopping: {e}"));
    }
    outcome.elapsed = started.elapsed();
    outcome
}

fn drive(
    s: &Scenario,
    net: &mut Testnet,
    opts: &SuiteOptions,
    outcome: &mut Outcome,
) -> Result<(), Box<dyn std::error::Error>> {
    net.start_all()?;
    let honest: Vec<usize> = (0..net.record().nodes.len())
        .filter(|i| (s.honest)(*i))
        .collect();
    cluster::wait_for_height(net, 2, 3, Duration::from_secs(60), |_| {})?;
    let network = load_network_file(&net.layout().network_file())?;
    let mut authority = Signer::load(&net.layout().authority_key())?;
    let watcher = if s.watch {
        Some(watcher::Watcher::start(&network)?)
    } else {
        None
    };
    let load = Load::start(&network, &mut authority, opts.writers, 10_000, opts.seed)?;
    std::thread::sleep(Duration::from_secs(2));
    let mut run = Run {
        net,
        violations: Vec::new(),
        seed: opts.seed,
    };
    let faults = (s.inject)(&mut run);
    // Keep the load going a little after healing, then stop it.
    std::thread::sleep(Duration::from_secs(2));
    let (acked, _failed) = load.stop(Duration::from_secs(15));
    outcome.faults = faults?;
    outcome.acked = acked.len();
    if let Some(w) = watcher {
        let (missed, errors) = w.finish(&acked, Duration::from_secs(30));
        let missed_note = if missed.is_empty() {
            "every ack delivered".to_string()
        } else {
            format!("{} violation lines", missed.len())
        };
        outcome.violations.extend(missed);
        outcome.faults +=
            &format!("; verified watch: {missed_note}, {errors} errors routed around");
    }
    outcome.violations.append(&mut run.violations);
    // Let in-flight commits settle before comparing replicas.
    std::thread::sleep(Duration::from_secs(2));
    outcome.violations.extend(check(&run, &honest, &acked));
    outcome.commits = run.height(&honest);
    match &opts.audit_binary {
        // An audit replays from genesis: pruning nodes no longer hold it.
        Some(_) if s.retain_heights > 0 => outcome.faults += "; not audited (the nodes prune)",
        Some(bin) => {
            let (note, violations) = audit_history(bin, run.net, &honest);
            outcome.faults += &format!("; {note}");
            outcome.violations.extend(violations);
        }
        None => {}
    }
    Ok(())
}

/// Replay the honest nodes' history with `palisade-audit` (bounded: killed
/// by PID after two minutes). Returns a note for the table and violations.
fn audit_history(bin: &Path, net: &Testnet, honest: &[usize]) -> (String, Vec<String>) {
    let layout = net.layout();
    let evidence = layout.network_file().with_file_name("audit-evidence.jsonl");
    // Its report goes to a file, not a pipe: a long list of findings would
    // fill a pipe nobody reads until the process ends, and the audit would
    // then hang until the bound and be reported as not answering.
    let report = layout.network_file().with_file_name("audit.out");
    let out = match std::fs::File::create(&report) {
        Ok(f) => f,
        Err(e) => {
            return (
                String::new(),
                vec![format!("audit: {}: {e}", report.display())],
            )
        }
    };
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--network")
        .arg(layout.network_file())
        .arg("--evidence")
        .arg(&evidence)
        .stdout(out)
        .stderr(std::process::Stdio::null());
    for &i in honest {
        if net.node_status(i).is_ok() {
            cmd.arg("--node").arg(&net.record().nodes[i].api_url);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                String::new(),
                vec![format!("audit: {}: {e}", bin.display())],
            )
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = std::fs::read_to_string(&report).unwrap_or_default();
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("audit: "))
        .unwrap_or("")
        .to_string();
    match status {
        Some(s) if s.success() && last.ends_with(" 0 mismatches") => (last, Vec::new()),
        Some(s) => {
            let mut v: Vec<String> = stdout
                .lines()
                .filter(|l| !l.starts_with("audit: ") && !l.trim().is_empty())
                .map(|l| format!("audit: {l}"))
                .collect();
            v.push(format!(
                "audit exited {:?}: {last} (evidence: {})",
                s.code(),
                evidence.display()
            ));
            (last, v)
        }
        None => (String::new(), vec!["audit: no answer within 120 s".into()]),
    }
}

/// Print the table of outcomes.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{:<18} {:>7} {:>6} {:>10} {:>7}  faults\n",
        "scenario", "commits", "acked", "violations", "time"
    );
    for o in outcomes {
        out += &format!(
            "{:<18} {:>7} {:>6} {:>10} {:>6.1}s  {}\n",
            o.name,
            o.commits,
            o.acked,
            o.violations.len(),
            o.elapsed.as_secs_f64(),
            o.faults
        );
        for v in &o.violations {
            out += &format!("    ! {v}\n");
        }
    }
    out
}

/// Find the `palisade-node` binary for tests: next to the running
/// executable's target directory, building it with `$CARGO` when missing.
pub fn node_binary_for_tests(exe: &Path) -> Result<PathBuf, String> {
    workspace_binary_for_tests(exe, "palisade-node", "palisade-node")
}

/// Find binary `bin` of workspace package `package` for tests, next to the
/// running test executable's target directory (`target/<profile>/`),
/// building it with `$CARGO` first: a no-op when it is fresh, and a test
/// never runs a binary older than the code it tests.
pub fn workspace_binary_for_tests(exe: &Path, package: &str, bin: &str) -> Result<PathBuf, String> {
    // target/<profile>/deps/<test-binary> -> target/<profile>/<bin>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    let path = profile_dir.join(bin);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-p", package, "--bin", bin]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|e| format!("running cargo build: {e}"))?;
    if !status.success() || !path.exists() {
        return Err(format!("could not build {}", path.display()));
    }
    Ok(path)
}
