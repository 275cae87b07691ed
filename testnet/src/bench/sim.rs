//! Our side of the hotstuff_rs comparison in the deterministic simulator
//! ([`crate::sim`]): 4 unmodified consensus cores over a virtual network
//! (8-12 ms one way), healthy and with one validator crashed from the start,
//! as committed blocks per virtual second. Virtual time measures the
//! protocol (rounds, timeouts, leader rotation), not this machine's CPU; the
//! real-process figures come from `bench --fault` on a testnet.

use crate::sim::{Crash, SimConfig, SimReport, Simulation};

/// Commits per virtual second with all 4 up and with validator 3 down.
#[derive(Debug, Clone)]
pub struct SimFigures {
    /// Virtual seconds per run.
    pub virtual_s: u64,
    /// Healthy run.
    pub healthy: SimReport,
    /// Validator 3 crashed at 0 and never restarted.
    pub degraded: SimReport,
}

fn simulate(seed: u64, virtual_s: u64, crash: bool) -> Result<SimReport, String> {
    let mut config = SimConfig::new(seed, 4);
    config.duration_ms = virtual_s * 1000;
    if crash {
        config.crashes.push(Crash {
            node: 3,
            leader: false,
            at_ms: 0,
            restart_at_ms: None,
            lose_state: false,
        });
    }
    Ok(Simulation::hash_chain(config, 4)
        .map_err(|e| e.to_string())?
        .run())
}

/// Run both for `virtual_s` virtual seconds with `seed`.
pub fn run(seed: u64, virtual_s: u64) -> Result<SimFigures, String> {
    Ok(SimFigures {
        virtual_s,
        healthy: simulate(seed, virtual_s, false)?,
        degraded: simulate(seed, virtual_s, true)?,
    })
}

/// The figures as text.
pub fn render(f: &SimFigures) -> String {
    let (h, d) = (f.healthy.commits_per_s(), f.degraded.commits_per_s());
    format!(
        "simulator, 4 validators, {} virtual s, 300 ms base timeout, 8-12 ms links:\n  healthy:        {:.1} commits/virtual s ({:.1} rounds/s), violations {}\n  1 of 4 crashed: {:.1} commits/virtual s ({:.1} rounds/s), violations {}\n  degraded/healthy: {:.2}\n",
        f.virtual_s,
        h,
        f.healthy.rounds_per_s(),
        f.healthy.violations.len(),
        d,
        f.degraded.rounds_per_s(),
        f.degraded.violations.len(),
        if h > 0.0 { d / h } else { 0.0 },
    )
}
