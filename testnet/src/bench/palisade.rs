//! The Palisade side: the workload shape against a running testnet
//! (`palisade-testnet up --detach --dir DIR`), with signed registrations from
//! fresh identities enrolled by `DIR/keys/authority.key`, verified receipts,
//! verified lookups and a verified namespace watch (all through the SDK, so
//! client-side verification is inside every latency).
//!
//! Each run writes in its own namespace `bench-RUN` (RUN from the clock), so
//! runs against one testnet do not meet each other's identities or limits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_client::{
    enrollment, load_network_file, parse_endpoint, parse_label, registration, Client, ClientConfig,
    Signer,
};
use palisade_crypto::{encode, NetworkFile, Role, SecretKey, TxBody};

use crate::bench::etcd::join_bounded;
use crate::bench::procfs::{disk_usage, Snapshot};
use crate::bench::stats::{closed_loop, PhaseResult};
use crate::bench::workload::{
    metric_sum, write_tag, write_target, FaultResult, Shape, SystemResult, WatchLog, NAMESPACE,
    READ_SERVICE,
};
use crate::cluster::{alive, Testnet};

/// What to run besides the shape.
#[derive(Debug, Clone)]
pub struct PalisadeOptions {
    /// Also kill the last validator, measure, and restart it.
    pub fault: bool,
    /// Length of each blocks/s window of the fault phase.
    pub fault_window: Duration,
}

/// The node's libp2p transport byte counter.
const P2P_BYTES: &str = "palisade_p2p_libp2p_bandwidth_bytes_total";

fn config(only_node: Option<String>) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(5),
        commit_timeout: Duration::from_secs(15),
        retries: 0,
        only_node,
        ..ClientConfig::default()
    }
}

fn client(net: &NetworkFile, node: Option<String>) -> Result<Client, String> {
    Client::new(net.clone(), config(node)).map_err(|e| e.to_string())
}

fn registration_body(ns: &str, service: &str, instance: &str, n: u64) -> TxBody {
    let mut reg = registration(
        ns,
        service,
        instance,
        vec![parse_endpoint("127.0.0.1:8080").expect("valid endpoint")],
        vec![parse_label("zone=eu-1a").expect("valid label")],
        600,
    )
    .expect("valid registration");
    reg.version = n.to_string();
    TxBody::Register(reg)
}

/// The encoded size of one signed registration of the workload (the value
/// size etcd is given).
pub fn registration_bytes(chain_id: &str) -> usize {
    let signer = Signer::new(SecretKey::from_seed([7; 32]));
    let (service, instance) = write_target(7, 1_000);
    // The size alone matters: any genesis hash has 32 bytes.
    let tx = signer.sign(
        chain_id,
        &palisade_crypto::Digest::ZERO,
        1_000,
        registration_body("bench-000000", &service, &instance, 1_000),
    );
    encode(&tx).len()
}

/// Enroll `count` fresh identities for `ns`, pipelining the authority's
/// sequence numbers, and wait for the last one to commit.
fn enroll(
    admin: &Client,
    authority: &mut Signer,
    ns: &str,
    run: u64,
    count: usize,
) -> Result<Vec<Signer>, String> {
    let keys: Vec<SecretKey> = (0..count)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&run.to_le_bytes());
            seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            seed[16] = 0xbe;
            SecretKey::from_seed(seed)
        })
        .collect();
    let first = admin
        .next_sequence(&authority.public())
        .map_err(|e| e.to_string())?;
    for (i, key) in keys.iter().enumerate() {
        let body = enrollment(key.public(), vec![ns.to_string()], Role::Service)
            .map_err(|e| e.to_string())?;
        let tx = authority.sign(
            admin.chain_id(),
            &admin.network().genesis_hash,
            first + i as u64,
            body,
        );
        if i + 1 < keys.len() {
            admin
                .submit(&tx)
                .map_err(|e| format!("enrollment {i}: {e}"))?;
        } else {
            admin
                .submit_and_wait(&tx)
                .map_err(|e| format!("enrollment {i}: {e}"))?;
        }
    }
    Ok(keys.into_iter().map(Signer::new).collect())
}

fn heights(net: &Testnet) -> Option<u64> {
    net.status()
        .iter()
        .filter_map(|s| s.status.as_ref().ok().map(|st| st.height))
        .max()
}

fn blocks_per_s(net: &Testnet, window: Duration) -> f64 {
    let (h0, t0) = (heights(net).unwrap_or(0), Instant::now());
    std::thread::sleep(window);
    let h1 = heights(net).unwrap_or(h0);
    h1.saturating_sub(h0) as f64 / t0.elapsed().as_secs_f64()
}

