//! The reporter task: every [`REPORT_INTERVAL`] it
//! 1. follows committed state into the tracker (every service at start, then
//!    the services the new heights changed, from the per-height change index);
//! 2. signs this validator's silence reports (one per ≤ 64 silent instances
//!    of a service), keeps them in the pool and sends them to every peer as
//!    one frame (an empty frame withdraws the previous ones);
//! 3. carries what a quorum of fresh reports names into ExpireSilent
//!    transactions. Every validator carries, staggered by its position in
//!    the set ([`STAGGER`] each) so that usually one does; a silent liar
//!    only delays the next.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use palisade_consensus::state::StateReader;
use palisade_crypto::{
    encode, PublicKey, SecretKey, SignedSilenceReport, SilenceReport, TxBody, ValidatorSet,
    MAX_SILENT_PER_REPORT,
};
use tracing::{debug, info, warn};

use super::now_ms;
use super::pool::{Batch, ReportPool};
use super::tracker::{Target, Tracked};
use crate::context::{Context, Wire};
use crate::shutdown::Shutdown;

/// How often reports are signed, sent and carried.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Delay per position in the validator set before carrying a report.
pub(crate) const STAGGER: Duration = Duration::from_secs(3);
/// How long an instance carried in a transaction is not carried again.
const RESUBMIT_AFTER_MS: u64 = 15_000;
/// Fresh reports must stay fresh this long (the block that carries them).
const FRESH_MARGIN_MS: u64 = 5_000;

/// The reporter of one validator.
pub(crate) struct Reporter {
    ctx: Arc<Context>,
    key: SecretKey,
    max_tx_bytes: usize,
    scanned_height: Option<u64>,
    /// Instance -> when this node first saw a quorum name it.
    qualified_since: HashMap<Target, u64>,
    /// Instance -> when this node carried it.
    carried: HashMap<Target, u64>,
}

impl Reporter {
    pub(crate) fn new(ctx: Arc<Context>, key: SecretKey, max_tx_bytes: usize) -> Self {
        Reporter {
            ctx,
            key,
            max_tx_bytes,
            scanned_height: None,
            qualified_since: HashMap::new(),
            carried: HashMap::new(),
        }
    }

    /// Take a peer's frame of reports (signatures checked here, once).
    pub(crate) fn handle_frame(ctx: &Context, from: PublicKey, reports: Vec<SignedSilenceReport>) {
        let set = ctx.validators.read().expect("validators lock").clone();
        match ReportPool::check(&ctx.chain_id, &set, &from, &reports) {
            Ok(()) => ctx
                .leases
                .pool
                .lock()
                .expect("report pool lock")
                .replace(from, reports),
            Err(e) => debug!(from = %from.short(), error = %e, "silence reports refused"),
        }
    }

    /// Step 1: follow committed state.
    fn refresh(&mut self) {
        let Ok(reader) = StateReader::latest(&self.ctx.store) else {
            return;
        };
        let Some(crate::scan::Scan {
            latest,
            services,
            full,
        }) = crate::scan::since(&self.ctx.store, &reader, self.scanned_height)
        else {
            return;
        };
        let mut tracker = self.ctx.leases.tracker.lock().expect("lease tracker lock");
        if full {
            tracker.retain_services(&services.iter().cloned().collect());
        }
        for (ns, svc) in services {
            let record = match reader.service_record(&ns, &svc) {
                Ok(r) => r,
                Err(e) => {
                    debug!(%ns, %svc, error = %e, "lease scan: service unreadable");
                    self.scanned_height = None;
                    return;
                }
            };
            let now: HashMap<String, Tracked> = record
                .map(|s| s.instances)
                .unwrap_or_default()
                .into_iter()
                .map(|i| {
                    (
                        i.instance,
                        Tracked {
                            owner: i.owner,
                            ttl_ms: u64::from(i.ttl_secs) * 1000,
                            deadline_ms: i.lease_expires_at_ms,
                        },
                    )
                })
                .collect();
            tracker.replace_service(&ns, &svc, now);
        }
        self.scanned_height = Some(latest);
    }

