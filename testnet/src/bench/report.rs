//! The side-by-side table: Palisade, etcd, and the ratio Palisade/etcd.

use crate::bench::procfs::Usage;
use crate::bench::stats::{Latencies, PhaseResult};
use crate::bench::workload::{Shape, SystemResult};

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.abs() > f64::EPSILON => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

fn pct(l: &Latencies, p: f64) -> Option<f64> {
    l.percentile_ms(p)
}

fn cores(u: &Usage) -> Option<f64> {
    Some(u.total_cores())
}

fn per_node(u: &Usage) -> String {
    u.cores
        .iter()
        .map(|c| f(c.map(|c| c * 100.0), 0))
        .collect::<Vec<_>>()
        .join("/")
}

/// CPU milliseconds (all server processes) per successful operation.
fn cpu_ms_per_op(u: &Usage, phase: &PhaseResult) -> Option<f64> {
    (phase.ok > 0).then(|| u.total_cores() * u.wall.as_secs_f64() * 1000.0 / phase.ok as f64)
}

/// Rows: (metric, Palisade value, etcd value); lower-is-better does not
/// change the ratio's direction (always Palisade/etcd).
fn rows(
    p: Option<&SystemResult>,
    e: Option<&SystemResult>,
) -> Vec<(String, Option<f64>, Option<f64>, usize)> {
    let get = |s: Option<&SystemResult>, g: &dyn Fn(&SystemResult) -> Option<f64>| s.and_then(g);
    let row = |name: &str, g: &dyn Fn(&SystemResult) -> Option<f64>, digits: usize| {
        (name.to_string(), get(p, g), get(e, g), digits)
    };
    vec![
        row("writes/s (loaded)", &|s| Some(s.writes.rate()), 0),
        row("write p50 ms (loaded)", &|s| s.writes.latencies.p50(), 2),
        row("write p99 ms (loaded)", &|s| s.writes.latencies.p99(), 2),
        row("writes/s (single client)", &|s| Some(s.single.rate()), 0),
        row(
            "write p50 ms (single client)",
            &|s| s.single.latencies.p50(),
            2,
        ),
        row(
            "write p99 ms (single client)",
            &|s| s.single.latencies.p99(),
            2,
        ),
        row(
            "lookups/s (Palisade verified, etcd serializable)",
            &|s| Some(s.reads.rate()),
            0,
        ),
        row("lookup p50 ms", &|s| s.reads.latencies.p50(), 2),
        row("lookup p99 ms", &|s| s.reads.latencies.p99(), 2),
        row(
            "watch ack->event p50 ms",
            &|s| pct(&s.watch_from_ack, 50.0),
            2,
        ),
        row(
            "watch ack->event p99 ms",
            &|s| pct(&s.watch_from_ack, 99.0),
            2,
        ),
        row(
            "watch submit->event p50 ms",
            &|s| pct(&s.watch_from_submit, 50.0),
            2,
        ),
        row(
            "watch submit->event p99 ms",
            &|s| pct(&s.watch_from_submit, 99.0),
            2,
        ),
        row(
            "idle CPU, all servers (% of a core)",
            &|s| cores(&s.idle).map(|c| c * 100.0),
            1,
        ),
        row(
            "CPU under writes, all servers (cores)",
            &|s| cores(&s.writes_usage),
            2,
        ),
        row(
            "server CPU ms per write",
            &|s| cpu_ms_per_op(&s.writes_usage, &s.writes),
            3,
        ),
        row(
            "bench client CPU under writes (cores)",
            &|s| Some(s.writes_client_cores),
            2,
        ),
        row(
            "CPU under reads, all servers (cores)",
            &|s| cores(&s.reads_usage),
            2,
        ),
        row(
            "server CPU ms per lookup",
            &|s| cpu_ms_per_op(&s.reads_usage, &s.reads),
            3,
        ),
        row(
            "bench client CPU under reads (cores)",
            &|s| Some(s.reads_client_cores),
            2,
        ),
        row(
            "disk growth per write, all replicas (B, file sizes)",
            &|s| s.disk_per_write(),
            0,
        ),
        row(
            "server-to-server bytes sent per write, all servers (B)",
            &|s| s.peer_bytes_per_write(),
            0,
        ),
        row(
            "syscall write bytes per write, all servers (B)",
            &|s| s.io_per_write().map(|i| i.wchar as f64),
            0,
        ),
        row(
            "syscall read bytes per write, all servers (B)",
            &|s| s.io_per_write().map(|i| i.rchar as f64),
            0,
        ),
        row(
            "storage write bytes per write, all servers (B)",
            &|s| s.io_per_write().map(|i| i.write_bytes as f64),
            0,
        ),
        row("value bytes per write", &|s| Some(s.value_bytes as f64), 0),
    ]
}

/// The whole report as markdown.
pub fn render(
    shape: &Shape,
    p: Option<&SystemResult>,
    e: Option<&SystemResult>,
    notes: &[String],
) -> String {
    let mut out = format!(
        "workload: {} writers, {} readers, {:?} per phase, single-writer phase {:?}, read service of {} instances\n\n",
        shape.writers, shape.clients, shape.duration, shape.single_duration, shape.read_instances
    );
    out.push_str("| metric | Palisade (4 validators) | etcd 3.4 (3 members) | Palisade/etcd |\n|---|---:|---:|---:|\n");
    for (name, a, b, d) in rows(p, e) {
        out.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            f(a, d),
            f(b, d),
            ratio(a, b)
        ));
    }
    for (label, s) in [("Palisade", p), ("etcd", e)] {
        if let Some(s) = s {
            out.push_str(&format!(
                "\n{label}: per process CPU % idle {} | writes {} | reads {}; errors: single {}, writes {}, reads {}; watch missed {} of {} writes",
                per_node(&s.idle),
                per_node(&s.writes_usage),
                per_node(&s.reads_usage),
                s.single.errors,
                s.writes.errors,
                s.reads.errors,
                s.watch_missed,
                s.writes.ok,
            ));
            for err in s
                .single
                .sample_errors
                .iter()
                .chain(&s.writes.sample_errors)
                .chain(&s.reads.sample_errors)
                .take(3)
            {
                out.push_str(&format!("\n  e.g. {err}"));
            }
            out.push('\n');
        }
    }
    if let Some(fr) = p.and_then(|p| p.fault.as_ref()) {
        let healthy = p.map(|p| p.writes.rate()).unwrap_or(0.0);
        out.push_str(&format!(
            "\nPalisade with 1 of 4 validators killed: blocks/s idle healthy {:.1}, first window after the kill {:.1}, second window {:.1} ({} of healthy); then loaded writes/s {:.0} vs {:.0} healthy ({}); write p50 {} ms; errors {}\n",
            fr.healthy_blocks_per_s,
            fr.transition_blocks_per_s,
            fr.degraded_blocks_per_s,
            ratio(Some(fr.degraded_blocks_per_s), Some(fr.healthy_blocks_per_s)),
            fr.degraded_writes.rate(),
            healthy,
            ratio(Some(fr.degraded_writes.rate()), Some(healthy)),
            f(fr.degraded_writes.latencies.p50(), 2),
            fr.degraded_writes.errors,
        ));
    }
    for n in notes {
        out.push_str(&format!("\nnote: {n}"));
    }
    out.push('\n');
    out
}
