//! Resource figures of processes by pid, from `/proc`: CPU time
//! (`/proc/PID/stat` utime + stime), I/O (`/proc/PID/io`), and bytes on disk
//! (the sum of file lengths under a directory).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Clock ticks per second (`getconf CLK_TCK`, 100 if that fails).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time (user + system) a process has used, `None` when it is gone.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit(')').next()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    Some(Duration::from_micros((utime + stime) * 1_000_000 / ticks))
}

/// `/proc/PID/io` counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes passed to read-like syscalls (sockets and files).
    pub rchar: u64,
    /// Bytes passed to write-like syscalls (sockets and files).
    pub wchar: u64,
    /// Bytes the process caused to be written to storage.
    pub write_bytes: u64,
}

/// The process's I/O counters, `None` when unreadable.
pub fn io(pid: u32) -> Option<IoCounters> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let mut c = IoCounters::default();
    for line in text.lines() {
        let (k, v) = line.split_once(':')?;
        let v: u64 = v.trim().parse().ok()?;
        match k {
            "rchar" => c.rchar = v,
            "wchar" => c.wchar = v,
            "write_bytes" => c.write_bytes = v,
            _ => {}
        }
    }
    Some(c)
}

/// Scheduler counters of threads (`/proc/.../schedstat`): time on a core,
/// time runnable but waiting for one, and times scheduled in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedStat {
    /// Nanoseconds run.
    pub run_ns: u64,
    /// Nanoseconds spent on a run queue waiting for a core.
    pub wait_ns: u64,
    /// Times scheduled in.
    pub slices: u64,
}

impl SchedStat {
    fn parse(text: &str) -> Option<Self> {
        let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
        Some(SchedStat {
            run_ns: f.next()??,
            wait_ns: f.next()??,
            slices: f.next()??,
        })
    }

    /// The calling thread's counters, `None` where `/proc` does not say.
    pub fn this_thread() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
    }

    /// Summed over the threads of `pids` named `name` (bounded: the first
    /// 1,024 threads of each process).
    pub fn threads_named(pids: &[u32], name: &str) -> Self {
        let mut sum = SchedStat::default();
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten().take(1024) {
                let dir = task.path();
                let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                if comm.trim_end() != name {
                    continue;
                }
                if let Some(s) = std::fs::read_to_string(dir.join("schedstat"))
                    .ok()
                    .and_then(|t| Self::parse(&t))
                {
                    sum.add(&s);
                }
            }
        }
        sum
    }

    /// Add `other`.
    pub fn add(&mut self, other: &Self) {
        self.run_ns += other.run_ns;
        self.wait_ns += other.wait_ns;
        self.slices += other.slices;
    }

    /// What was added since `earlier` (threads that ended are not in either).
    pub fn since(&self, earlier: &Self) -> Self {
        SchedStat {
            run_ns: self.run_ns.saturating_sub(earlier.run_ns),
            wait_ns: self.wait_ns.saturating_sub(earlier.wait_ns),
            slices: self.slices.saturating_sub(earlier.slices),
        }
    }
}

/// Resident set size of a process in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Bytes on disk under `dir`: the sum of its files' lengths (apparent size),
/// 0 when it does not exist. Not allocated blocks (`du -s`): RocksDB
/// preallocates its write-ahead log, so allocated blocks move in steps of
/// tens of MB and a short run's growth read as 0 although every write had
/// been appended to the log.
pub fn disk_usage(dir: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }
    walk(dir)
}

/// A CPU and I/O snapshot of a set of processes, to take deltas over a phase.
#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    cpu: Vec<Option<Duration>>,
    io: Vec<Option<IoCounters>>,
}

/// Per-process use between two snapshots.
#[derive(Debug, Clone)]
pub struct Usage {
    /// Wall time between the snapshots.
    pub wall: Duration,
    /// Share of one core each process used (1.0 = one full core), `None` if it died.
    pub cores: Vec<Option<f64>>,
    /// I/O deltas per process.
    pub io: Vec<Option<IoCounters>>,
}

impl Usage {
    /// Sum of the cores used by the processes that stayed alive.
    pub fn total_cores(&self) -> f64 {
        self.cores.iter().flatten().sum()
    }

    /// Sum of the I/O deltas.
    pub fn total_io(&self) -> IoCounters {
        self.io
            .iter()
            .flatten()
            .fold(IoCounters::default(), |a, b| IoCounters {
                rchar: a.rchar + b.rchar,
                wchar: a.wchar + b.wchar,
                write_bytes: a.write_bytes + b.write_bytes,
            })
    }
}

impl Snapshot {
    /// Take one for `pids`.
    pub fn take(pids: &[u32]) -> Self {
        Snapshot {
            at: Instant::now(),
            cpu: pids.iter().map(|p| cpu_time(*p)).collect(),
            io: pids.iter().map(|p| io(*p)).collect(),
        }
    }

    /// Use since `self`, for the same `pids`.
    pub fn usage_since(&self, pids: &[u32]) -> Usage {
        let now = Snapshot::take(pids);
        let wall = now.at - self.at;
        let cores = self
            .cpu
            .iter()
            .zip(&now.cpu)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Some(b.saturating_sub(*a).as_secs_f64() / wall.as_secs_f64()),
                _ => None,
            })
            .collect();
        let io = self
            .io
            .iter()
            .zip(&now.io)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => Some(IoCounters {
                    rchar: b.rchar.saturating_sub(a.rchar),
                    wchar: b.wchar.saturating_sub(a.wchar),
                    write_bytes: b.write_bytes.saturating_sub(a.write_bytes),
                }),
                _ => None,
            })
            .collect();
        Usage { wall, cores, io }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_measurable() {
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_time(u32::MAX).is_none());
    }
}