    /// Step 2: sign and send this validator's reports.
    fn report(&self, set: &ValidatorSet, now: u64) {
        let silent = self
            .ctx
            .leases
            .tracker
            .lock()
            .expect("lease tracker lock")
            .silent(now);
        let me = self.key.public();
        let mut reports = Vec::new();
        'all: for ((ns, svc), instances) in silent {
            for chunk in instances.chunks(MAX_SILENT_PER_REPORT) {
                if reports.len() == super::pool::MAX_REPORTS_PER_VALIDATOR {
                    warn!("more silent instances than one frame of reports holds; the rest wait");
                    break 'all;
                }
                reports.push(
                    SilenceReport {
                        chain_id: self.ctx.chain_id.clone(),
                        epoch: set.epoch,
                        validator: me,
                        observed_at_ms: now,
                        namespace: ns.clone(),
                        service: svc.clone(),
                        instances: chunk.to_vec(),
                    }
                    .sign(&self.key),
                );
            }
        }
        let named: usize = reports.iter().map(|r| r.report.instances.len()).sum();
        let mut pool = self.ctx.leases.pool.lock().expect("report pool lock");
        pool.retain_members(set);
        pool.replace(me, reports.clone());
        let pooled = pool.len();
        drop(pool);
        let (tracked, owners) = {
            let t = self.ctx.leases.tracker.lock().expect("lease tracker lock");
            (t.len(), t.owners())
        };
        debug!(
            tracked,
            owners,
            silent = named,
            reports = reports.len(),
            pooled,
            "lease reporter tick"
        );
        self.ctx.net.broadcast(encode(&Wire::Silence(reports)));
    }

    /// Step 3: carry what a quorum names.
    fn carry(&mut self, set: &ValidatorSet, now: u64) {
        let me = self.key.public();
        let Some(position) = set.validators.iter().position(|v| v.key == me) else {
            return;
        };
        let wait = STAGGER.as_millis() as u64 * position as u64;
        let tracker = self.ctx.leases.tracker.lock().expect("lease tracker lock");
        self.carried
            .retain(|t, at| now < at.saturating_add(RESUBMIT_AFTER_MS) && tracker.contains(t));
        let mut qualified = HashSet::new();
        let batches: Vec<Batch> = {
            let pool = self.ctx.leases.pool.lock().expect("report pool lock");
            let (since, carried) = (&mut self.qualified_since, &self.carried);
            pool.batches(set, now, FRESH_MARGIN_MS, self.max_tx_bytes, |t| {
                if !tracker.contains(t) {
                    return false;
                }
                qualified.insert(t.clone());
                let first = *since.entry(t.clone()).or_insert(now);
                now >= first + wait && !carried.contains_key(t)
            })
        };
        drop(tracker);
        self.qualified_since.retain(|t, _| qualified.contains(t));
        for batch in batches {
            let n = batch.instances.len();
            if self.submit(batch.reports) {
                for t in batch.instances {
                    self.carried.insert(t, now);
                }
                info!(instances = n, "silent instances carried to consensus");
            }
        }
    }

    fn submit(&self, reports: Vec<SignedSilenceReport>) -> bool {
        match self
            .ctx
            .submit_own(&self.key, TxBody::ExpireSilent { reports })
        {
            Ok(_) => true,
            Err(e) => {
                debug!(error = %e, "ExpireSilent not admitted");
                false
            }
        }
    }

    fn tick(&mut self) {
        self.refresh();
        let set = self.ctx.validators.read().expect("validators lock").clone();
        if set.power_of(&self.key.public()).is_none() {
            return;
        }
        let now = now_ms();
        self.report(&set, now);
        self.carry(&set, now);
    }

    pub(crate) async fn run(mut self, mut shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(REPORT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = ticker.tick() => {
                    // Scans, signatures and pool arithmetic are CPU work.
                    let mut this = self;
                    self = match tokio::task::spawn_blocking(move || { this.tick(); this }).await {
                        Ok(s) => s,
                        Err(e) => { warn!(error = %e, "lease reporter failed"); return; }
                    };
                }
            }
        }
    }
}
