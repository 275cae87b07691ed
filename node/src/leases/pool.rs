//! The latest silence reports of each validator, and the quorum arithmetic
//! that turns them into ExpireSilent transactions.
//!
//! Each validator sends its whole current set of reports in one frame; the
//! pool replaces that validator's entry with it (an empty frame clears it),
//! so memory is at most [`MAX_REPORTS_PER_VALIDATOR`] reports per member of
//! the set. A frame is taken only from the authenticated peer that signed
//! every report in it, for this chain, the current epoch, well formed and
//! correctly signed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_consensus::state::REPORT_MAX_AGE_MS;
use palisade_crypto::{encode, PublicKey, SignedSilenceReport, ValidatorSet};

/// Most reports a validator's frame may carry (64 instances each).
pub(crate) const MAX_REPORTS_PER_VALIDATOR: usize = 1024;

/// Why a peer's frame of reports was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PoolError {
    /// The sender is not in the current set.
    #[error("{0} is not a validator")]
    NotValidator(PublicKey),
    /// More reports than a validator may send.
    #[error("{0} reports, at most {MAX_REPORTS_PER_VALIDATOR}")]
    TooMany(usize),
    /// A report that its sender did not sign, or that is unusable.
    #[error("report {index}: {reason}")]
    Bad {
        /// Position in the frame.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// Reports by validator.
#[derive(Debug)]
pub(crate) struct ReportPool {
    chain_id: String,
    by_validator: HashMap<PublicKey, Vec<SignedSilenceReport>>,
}

/// One ExpireSilent transaction's worth: the reports and the instances they
/// prove silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) reports: Vec<SignedSilenceReport>,
    pub(crate) instances: Vec<(String, String, String)>,
}

impl ReportPool {
    pub(crate) fn new(chain_id: String) -> Self {
        ReportPool {
            chain_id,
            by_validator: HashMap::new(),
        }
    }

    /// Check a frame from `from` (signatures included) without the lock.
    pub(crate) fn check(
        chain_id: &str,
        set: &ValidatorSet,
        from: &PublicKey,
        reports: &[SignedSilenceReport],
    ) -> Result<(), PoolError> {
        if set.power_of(from).is_none() {
            return Err(PoolError::NotValidator(*from));
        }
        if reports.len() > MAX_REPORTS_PER_VALIDATOR {
            return Err(PoolError::TooMany(reports.len()));
        }
        for (index, r) in reports.iter().enumerate() {
            let bad = |reason: &str| PoolError::Bad {
                index,
                reason: reason.to_string(),
            };
            if r.report.validator != *from {
                return Err(bad("signed by another validator than its sender"));
            }
            if r.report.chain_id != chain_id || r.report.epoch != set.epoch {
                return Err(bad("for another chain or epoch"));
            }
            if !r.report.well_formed() {
                return Err(bad("malformed instance list"));
            }
            r.verify().map_err(|e| bad(&e.to_string()))?;
        }
        Ok(())
    }

    /// Replace `from`'s reports (checked by [`ReportPool::check`]).
    pub(crate) fn replace(&mut self, from: PublicKey, reports: Vec<SignedSilenceReport>) {
        if reports.is_empty() {
            self.by_validator.remove(&from);
        } else {
            self.by_validator.insert(from, reports);
        }
    }

    /// Forget validators outside `set`.
    pub(crate) fn retain_members(&mut self, set: &ValidatorSet) {
        self.by_validator.retain(|k, _| set.power_of(k).is_some());
    }

    /// Reports held.
    pub(crate) fn len(&self) -> usize {
        self.by_validator.values().map(Vec::len).sum()
    }

