//! The workload shape both systems run, and what a run of it measured.
//!
//! Shape (identical for Palisade and etcd):
//! 1. idle: nothing for a few seconds (CPU of an idle cluster);
//! 2. single: one writer, closed loop (commit latency without load);
//! 3. writes: `writers` concurrent writers, closed loop, each its own
//!    identity (Palisade) or connection (etcd); writer `w`'s `n`-th write
//!    (re)registers instance `w{w}-{i}` (`i = n % 256`) of service
//!    `s{w}-{i/32}` with version `n` (etcd: key `/bench/SERVICE/INSTANCE`,
//!    the value starting with `n:`), so no service grows past 32 instances
//!    and no identity past Palisade's default 1,024 instances; one watcher
//!    follows the namespace (etcd: the key prefix) and timestamps every
//!    write (`instance#n`) it is told of;
//! 4. reads: `clients` concurrent readers of the one service `bench/read`
//!    (`read_instances` instances), each pinned to a node/member round-robin.
//!
//! A write's latency is submit -> commit acknowledged (Palisade: a verified
//! receipt; etcd: the put's answer). Watch propagation is write acknowledged
//! -> watch event (negative when the event arrives first) and write
//! submitted -> watch event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bench::procfs::{IoCounters, Usage};
use crate::bench::stats::{Latencies, PhaseResult};

/// Namespace (etcd: top-level prefix) of the bench.
pub const NAMESPACE: &str = "bench";
/// The service the readers look up.
pub const READ_SERVICE: &str = "read";
/// Instances per written service.
pub const INSTANCES_PER_SERVICE: u64 = 32;
/// Distinct instances one writer cycles through.
pub const INSTANCES_PER_WRITER: u64 = 256;

/// Service and instance of writer `w`'s `n`-th write.
pub fn write_target(w: usize, n: u64) -> (String, String) {
    let i = n % INSTANCES_PER_WRITER;
    (
        format!("s{w}-{}", i / INSTANCES_PER_SERVICE),
        format!("w{w}-{i}"),
    )
}

/// The watch log's name of the write of version `n` of `instance`.
pub fn write_tag(instance: &str, n: u64) -> String {
    format!("{instance}#{n}")
}

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Concurrent writers in the loaded write phase.
    pub writers: usize,
    /// Concurrent readers.
    pub clients: usize,
    /// Length of the loaded write phase and of the read phase.
    pub duration: Duration,
    /// Length of the single-writer phase.
    pub single_duration: Duration,
    /// Length of the idle phase.
    pub idle_duration: Duration,
    /// Upper bound on operations per phase.
    pub max_ops: u64,
    /// Instances of the read service.
    pub read_instances: usize,
}

/// Times of writes and of the watch events that announced them, by
/// [`write_tag`].
#[derive(Debug, Default)]
pub struct WatchLog {
    submitted: Mutex<HashMap<String, (Instant, Instant)>>,
    seen: Mutex<HashMap<String, Instant>>,
}

impl WatchLog {
    /// Record that write `tag` was submitted at `at` and acknowledged now.
    pub fn acked(&self, tag: String, at: Instant) {
        let now = Instant::now();
        self.submitted
            .lock()
            .expect("watch log")
            .insert(tag, (at, now));
    }

    /// Record that a watch event announced write `tag` now (first time only).
    pub fn seen(&self, tag: String) {
        let now = Instant::now();
        self.seen
            .lock()
            .expect("watch log")
            .entry(tag)
            .or_insert(now);
    }

    /// (acknowledged -> event, submitted -> event, acknowledged writes never seen).
    pub fn propagation(&self) -> (Latencies, Latencies, usize) {
        let submitted = self.submitted.lock().expect("watch log");
        let seen = self.seen.lock().expect("watch log");
        let (mut from_ack, mut from_submit, mut missed) = (Latencies::new(), Latencies::new(), 0);
        for (instance, (sub, ack)) in submitted.iter() {
            match seen.get(instance) {
                Some(ev) => {
                    let signed = if *ev >= *ack {
                        (*ev - *ack).as_micros() as i64
                    } else {
                        -((*ack - *ev).as_micros() as i64)
                    };
                    from_ack.push_micros(signed);
                    from_submit.push(ev.saturating_duration_since(*sub));
                }
                None => missed += 1,
            }
        }
        (from_ack, from_submit, missed)
    }
}

