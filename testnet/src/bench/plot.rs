//! The bench's figures as files beside its table: every successful
//! operation as a CSV row, and an SVG of the loaded write phase over time
//! (writes per second, and p50/p99 latency per second) for each system.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::prelude::*;

use crate::bench::stats::PhaseResult;
use crate::bench::workload::SystemResult;

/// One system's loaded write phase, per whole second: (second, ops, p50 ms,
/// p99 ms). Seconds without an operation have 0 ops and no latency.
pub fn per_second(phase: &PhaseResult) -> Vec<(u64, u64, Option<f64>, Option<f64>)> {
    let secs = phase.elapsed.as_secs().max(1);
    let mut buckets: Vec<Vec<u64>> = vec![Vec::new(); secs as usize + 1];
    for (at, took) in &phase.timeline {
        let s = (at.as_secs() as usize).min(buckets.len() - 1);
        buckets[s].push(took.as_micros() as u64);
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(s, mut v)| {
            v.sort_unstable();
            let pick = |p: f64| {
                (!v.is_empty()).then(|| {
                    let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
                    v[rank] as f64 / 1000.0
                })
            };
            (s as u64, v.len() as u64, pick(50.0), pick(99.0))
        })
        .collect()
}

/// The CSV: `system,phase,t_ms,latency_us`, one row per successful operation.
pub fn csv(systems: &[&SystemResult]) -> String {
    let mut out = String::from("system,phase,t_ms,latency_us\n");
    for s in systems {
        for (phase, r) in [
            ("single", &s.single),
            ("writes", &s.writes),
            ("reads", &s.reads),
        ] {
            for (at, took) in &r.timeline {
                let _ = writeln!(
                    out,
                    "{},{phase},{},{}",
                    s.system,
                    at.as_millis(),
                    took.as_micros()
                );
            }
        }
    }
    out
}

/// Draw the loaded write phase of each system into an SVG at `path`.
pub fn svg(systems: &[&SystemResult], path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plotting {}: {e}", path.display());
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(360);
    let series: Vec<_> = systems
        .iter()
        .map(|s| (s.system.clone(), per_second(&s.writes)))
        .collect();
    let max_t = series
        .iter()
        .map(|(_, v)| v.len() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let max_rate = series
        .iter()
        .flat_map(|(_, v)| v.iter().map(|p| p.1))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_lat = series
        .iter()
        .flat_map(|(_, v)| v.iter().filter_map(|p| p.3))
        .fold(1.0_f64, f64::max);
    let colours = [RED, BLUE, GREEN, MAGENTA];

    let mut rate = ChartBuilder::on(&top)
        .caption("loaded writes per second", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0u64..max_t, 0.0..max_rate * 1.1)
        .map_err(|e| err(&e))?;
    rate.configure_mesh()
        .x_desc("seconds into the phase")
        .y_desc("writes/s")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        rate.draw_series(LineSeries::new(
            points.iter().map(|p| (p.0, p.1 as f64)),
            c.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label(name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    rate.configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let mut lat = ChartBuilder::on(&bottom)
        .caption(
            "write latency per second (p50 solid, p99 thin)",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0u64..max_t, 0.0..max_lat * 1.1)
        .map_err(|e| err(&e))?;
    lat.configure_mesh()
        .x_desc("seconds into the phase")
        .y_desc("ms")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        lat.draw_series(LineSeries::new(
            points.iter().filter_map(|p| p.2.map(|v| (p.0, v))),
            c.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label(format!("{name} p50"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        lat.draw_series(LineSeries::new(
            points.iter().filter_map(|p| p.3.map(|v| (p.0, v))),
            c.stroke_width(1),
        ))
        .map_err(|e| err(&e))?
        .label(format!("{name} p99"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    lat.configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// Write `bench-<unix seconds>.csv` and `.svg` into `dir` (created) and
/// return their paths.
pub fn write(systems: &[&SystemResult], dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let csv_path = dir.join(format!("bench-{stamp}.csv"));
    std::fs::write(&csv_path, csv(systems)).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let svg_path = dir.join(format!("bench-{stamp}.svg"));
    svg(systems, &svg_path)?;
    Ok((csv_path, svg_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_buckets_count_and_rank() {
        let mut phase = PhaseResult {
            elapsed: Duration::from_millis(2500),
            ..PhaseResult::default()
        };
        for i in 0..10u64 {
            phase
                .timeline
                .push((Duration::from_millis(100 * i), Duration::from_millis(i + 1)));
        }
        phase
            .timeline
            .push((Duration::from_millis(2100), Duration::from_millis(40)));
        let b = per_second(&phase);
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].1, b[1].1, b[2].1), (10, 0, 1));
        assert_eq!(b[0].2, Some(6.0)); // rank round(0.5 * 9) = 5 -> 6 ms
        assert_eq!(b[0].3, Some(10.0));
        assert_eq!(b[1].2, None);
        assert_eq!(b[2].3, Some(40.0));
    }
}