/// Run the shape against the testnet in `dir`.
pub fn run(
    dir: &std::path::Path,
    shape: &Shape,
    opts: &PalisadeOptions,
) -> Result<SystemResult, String> {
    let mut net = Testnet::open(dir).map_err(|e| e.to_string())?;
    let layout = net.layout().clone();
    let network = load_network_file(&layout.network_file()).map_err(|e| e.to_string())?;
    let validators = network.validators.validators.len();
    let nodes: Vec<(String, u32)> = net
        .record()
        .nodes
        .iter()
        .filter(|n| n.twin_of.is_none())
        .filter_map(|n| n.pid.filter(|p| alive(*p)).map(|p| (n.api_url.clone(), p)))
        .collect();
    if nodes.len() < validators {
        return Err(format!(
            "{} of {validators} validators are running; start the testnet with `palisade-testnet up --detach --dir {}`",
            nodes.len(),
            dir.display()
        ));
    }
    let pids: Vec<u32> = nodes.iter().map(|n| n.1).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.0.clone()).collect();
    let data_dirs: Vec<_> = (0..nodes.len())
        .map(|i| layout.node_dir(i).join("data"))
        .collect();
    let disk = || data_dirs.iter().map(|d| disk_usage(d)).sum::<u64>();
    let me = [std::process::id()];

    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1_000_000);
    let ns = format!("{NAMESPACE}-{run_id:06}");
    let mut authority = Signer::load(&layout.authority_key()).map_err(|e| e.to_string())?;
    let admin = client(&network, None)?;
    // Identities: the loaded writers, the single writer, the read-service owner.
    let mut signers = enroll(&admin, &mut authority, &ns, run_id, shape.writers + 2)?;
    let mut owner = signers.pop().expect("enrolled");
    let single_signer = signers.pop().expect("enrolled");
    for i in 0..shape.read_instances {
        admin
            .execute(
                &mut owner,
                registration_body(&ns, READ_SERVICE, &format!("r{i}"), 0),
            )
            .map_err(|e| format!("read service setup: {e}"))?;
    }
    let start_height = admin
        .lookup_fresh(&ns, READ_SERVICE)
        .map_err(|e| e.to_string())?
        .0
        .height;

    let idle0 = Snapshot::take(&pids);
    std::thread::sleep(shape.idle_duration);
    let idle = idle0.usage_since(&pids);
    let disk_before = disk();

    let signer_slots: Vec<std::sync::Mutex<Option<Signer>>> = signers
        .into_iter()
        .map(|s| std::sync::Mutex::new(Some(s)))
        .collect();
    let write_op = |log: Arc<WatchLog>| {
        let ns = ns.clone();
        move |(c, signer, w): &mut (Client, Signer, usize), n: u64| {
            let (service, instance) = write_target(*w, n);
            let at = Instant::now();
            c.execute(signer, registration_body(&ns, &service, &instance, n))
                .map_err(|e| e.to_string())?;
            log.acked(write_tag(&instance, n), at);
            Ok(())
        }
    };

    let single_slot = std::sync::Mutex::new(Some(single_signer));
    let single = closed_loop(
        1,
        shape.single_duration,
        shape.max_ops,
        |_| {
            let s = single_slot
                .lock()
                .expect("slot")
                .take()
                .ok_or("no signer")?;
            Ok((client(&network, Some(urls[0].clone()))?, s, 100_000))
        },
        write_op(Arc::new(WatchLog::default())),
    );

    // The watcher follows the whole namespace from before the first write.
    let log = Arc::new(WatchLog::default());
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (log, stop) = (log.clone(), stop_watch.clone());
        let watch_client = client(&network, Some(urls[urls.len() - 1].clone()))?;
        let ns = ns.clone();
        std::thread::spawn(move || {
            for update in watch_client.watch(&ns, None, Some(start_height)) {
                match update {
                    Ok(service) => {
                        for i in service.instances() {
                            let n = i.version.parse().unwrap_or(u64::MAX);
                            log.seen(write_tag(&i.instance, n));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "bench watch"),
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })
    };

    let make_writer = |t: usize| {
        let s = signer_slots[t]
            .lock()
            .expect("slot")
            .take()
            .ok_or("no signer")?;
        Ok((client(&network, Some(urls[t % urls.len()].clone()))?, s, t))
    };
    let peer_bytes = || metric_sum(&urls, P2P_BYTES, "direction=\"Outbound\"");
    let p0 = peer_bytes();
    let s0 = Snapshot::take(&pids);
    let c0 = Snapshot::take(&me);
    let writes = closed_loop(
        shape.writers,
        shape.duration,
        shape.max_ops,
        make_writer,
        write_op(log.clone()),
    );
    let writes_usage = s0.usage_since(&pids);
    let peer_bytes_writes = p0.zip(peer_bytes()).map(|(a, b)| b.saturating_sub(a));
    let writes_client_cores = c0.usage_since(&me).total_cores();
    std::thread::sleep(Duration::from_secs(1));
    stop_watch.store(true, Ordering::Relaxed);
    // One more write wakes the watcher so it sees the stop flag.
    let _ = admin.execute(&mut owner, registration_body(&ns, "sentinel", "end", 0));
    join_bounded(watcher, Duration::from_secs(5));
    let (watch_from_ack, watch_from_submit, watch_missed) = log.propagation();
    let disk_after = disk();

    let s0 = Snapshot::take(&pids);
    let c0 = Snapshot::take(&me);
    let reads: PhaseResult = closed_loop(
        shape.clients,
        shape.duration,
        shape.max_ops,
        |t| client(&network, Some(urls[t % urls.len()].clone())),
        |c: &mut Client, _| {
            let (v, _) = c
                .lookup_fresh(&ns, READ_SERVICE)
                .map_err(|e| e.to_string())?;
            if v.instances().len() != shape.read_instances {
                return Err(format!(
                    "{} instances, expected {}",
                    v.instances().len(),
                    shape.read_instances
                ));
            }
            Ok(())
        },
    );
    let reads_usage = s0.usage_since(&pids);
    let reads_client_cores = c0.usage_since(&me).total_cores();

    let fault = if opts.fault {
        Some(fault_phase(
            &mut net, &network, &ns, shape, opts, &urls, run_id,
        )?)
    } else {
        None
    };

    Ok(SystemResult {
        system: "palisade".into(),
        processes: pids.len(),
        value_bytes: registration_bytes(&network.chain_id),
        idle,
        single,
        writes,
        writes_usage,
        writes_client_cores,
        watch_from_ack,
        watch_from_submit,
        watch_missed,
        reads,
        reads_usage,
        reads_client_cores,
        disk_before,
        disk_after,
        peer_bytes_writes,
        fault,
    })
}

/// Blocks/s healthy and with the last validator killed, and the loaded
/// write phase with it killed (writers pinned to the live nodes); the
/// validator is restarted at the end.
fn fault_phase(
    net: &mut Testnet,
    network: &NetworkFile,
    ns: &str,
    shape: &Shape,
    opts: &PalisadeOptions,
    urls: &[String],
    run_id: u64,
) -> Result<FaultResult, String> {
    let victim = urls.len() - 1;
    let healthy_blocks_per_s = blocks_per_s(net, opts.fault_window);
    // Identities for the degraded phase are enrolled while all are up.
    let admin = client(network, Some(urls[0].clone()))?;
    let mut authority = Signer::load(&net.layout().authority_key()).map_err(|e| e.to_string())?;
    let signers = enroll(
        &admin,
        &mut authority,
        ns,
        run_id + 1_000_000,
        shape.writers,
    )?;
    net.kill(victim).map_err(|e| e.to_string())?;
    // The first window shows the transition (timeouts on the dead leader's
    // rounds until reputation rotates it out), the second the steady state.
    let transition_blocks_per_s = blocks_per_s(net, opts.fault_window);
    let degraded_blocks_per_s = blocks_per_s(net, opts.fault_window);
    let result = {
        let live = &urls[..victim];
        let slots: Vec<std::sync::Mutex<Option<Signer>>> = signers
            .into_iter()
            .map(|s| std::sync::Mutex::new(Some(s)))
            .collect();
        let degraded_writes = closed_loop(
            shape.writers,
            shape.duration,
            shape.max_ops,
            |t| {
                let s = slots[t].lock().expect("slot").take().ok_or("no signer")?;
                Ok((
                    client(network, Some(live[t % live.len()].clone()))?,
                    s,
                    t + 200_000,
                ))
            },
            |(c, signer, w): &mut (Client, Signer, usize), n| {
                let (service, instance) = write_target(*w, n);
                c.execute(signer, registration_body(ns, &service, &instance, n))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            },
        );
        FaultResult {
            healthy_blocks_per_s,
            transition_blocks_per_s,
            degraded_blocks_per_s,
            degraded_writes,
        }
    };
    if let Err(e) = net.restart(victim) {
        tracing::warn!(error = %e, "could not restart node {victim}");
    }
    Ok(result)
}
