//! Latency samples and percentiles, and the closed-loop phase runner every
//! workload of the bench uses (same loop for Palisade and etcd, so client
//! overheads are comparable).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Latency samples in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    micros: Vec<i64>,
}

impl Latencies {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a sample.
    pub fn push(&mut self, d: Duration) {
        self.micros.push(d.as_micros() as i64);
    }

    /// Add a signed sample in microseconds.
    pub fn push_micros(&mut self, us: i64) {
        self.micros.push(us);
    }

    /// Merge another set.
    pub fn extend(&mut self, other: &Latencies) {
        self.micros.extend_from_slice(&other.micros);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The `p`-th percentile (0..=100) in milliseconds, `None` without samples.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.micros.is_empty() {
            return None;
        }
        let mut v = self.micros.clone();
        v.sort_unstable();
        let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        Some(v[rank.min(v.len() - 1)] as f64 / 1000.0)
    }

    /// Median in milliseconds.
    pub fn p50(&self) -> Option<f64> {
        self.percentile_ms(50.0)
    }

    /// 99th percentile in milliseconds.
    pub fn p99(&self) -> Option<f64> {
        self.percentile_ms(99.0)
    }
}

/// What one closed-loop phase did.
#[derive(Debug, Clone, Default)]
pub struct PhaseResult {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub errors: u64,
    /// The first few error messages.
    pub sample_errors: Vec<String>,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Latency of every successful operation.
    pub latencies: Latencies,
    /// Every successful operation as (completion time since the phase
    /// began, latency), for the bench's CSV and plot.
    pub timeline: Vec<(Duration, Duration)>,
}

impl PhaseResult {
    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.ok as f64 / s
        } else {
            0.0
        }
    }
}

/// Run `threads` closed-loop workers for at most `duration` and at most
/// `max_ops` operations in total. Worker `t` is built by `make(t)` (its
/// client, its identity); each operation is `op(&mut state, n)` with `n`
/// the worker's own operation count. A failed operation pauses its worker
/// 50 ms so that a dead target does not spin.
pub fn closed_loop<S, M, O>(
    threads: usize,
    duration: Duration,
    max_ops: u64,
    make: M,
    op: O,
) -> PhaseResult
where
    S: Send,
    M: Fn(usize) -> Result<S, String> + Sync,
    O: Fn(&mut S, u64) -> Result<(), String> + Sync,
{
    let started = Instant::now();
    let deadline = started + duration;
    let issued = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let merged = Arc::new(Mutex::new(PhaseResult::default()));
    let done = AtomicU64::new(0);
    let live = std::sync::atomic::AtomicUsize::new(threads.max(1));
    // A progress bar on a terminal (indicatif draws nothing otherwise).
    let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} s  {msg}")
            .expect("valid template"),
    );
    std::thread::scope(|scope| {
        {
            let (bar, done, live) = (&bar, &done, &live);
            scope.spawn(move || {
                while live.load(Ordering::Relaxed) > 0 {
                    bar.set_position(started.elapsed().as_secs());
                    bar.set_message(format!("{} ops", done.load(Ordering::Relaxed)));
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
        for t in 0..threads.max(1) {
            let (make, op, issued, stop, merged) = (&make, &op, &issued, &stop, merged.clone());
            let (done, live) = (&done, &live);
            scope.spawn(move || {
                let mut local = PhaseResult::default();
                match make(t) {
                    Ok(mut state) => {
                        let mut n = 0u64;
                        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                            if issued.fetch_add(1, Ordering::Relaxed) >= max_ops {
                                stop.store(true, Ordering::Relaxed);
                                break;
                            }
                            let begun = Instant::now();
                            match op(&mut state, n) {
                                Ok(()) => {
                                    done.fetch_add(1, Ordering::Relaxed);
                                    local.ok += 1;
                                    let took = begun.elapsed();
                                    local.latencies.push(took);
                                    local.timeline.push((started.elapsed(), took));
                                }
                                Err(e) => {
                                    local.errors += 1;
                                    if local.sample_errors.len() < 3 {
                                        local.sample_errors.push(e);
                                    }
                                    std::thread::sleep(Duration::from_millis(50));
                                }
                            }
                            n += 1;
                        }
                    }
                    Err(e) => {
                        local.errors += 1;
                        local.sample_errors.push(format!("worker {t} setup: {e}"));
                    }
                }
                let mut m = merged.lock().expect("phase lock");
                m.ok += local.ok;
                m.errors += local.errors;
                if m.sample_errors.len() < 5 {
                    m.sample_errors.extend(local.sample_errors);
                }
                m.latencies.extend(&local.latencies);
                m.timeline.extend_from_slice(&local.timeline);
                live.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    let mut result = Arc::try_unwrap(merged)
        .map(|m| m.into_inner().expect("phase lock"))
        .unwrap_or_else(|a| a.lock().expect("phase lock").clone());
    bar.finish_and_clear();
    result.elapsed = started.elapsed();
    result.timeline.sort_unstable();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let mut l = Latencies::new();
        for i in 1..=100 {
            l.push(Duration::from_millis(i));
        }
        assert_eq!(l.p50(), Some(51.0));
        assert_eq!(l.p99(), Some(99.0));
        assert_eq!(Latencies::new().p50(), None);
    }

    #[test]
    fn closed_loop_respects_the_op_bound() {
        let r = closed_loop(
            3,
            Duration::from_secs(5),
            10,
            |_| Ok(()),
            |_: &mut (), _| Ok(()),
        );
        assert_eq!(r.ok, 10);
        assert_eq!(r.errors, 0);
    }
}
