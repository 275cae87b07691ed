//! Expiry on validators' silence reports (`LeaseMode::Attested` chains).
//!
//! Rule of an `ExpireSilent` transaction (its signer must be a validator of
//! the block's set, like a health report's):
//! 1. the chain's lease mode is `Attested`, else the transaction is rejected;
//! 2. it carries 1 to [`MAX_REPORTS_PER_TX`] reports, each well formed
//!    (instances sorted, distinct, at most `MAX_SILENT_PER_REPORT`), for
//!    this chain and the epoch of the block's validator set, by a member of
//!    that set, observed no earlier than [`REPORT_MAX_AGE_MS`] before the
//!    block time and no later than `max_timestamp_drift_ms` after it, and
//!    correctly signed (`verify_strict`); one bad report rejects the whole
//!    transaction (its carrier is a validator, and accountable);
//! 3. an instance named in the reports expires when the distinct validators
//!    naming it **in reports observed after its on-chain lease deadline**
//!    hold at least the set's quorum power (2f+1). "After the deadline"
//!    means a report made before a re-registration or a Heartbeat
//!    transaction does not count against the renewed instance;
//! 4. expiries run in instance order and spend the mass-expiry window's
//!    budget (`super::lease`); those past the budget stay and may be reported
//!    again. Instances already gone are skipped.
//!
//! Why it holds with f Byzantine validators: of any quorum, validators
//! holding at least f+1 power are honest, and an honest validator names an
//! instance only after hearing nothing from its owner for a whole TTL. So an
//! instance that honest validators of f+1 power hear is never expired, and
//! one that no honest validator hears is expired once any honest validator
//! carries the 2f+1 honest reports into a block; f liars can only withhold
//! their own reports.

use std::collections::BTreeMap;

use palisade_crypto::{PublicKey, SignedSilenceReport};

use super::apply::BlockEnv;
use super::error::{StateError, TxRejection};
use super::genesis::LeaseMode;
use super::instances::remove_instance;
use super::records::InstanceRef;
use super::working::WorkingSet;

/// Most reports one ExpireSilent transaction may carry (also bounded by
/// `max_tx_bytes`).
pub const MAX_REPORTS_PER_TX: usize = 256;

/// How old (block time minus the reporter's clock) a counted report may be.
pub const REPORT_MAX_AGE_MS: u64 = 20_000;

/// Who named each instance, and at what time: instance -> reporter ->
/// latest observation time among its reports in the transaction.
type Tally = BTreeMap<InstanceRef, BTreeMap<PublicKey, u64>>;

fn bad(index: usize, reason: impl Into<String>) -> TxRejection {
    TxRejection::BadSilenceReport {
        index: index as u64,
        reason: reason.into(),
    }
}

/// Check every report (rule 2) and tally who names what.
pub(crate) fn check_reports(
    env: &BlockEnv<'_>,
    reports: &[SignedSilenceReport],
) -> Result<Tally, TxRejection> {
    if env.params.lease_mode != LeaseMode::Attested {
        return Err(TxRejection::LeasesNotAttested);
    }
    if reports.is_empty() || reports.len() > MAX_REPORTS_PER_TX {
        return Err(bad(
            reports.len(),
            format!(
                "carries {} reports, 1 to {MAX_REPORTS_PER_TX} allowed",
                reports.len()
            ),
        ));
    }
    let oldest = env.now_ms.saturating_sub(REPORT_MAX_AGE_MS);
    let newest = env.now_ms.saturating_add(env.params.max_timestamp_drift_ms);
    let mut tally = Tally::new();
    for (index, signed) in reports.iter().enumerate() {
        let r = &signed.report;
        if r.chain_id != env.chain_id {
            return Err(bad(index, format!("for chain {:?}", r.chain_id)));
        }
        // A report of another epoch, or dated outside the block's window, is
        // not counted, and the transaction goes on with the others: the
        // carrier cannot tell such a report from a good one before the block
        // has a time, and one validator signing reports dated ahead (or an
        // honest one whose clock runs fast) must not make every batch that
        // names them refused, which would keep dead instances alive for good
        // (review finding F1). Skipping is safe: only counted reports reach
        // the quorum.
        if r.epoch != env.validators.epoch {
            continue;
        }
        if env.validators.power_of(&r.validator).is_none() {
            return Err(bad(index, format!("{} is not a validator", r.validator)));
        }
        if !r.well_formed() {
            return Err(bad(index, "instances not sorted, distinct and 1 to 64"));
        }
        if r.observed_at_ms < oldest || r.observed_at_ms > newest {
            continue;
        }
        signed
            .verify()
            .map_err(|e| bad(index, format!("signature: {e}")))?;
        for instance in &r.instances {
            let key = InstanceRef {
                namespace: r.namespace.clone(),
                service: r.service.clone(),
                instance: instance.clone(),
            };
            let at = tally
                .entry(key)
                .or_default()
                .entry(r.validator)
                .or_insert(0);
            *at = (*at).max(r.observed_at_ms);
        }
    }
    Ok(tally)
}

/// Expire what the tally proves silent (rules 3 and 4); returns how many
/// instances expired.
pub(crate) fn expire_reported(
    ws: &mut WorkingSet<'_>,
    env: &BlockEnv<'_>,
    tally: Tally,
) -> Result<u64, StateError> {
    let quorum = env.validators.quorum_power();
    let mut expired = 0u64;
    for (r, reporters) in tally {
        let state = ws.expiry()?;
        if state.expired_in_window >= state.window_budget {
            tracing::warn!(
                height = env.height,
                budget = state.window_budget,
                "mass-expiry bound reached: reported instances stay until the next window"
            );
            break;
        }
        let Some(record) = ws.instance(&r)? else {
            continue;
        };
        let deadline = record.lease_expires_at_ms;
        let owner = record.owner;
        let power: u64 = reporters
            .iter()
            .filter(|(_, at)| **at > deadline)
            .filter_map(|(v, _)| env.validators.power_of(v))
            .sum();
        if power < quorum {
            continue;
        }
        remove_instance(ws, &r, &owner, true)?;
        let mut state = ws.expiry()?;
        state.expired_in_window += 1;
        ws.set_expiry(state);
        expired += 1;
    }
    if expired > 0 {
        tracing::debug!(
            height = env.height,
            expired,
            "silent instances expired on reports"
        );
    }
    Ok(expired)
}