    /// Instances named by validators holding a quorum of `set`'s power in
    /// reports that will still be fresh `margin_ms` from `now_ms`, for which
    /// `wanted` says yes; packed into batches whose transaction stays under
    /// `max_tx_bytes`. Deterministic (sorted) for one pool content.
    pub(crate) fn batches(
        &self,
        set: &ValidatorSet,
        now_ms: u64,
        margin_ms: u64,
        max_tx_bytes: usize,
        mut wanted: impl FnMut(&(String, String, String)) -> bool,
    ) -> Vec<Batch> {
        let oldest = (now_ms + margin_ms).saturating_sub(REPORT_MAX_AGE_MS);
        let quorum = set.quorum_power();
        // instance -> validator -> the report (its index in `flat`) naming it.
        let mut flat: Vec<&SignedSilenceReport> = Vec::new();
        let mut named: BTreeMap<(String, String, String), BTreeMap<PublicKey, usize>> =
            BTreeMap::new();
        for (validator, reports) in &self.by_validator {
            if set.power_of(validator).is_none() {
                continue;
            }
            for r in reports {
                if r.report.observed_at_ms < oldest || r.report.chain_id != self.chain_id {
                    continue;
                }
                let at = flat.len();
                flat.push(r);
                for inst in &r.report.instances {
                    let key = (
                        r.report.namespace.clone(),
                        r.report.service.clone(),
                        inst.clone(),
                    );
                    named.entry(key).or_default().insert(*validator, at);
                }
            }
        }
        // Room for the envelope (chain id, signer, sequence, signature).
        let budget = max_tx_bytes.saturating_sub(256);
        let mut out = Vec::new();
        let mut reports: BTreeSet<usize> = BTreeSet::new();
        let mut instances = Vec::new();
        let mut size = 0usize;
        for (instance, by) in named {
            let power: u64 = by.keys().filter_map(|v| set.power_of(v)).sum();
            if power < quorum || !wanted(&instance) {
                continue;
            }
            let extra: usize = by
                .values()
                .filter(|i| !reports.contains(i))
                .map(|i| encode(flat[*i]).len())
                .sum();
            if size + extra > budget && !instances.is_empty() {
                out.push(Batch {
                    reports: reports.iter().map(|i| flat[*i].clone()).collect(),
                    instances: std::mem::take(&mut instances),
                });
                reports.clear();
                size = 0;
            }
            if reports.len() + by.len() > palisade_consensus::state::MAX_REPORTS_PER_TX {
                continue;
            }
            size += by
                .values()
                .filter(|i| !reports.contains(i))
                .map(|i| encode(flat[*i]).len())
                .sum::<usize>();
            reports.extend(by.values().copied());
            instances.push(instance);
        }
        if !instances.is_empty() {
            out.push(Batch {
                reports: reports.iter().map(|i| flat[*i].clone()).collect(),
                instances,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use palisade_crypto::{SecretKey, SilenceReport, Validator};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn keys() -> Vec<SecretKey> {
        (1..=4).map(|i| SecretKey::from_seed([i; 32])).collect()
    }

    fn set() -> ValidatorSet {
        ValidatorSet {
            epoch: 0,
            validators: keys()
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        }
    }

    fn report(k: &SecretKey, at: u64, instances: &[&str]) -> SignedSilenceReport {
        SilenceReport {
            chain_id: "c".into(),
            epoch: 0,
            validator: k.public(),
            observed_at_ms: at,
            namespace: "shop".into(),
            service: "web".into(),
            instances: instances.iter().map(|s| s.to_string()).collect(),
        }
        .sign(k)
    }

    #[test]
    fn only_what_a_quorum_names_in_fresh_reports_is_batched() {
        let k = keys();
        let mut pool = ReportPool::new("c".into());
        pool.replace(k[0].public(), vec![report(&k[0], NOW, &["a", "b", "c"])]);
        pool.replace(k[1].public(), vec![report(&k[1], NOW, &["a", "b"])]);
        pool.replace(k[2].public(), vec![report(&k[2], NOW, &["a"])]);
        // b is named by 2 of 4 (quorum 3) with this stale third report.
        pool.replace(
            k[3].public(),
            vec![report(&k[3], NOW - REPORT_MAX_AGE_MS - 1, &["b"])],
        );
        let batches = pool.batches(&set(), NOW, 0, 16 * 1024, |_| true);
        assert_eq!(batches.len(), 1);
        let names: Vec<&str> = batches[0].instances.iter().map(|t| t.2.as_str()).collect();
        assert_eq!(names, vec!["a"]);
        assert_eq!(batches[0].reports.len(), 3);
        // An empty frame clears a validator: no quorum left.
        pool.replace(k[2].public(), vec![]);
        assert!(pool.batches(&set(), NOW, 0, 16 * 1024, |_| true).is_empty());
    }

    #[test]
    fn frames_from_outsiders_or_carrying_others_reports_are_refused() {
        let k = keys();
        let outsider = SecretKey::from_seed([9; 32]);
        let r = report(&k[1], NOW, &["a"]);
        assert_eq!(
            ReportPool::check("c", &set(), &outsider.public(), &[]),
            Err(PoolError::NotValidator(outsider.public()))
        );
        assert!(matches!(
            ReportPool::check("c", &set(), &k[0].public(), std::slice::from_ref(&r)),
            Err(PoolError::Bad { index: 0, .. })
        ));
        let mut forged = r.clone();
        forged.report.observed_at_ms += 1;
        assert!(ReportPool::check("c", &set(), &k[1].public(), &[forged]).is_err());
        assert!(ReportPool::check("c", &set(), &k[1].public(), &[r]).is_ok());
    }

    #[test]
    fn large_silences_are_split_under_the_transaction_bound() {
        let k = keys();
        let mut pool = ReportPool::new("c".into());
        let names: Vec<String> = (0..64).map(|i| format!("instance-{i:03}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        for key in &k {
            let reports = refs.chunks(16).map(|c| report(key, NOW, c)).collect();
            pool.replace(key.public(), reports);
        }
        let batches = pool.batches(&set(), NOW, 0, 4 * 1024, |_| true);
        assert!(batches.len() > 1);
        let total: usize = batches.iter().map(|b| b.instances.len()).sum();
        assert_eq!(total, 64);
        for b in &batches {
            let size: usize = b.reports.iter().map(|r| encode(r).len()).sum();
            assert!(size <= 4 * 1024 - 256, "{size}");
        }
    }
}
