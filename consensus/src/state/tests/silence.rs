//! Attested leases: expiry on a quorum of silence reports, with f liars.

use palisade_crypto::{SignedSilenceReport, SilenceReport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::super::records::{system, system_key, ExpiryState};
use super::super::{LeaseMode, Params, REPORT_MAX_AGE_MS};
use super::*;

fn attested() -> Genesis {
    let mut g = genesis();
    g.params.lease_mode = LeaseMode::Attested;
    g
}

fn report(v: &SecretKey, at_ms: u64, instances: &[&str]) -> SignedSilenceReport {
    report_on(v, 0, at_ms, instances)
}

fn report_on(v: &SecretKey, epoch: u64, at_ms: u64, instances: &[&str]) -> SignedSilenceReport {
    let mut instances: Vec<String> = instances.iter().map(|s| s.to_string()).collect();
    instances.sort();
    SilenceReport {
        chain_id: CHAIN.into(),
        epoch,
        validator: v.public(),
        observed_at_ms: at_ms,
        namespace: "shop".into(),
        service: "web".into(),
        instances,
    }
    .sign(v)
}

fn expire(reports: Vec<SignedSilenceReport>) -> TxBody {
    TxBody::ExpireSilent { reports }
}

/// An attested chain with `names` registered (TTL 30 s) at `T0 + 1 s`.
fn registered(names: &[&str]) -> Chain {
    let mut c = Chain::with(attested());
    let txs: Vec<_> = names
        .iter()
        .map(|n| c.tx(&alice(), TxBody::Register(reg("shop", "web", n))))
        .collect();
    let (_, r) = c.block(1_000, &txs);
    assert!(r.receipts.iter().all(|r| r.outcome == TxOutcome::Applied));
    c
}

#[test]
fn block_time_alone_expires_nothing_on_an_attested_chain() {
    let mut c = registered(&["a1"]);
    c.block(120_000, &[]);
    assert_eq!(c.instances("shop", "web"), vec!["a1"]);
}

#[test]
fn a_quorum_of_honest_reports_expires_a_dead_instance_whatever_one_liar_does() {
    let v = validators();
    let mut c = registered(&["a1", "a2"]);
    c.block(40_000, &[]);
    let now = c.time + 1_000;
    // Validators 0..3 are honest and heard nothing from a1 for a TTL; the
    // liar (3) withholds its report.
    let reports = (0..3).map(|i| report(&v[i], now, &["a1"])).collect();
    let tx = c.tx(&v[0], expire(reports));
    assert_eq!(c.one(tx), TxOutcome::Applied);
    assert_eq!(c.instances("shop", "web"), vec!["a2"]);
    let live = c
        .reader()
        .get::<ExpiryState>(&system_key(system::EXPIRY))
        .expect("readable")
        .expect("present")
        .live;
    assert_eq!(live, 1);
}

#[test]
fn f_liars_and_one_deaf_honest_validator_cannot_expire_a_live_instance() {
    let v = validators();
    let mut c = registered(&["a1"]);
    c.block(40_000, &[]);
    let now = c.time + 1_000;
    // The liar (3) and an honest validator that missed the heartbeats (2)
    // report; validators 0 and 1 hear a1 and stay silent. Two of four is
    // below the quorum of three, however often each is repeated.
    let reports = vec![
        report(&v[3], now, &["a1"]),
        report(&v[2], now, &["a1"]),
        report(&v[3], now - 1, &["a1"]),
    ];
    let tx = c.tx(&v[3], expire(reports));
    assert_eq!(c.one(tx), TxOutcome::Applied);
    assert_eq!(c.instances("shop", "web"), vec!["a1"]);
}

#[test]
fn a_liar_cannot_forge_replay_or_misdate_reports() {
    let v = validators();
    let mut c = registered(&["a1"]);
    c.block(40_000, &[]);
    let drift = Params::default().max_timestamp_drift_ms;
    // Each builds a bad report for a block at `now`.
    type Bad = Box<dyn Fn(&[SecretKey], u64) -> SignedSilenceReport>;
    let cases: Vec<(&str, Bad)> = vec![
        // Validator 0's report carrying the liar's signature.
        (
            "forged",
            Box::new(|v, now| {
                let mut forged = report(&v[0], now, &["a1"]);
                forged.signature = report(&v[3], now, &["a1"]).signature;
                forged
            }),
        ),
        (
            "stale",
            Box::new(|v, now| report(&v[1], now - REPORT_MAX_AGE_MS - 1, &["a1"])),
        ),
        (
            "future",
            Box::new(move |v, now| report(&v[1], now + drift + 1, &["a1"])),
        ),
        (
            "other epoch",
            Box::new(|v, now| report_on(&v[1], 1, now, &["a1"])),
        ),
        (
            "other chain",
            Box::new(|v, now| {
                let mut r = report(&v[1], now, &["a1"]).report;
                r.chain_id = "other".into();
                r.sign(&v[1])
            }),
        ),
        (
            "outsider",
            Box::new(|_, now| report(&alice(), now, &["a1"])),
        ),
        (
            "unsorted",
            Box::new(|v, now| {
                let mut r = report(&v[1], now, &["a1"]).report;
                r.instances = vec!["b".into(), "a1".into()];
                r.sign(&v[1])
            }),
        ),
    ];
    // Misdated and other-epoch reports are not counted (the transaction
    // goes on without them, see the next test); the others refuse it.
    let skipped = ["stale", "future", "other epoch"];
    for (name, make) in cases {
        let now = c.time + 1_000;
        let bad = make(&v, now);
        let reports = vec![
            report(&v[2], now, &["a1"]),
            report(&v[3], now, &["a1"]),
            bad,
        ];
        let tx = c.tx(&v[3], expire(reports));
        let outcome = c.one(tx);
        if skipped.contains(&name) {
            assert_eq!(outcome, TxOutcome::Applied, "{name}");
        } else {
            assert!(
                matches!(
                    rejected(&outcome),
                    Some(TxRejection::BadSilenceReport { index: 2, .. })
                ),
                "{name}: {outcome:?}"
            );
        }
        assert_eq!(c.instances("shop", "web"), vec!["a1"], "{name}");
    }
}

/// Review finding F1: one validator signing reports dated ahead of time
/// (or stale, or of another epoch) and naming everything must not make the
/// batches that carry them refused, or no dead instance would ever expire.
#[test]
fn a_misdated_report_does_not_stop_an_expiry_that_a_quorum_proves() {
    let v = validators();
    let drift = Params::default().max_timestamp_drift_ms;
    for (name, late) in [("future", true), ("stale", false)] {
        let mut c = registered(&["a1"]);
        c.block(40_000, &[]);
        let now = c.time + 1_000;
        let misdated = if late {
            now + drift + 60_000
        } else {
            now - REPORT_MAX_AGE_MS - 1
        };
        let reports = vec![
            report(&v[3], misdated, &["a1"]),
            report(&v[0], now, &["a1"]),
            report(&v[1], now, &["a1"]),
            report(&v[2], now, &["a1"]),
        ];
        let tx = c.tx(&v[0], expire(reports));
        assert_eq!(c.one(tx), TxOutcome::Applied, "{name}");
        assert!(c.instances("shop", "web").is_empty(), "{name}: a1 stayed");
    }
}

#[test]
fn reports_made_before_a_renewal_do_not_count_against_it() {
    let v = validators();
    let mut c = registered(&["a1"]);
    c.block(40_000, &[]);
    let before = c.time;
    // The owner renews on chain (a Heartbeat transaction still works).
    let hb = c.tx(&alice(), heartbeat("shop", "web", "a1"));
    assert_eq!(c.one(hb), TxOutcome::Applied);
    let reports = (0..3).map(|i| report(&v[i], before, &["a1"])).collect();
    let tx = c.tx(&v[0], expire(reports));
    assert_eq!(c.one(tx), TxOutcome::Applied);
    assert_eq!(c.instances("shop", "web"), vec!["a1"]);
}

#[test]
fn outsiders_cannot_carry_reports_and_block_time_chains_refuse_them() {
    let v = validators();
    let mut c = registered(&["a1"]);
    c.block(40_000, &[]);
    let now = c.time + 1_000;
    let reports: Vec<_> = (0..3).map(|i| report(&v[i], now, &["a1"])).collect();
    let tx = c.tx(&alice(), expire(reports.clone()));
    assert!(matches!(
        c.try_block(1_000, &[tx]),
        Err(ExecutionError::Inadmissible { .. })
    ));
    let mut plain = Chain::new();
    let r = plain.tx(&alice(), TxBody::Register(reg("shop", "web", "a1")));
    plain.one(r);
    let tx = plain.tx(&v[0], expire(reports));
    assert_eq!(
        rejected(&plain.one(tx)),
        Some(&TxRejection::LeasesNotAttested)
    );
}

#[test]
fn the_mass_expiry_bound_holds_for_reports() {
    let v = validators();
    let mut g = attested();
    g.params.min_expiry_per_window = 2;
    g.params.max_expiry_permille = 100;
    let mut c = Chain::with(g);
    let names: Vec<String> = (0..20).map(|i| format!("i{i:02}")).collect();
    let txs: Vec<_> = names
        .iter()
        .map(|n| c.tx(&alice(), TxBody::Register(reg("shop", "web", n))))
        .collect();
    c.block(1_000, &txs);
    // A new window opens 60 s later with 20 live: budget max(2, 10%) = 2.
    c.block(60_000, &[]);
    let now = c.time + 1_000;
    let all: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let reports = (0..4).map(|i| report(&v[i], now, &all)).collect();
    let tx = c.tx(&v[0], expire(reports));
    assert_eq!(c.one(tx), TxOutcome::Applied);
    assert_eq!(c.instances("shop", "web").len(), 18, "window budget is 2");
}

/// Over many seeds, n = 4 and n = 7: liars report anything, honest
/// validators report exactly what they did not hear. Whatever the liars
/// do, an instance that at least f+1 honest validators hear survives, and
/// one that no honest validator hears expires.
#[test]
fn f_liars_never_decide_liveness_over_many_seeds() {
    for n in [4usize, 7] {
        let f = (n - 1) / 3;
        for seed in 0..60u64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed * 31 + n as u64);
            let keys: Vec<SecretKey> = (0..n).map(|i| key(100 + i as u8)).collect();
            let mut g = attested();
            g.validators.validators = keys
                .iter()
                .map(|k| Validator {
                    key: k.public(),
                    power: 1,
                })
                .collect();
            g.params.min_expiry_per_window = 64;
            let mut c = Chain::with(g);
            let names: Vec<String> = (0..12).map(|i| format!("i{i:02}")).collect();
            let regs: Vec<_> = names
                .iter()
                .map(|x| c.tx(&alice(), TxBody::Register(reg("shop", "web", x))))
                .collect();
            c.block(1_000, &regs);
            c.block(40_000, &[]);
            let now = c.time + 1_000;
            // Liars are a random f of the n validators.
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.gen_range(0..=i));
            }
            let liars = &order[..f];
            let honest = &order[f..];
            // Per instance: how many honest validators hear it (0, f+1 or
            // more, or anything in between, which decides nothing).
            let heard: Vec<Vec<usize>> = names
                .iter()
                .map(|_| {
                    let k = rng.gen_range(0..=honest.len());
                    honest[..k].to_vec()
                })
                .collect();
            let mut reports = Vec::new();
            for &h in honest {
                let silent: Vec<&str> = names
                    .iter()
                    .zip(&heard)
                    .filter(|(_, hs)| !hs.contains(&h))
                    .map(|(x, _)| x.as_str())
                    .collect();
                if !silent.is_empty() {
                    reports.push(report(&keys[h], now, &silent));
                }
            }
            for &l in liars {
                let named: Vec<&str> = names
                    .iter()
                    .filter(|_| rng.gen_bool(0.5))
                    .map(|x| x.as_str())
                    .collect();
                if !named.is_empty() {
                    reports.push(report(&keys[l], now - rng.gen_range(0..1_000), &named));
                }
            }
            if reports.is_empty() {
                continue;
            }
            let carrier = &keys[order[rng.gen_range(0..n)]];
            let tx = c.tx(carrier, expire(reports));
            assert_eq!(c.one(tx), TxOutcome::Applied, "seed {seed} n {n}");
            let left = c.instances("shop", "web");
            for (x, hs) in names.iter().zip(&heard) {
                let alive = left.contains(x);
                if hs.len() > f {
                    assert!(alive, "seed {seed} n {n}: {x} heard by {hs:?} expired");
                }
                if hs.is_empty() {
                    assert!(!alive, "seed {seed} n {n}: {x} heard by nobody kept");
                }
            }
        }
    }
}