/// Consensus progress with one replica stopped (Palisade only).
#[derive(Debug, Clone)]
pub struct FaultResult {
    /// Blocks per second with every validator up, no load.
    pub healthy_blocks_per_s: f64,
    /// Blocks per second in the first window after the kill, no load.
    pub transition_blocks_per_s: f64,
    /// Blocks per second in the second window after the kill, no load.
    pub degraded_blocks_per_s: f64,
    /// The loaded write phase again with one validator killed.
    pub degraded_writes: PhaseResult,
}

/// Everything one system's run measured.
#[derive(Debug, Clone)]
pub struct SystemResult {
    /// "palisade" or "etcd".
    pub system: String,
    /// Number of server processes.
    pub processes: usize,
    /// Bytes of one write's value (Palisade: the encoded signed registration).
    pub value_bytes: usize,
    /// Idle phase: server CPU.
    pub idle: Usage,
    /// Single-writer phase.
    pub single: PhaseResult,
    /// Loaded write phase.
    pub writes: PhaseResult,
    /// Server CPU and I/O during the loaded writes.
    pub writes_usage: Usage,
    /// Bench client CPU during the loaded writes (share of one core).
    pub writes_client_cores: f64,
    /// Watch propagation, acknowledged -> event.
    pub watch_from_ack: Latencies,
    /// Watch propagation, submitted -> event.
    pub watch_from_submit: Latencies,
    /// Acknowledged writes the watcher did not report before the phase ended.
    pub watch_missed: usize,
    /// Read phase.
    pub reads: PhaseResult,
    /// Server CPU during the reads.
    pub reads_usage: Usage,
    /// Bench client CPU during the reads (share of one core).
    pub reads_client_cores: f64,
    /// Bytes on disk of all data directories before the write phases.
    pub disk_before: u64,
    /// ... and after.
    pub disk_after: u64,
    /// Consensus with a replica down (Palisade only, when asked).
    pub fault: Option<FaultResult>,
    /// Bytes the servers sent each other during the loaded writes, from
    /// their own counters (Palisade: libp2p transport bytes, Noise and
    /// Yamux framing included; etcd: `etcd_network_peer_sent_bytes_total`).
    pub peer_bytes_writes: Option<u64>,
}

impl SystemResult {
    /// Writes acknowledged in the single and loaded phases.
    pub fn total_writes(&self) -> u64 {
        self.single.ok + self.writes.ok
    }

    /// Disk growth per acknowledged write (apparent file sizes; negative
    /// when compaction freed more than the run wrote).
    pub fn disk_per_write(&self) -> Option<f64> {
        let n = self.total_writes();
        (n > 0).then(|| (self.disk_after as f64 - self.disk_before as f64) / n as f64)
    }

    /// Server-to-server bytes per acknowledged write in the loaded phase.
    pub fn peer_bytes_per_write(&self) -> Option<f64> {
        let n = self.writes.ok;
        let bytes = self.peer_bytes_writes?;
        (n > 0).then(|| bytes as f64 / n as f64)
    }

    /// Server syscall I/O per acknowledged write in the loaded phase.
    pub fn io_per_write(&self) -> Option<IoCounters> {
        let n = self.writes.ok;
        (n > 0).then(|| {
            let t = self.writes_usage.total_io();
            IoCounters {
                rchar: t.rchar / n,
                wchar: t.wchar / n,
                write_bytes: t.write_bytes / n,
            }
        })
    }
}

/// Sum, over the servers at `urls`, of Prometheus counter `name` (samples
/// whose labels contain `label`); `None` if a server does not answer.
pub fn metric_sum(urls: &[String], name: &str, label: &str) -> Option<u64> {
    let mut total = 0.0;
    for url in urls {
        total += crate::cluster::fetch_metric(url, name, label).ok()?;
    }
    Some(total as u64)
}
