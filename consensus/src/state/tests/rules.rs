//! Rules over several blocks: leases, mass expiry, health, epochs, limits,
//! and property tests of replay, reordering, escalation and ownership.

use palisade_crypto::{Health, Registration, TxBody, Validator};
use proptest::prelude::*;

use super::super::Params;
use super::*;

fn reg_ttl(inst: &str, ttl: u32) -> Registration {
    let mut r = reg("shop", "web", inst);
    r.ttl_secs = ttl;
    r
}

#[test]
fn lease_expires_in_the_first_block_past_its_deadline() {
    let mut c = Chain::new();
    let tx = c.tx(&alice(), TxBody::Register(reg_ttl("a1", 10)));
    c.block(1_000, &[tx]);
    let deadline = c.service("shop", "web").unwrap().instances[0].lease_expires_at_ms;
    assert_eq!(deadline, c.time + 10_000);
    // A block exactly at the deadline keeps it.
    c.block(deadline - c.time, &[]);
    assert_eq!(c.instances("shop", "web"), vec!["a1"]);
    // The first block past it removes it, before its own transactions run.
    let hb = c.tx(&alice(), heartbeat("shop", "web", "a1"));
    let (_, receipts) = c.block(1, &[hb]);
    assert_eq!(c.instances("shop", "web"), Vec::<String>::new());
    assert!(matches!(
        rejected(&receipts.receipts[0].outcome),
        Some(TxRejection::UnknownInstance { .. })
    ));
    // The service and namespace leaves are gone: absence is provable.
    let lookup = c.reader().service("shop", "web").unwrap();
    assert_eq!(lookup.lookup.value, None);
    let ns = c.reader().namespace("shop").unwrap();
    assert_eq!(ns.verify(&c.root()).unwrap(), None);
    assert_eq!(
        c.reader()
            .identity(&alice().public())
            .unwrap()
            .unwrap()
            .owned,
        0
    );
    assert_eq!(
        c.reader().owned_instances(&alice().public()).unwrap(),
        vec![]
    );
}

#[test]
fn heartbeat_renews_the_lease() {
    let mut c = Chain::new();
    let tx = c.tx(&alice(), TxBody::Register(reg_ttl("a1", 10)));
    c.block(1_000, &[tx]);
    let hb = c.tx(&alice(), heartbeat("shop", "web", "a1"));
    c.block(9_000, &[hb]);
    c.block(9_000, &[]);
    assert_eq!(c.instances("shop", "web"), vec!["a1"]);
    c.block(1_001, &[]);
    assert_eq!(c.instances("shop", "web"), Vec::<String>::new());
}

#[test]
fn mass_expiry_is_bounded_per_window() {
    let mut g = genesis();
    g.params = Params {
        max_expiry_permille: 250,
        min_expiry_per_window: 2,
        expiry_window_ms: 60_000,
        ..Params::default()
    };
    let mut c = Chain::with(g);
    // 20 instances with one deadline, registered in the genesis window.
    let txs: Vec<_> = (0..20)
        .map(|i| c.tx(&alice(), TxBody::Register(reg_ttl(&format!("i{i:02}"), 10))))
        .collect();
    c.block(1_000, &txs);
    assert_eq!(c.instances("shop", "web").len(), 20);
    // All overdue. The genesis window (budget = floor 2) is still open.
    c.block(20_000, &[]);
    assert_eq!(c.instances("shop", "web").len(), 18);
    c.block(1_000, &[]);
    assert_eq!(c.instances("shop", "web").len(), 18, "window budget spent");
    // A new window opens 60 s after the last: budget = 25% of 18 live = 4.
    c.block(60_000, &[]);
    let left = c.instances("shop", "web");
    assert_eq!(left.len(), 14);
    // Earliest deadline first, ties by name: i00.. went first.
    assert_eq!(left[0], "i06");
    // An overdue instance kept by the bound can still be renewed.
    let hb = c.tx(&alice(), heartbeat("shop", "web", "i19"));
    let (_, r) = c.block(1_000, &[hb]);
    assert_eq!(r.receipts[0].outcome, TxOutcome::Applied);
    let rec = c.service("shop", "web").unwrap();
    let i19 = rec.instances.iter().find(|i| i.instance == "i19").unwrap();
    assert!(i19.lease_expires_at_ms > c.time);
    // Each later window (all 14 overdue by then) expires max(2, 25% of live).
    let mut counts = Vec::new();
    for _ in 0..7 {
        c.block(60_000, &[]);
        counts.push(c.instances("shop", "web").len());
    }
    assert_eq!(counts, vec![11, 9, 7, 5, 3, 1, 0]);
}

#[test]
fn health_flips_only_with_f_plus_one_reports() {
    let mut c = Chain::new();
    let tx = c.tx(&alice(), TxBody::Register(reg("shop", "web", "a1")));
    c.block(1_000, &[tx]);
    let vs = validators();
    let health = |c: &Chain| c.service("shop", "web").unwrap().instances[0].health;
    let report = |passing| TxBody::HealthReport {
        namespace: "shop".into(),
        service: "web".into(),
        instance: "a1".into(),
        passing,
    };
    // One validator, even repeating itself, is not enough (f = 1, f+1 = 2).
    let r1 = c.tx(&vs[0], report(false));
    let r1b = c.tx(&vs[0], report(false));
    c.block(1_000, &[r1, r1b]);
    assert_eq!(health(&c), Health::Passing);
    // A report that agrees with the verdict changes nothing.
    let r2 = c.tx(&vs[1], report(true));
    c.block(1_000, &[r2]);
    assert_eq!(health(&c), Health::Passing);
    // A dissenter that changes its mind stops counting.
    let r0 = c.tx(&vs[0], report(true));
    let r2 = c.tx(&vs[1], report(false));
    c.block(1_000, &[r0, r2]);
    assert_eq!(health(&c), Health::Passing);
    let r0 = c.tx(&vs[0], report(false));
    c.block(1_000, &[r0]);
    assert_eq!(health(&c), Health::Failing);
    let r0 = c.tx(&vs[0], report(true));
    let r1 = c.tx(&vs[1], report(true));
    c.block(1_000, &[r0, r1]);
    assert_eq!(health(&c), Health::Passing);
    let r0 = c.tx(&vs[0], report(false));
    let r2 = c.tx(&vs[1], report(false));
    c.block(1_000, &[r0, r2]);
    assert_eq!(health(&c), Health::Failing);
    // Re-registering cannot reset the verdict.
    let tx = c.tx(&alice(), TxBody::Register(reg("shop", "web", "a1")));
    c.block(1_000, &[tx]);
    assert_eq!(health(&c), Health::Failing);
    // Passing again likewise needs two.
    let p = c.tx(&vs[2], report(true));
    c.block(1_000, &[p]);
    assert_eq!(health(&c), Health::Failing);
    let p = c.tx(&vs[3], report(true));
    c.block(1_000, &[p]);
    assert_eq!(health(&c), Health::Passing);
}

#[test]
fn change_validators_ends_the_epoch() {
    let mut c = Chain::new();
    let next = vec![Validator {
        key: key(7).public(),
        power: 3,
    }];
    let tx = c.authority_tx(TxBody::ChangeValidators {
        validators: next.clone(),
    });
    let (result, receipts) = c.block(1_000, &[tx]);
    assert_eq!(receipts.receipts[0].outcome, TxOutcome::Applied);
    let set = result.next_validators.expect("epoch ends");
    assert_eq!((set.epoch, &set.validators), (1, &next));
    let (result, _) = c.block(1_000, &[]);
    assert_eq!(result.next_validators, None);
    assert_eq!(c.reader().validators().unwrap().epoch, 1);
    // Two changes in one block: the second is refused.
    let mut c = Chain::new();
    let first = c.authority_tx(TxBody::ChangeValidators {
        validators: next.clone(),
    });
    let second = c.authority_tx(TxBody::ChangeValidators {
        validators: next.clone(),
    });
    let (result, receipts) = c.block(1_000, &[first, second]);
    assert_eq!(result.next_validators.map(|s| s.epoch), Some(1));
    assert_eq!(
        receipts.receipts[1].outcome,
        TxOutcome::Rejected(TxRejection::EpochChangePending { pending: 1 })
    );
    assert_eq!(c.reader().validators().unwrap().epoch, 1);
}

#[test]
fn limits_bound_services_and_identities() {
    let mut g = genesis();
    g.params.max_instances_per_service = 2;
    g.params.max_instances_per_identity = 3;
    let mut c = Chain::with(g);
    let txs: Vec<_> = ["a1", "a2", "a3"]
        .iter()
        .map(|i| c.tx(&alice(), TxBody::Register(reg("shop", "web", i))))
        .collect();
    let (_, r) = c.block(1_000, &txs);
    assert_eq!(
        r.receipts[2].outcome,
        TxOutcome::Rejected(TxRejection::ServiceFull { max: 2 })
    );
    let txs: Vec<_> = ["b1", "b2"]
        .iter()
        .map(|i| c.tx(&alice(), TxBody::Register(reg("shop", "api", i))))
        .collect();
    let (_, r) = c.block(1_000, &txs);
    assert_eq!(r.receipts[0].outcome, TxOutcome::Applied);
    assert_eq!(
        r.receipts[1].outcome,
        TxOutcome::Rejected(TxRejection::IdentityFull { max: 3 })
    );
}

#[test]
fn namespaces_hold_a_bounded_number_of_services() {
    let mut g = genesis();
    g.params.max_services_per_namespace = 1;
    let mut c = Chain::with(g);
    let a = c.tx(&alice(), TxBody::Register(reg("shop", "web", "a1")));
    let b = c.tx(&alice(), TxBody::Register(reg("shop", "api", "a2")));
    let more = c.tx(&alice(), TxBody::Register(reg("shop", "web", "a3")));
    let (_, r) = c.block(1_000, &[a, b, more]);
    let outcomes: Vec<_> = r.receipts.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![
            TxOutcome::Applied,
            TxOutcome::Rejected(TxRejection::NamespaceFull { max: 1 }),
            TxOutcome::Applied,
        ]
    );
    let ns = c.reader().namespace("shop").unwrap();
    assert_eq!(ns.verify(&c.root()).unwrap().unwrap().services, vec!["web"]);
}

#[test]
fn the_namespace_directory_is_bounded() {
    let mut g = genesis();
    g.params.max_namespaces = 1;
    g.enrollments[0].namespaces.push("billing".into());
    let mut c = Chain::with(g);
    let a = c.tx(&alice(), TxBody::Register(reg("shop", "web", "a1")));
    let b = c.tx(&alice(), TxBody::Register(reg("billing", "web", "a2")));
    let (_, r) = c.block(1_000, &[a, b]);
    assert_eq!(
        r.receipts[1].outcome,
        TxOutcome::Rejected(TxRejection::RegistryFull { max: 1 })
    );
    // Once shop empties, billing fits.
    let d = c.tx(
        &alice(),
        TxBody::Deregister {
            namespace: "shop".into(),
            service: "web".into(),
            instance: "a1".into(),
        },
    );
    let b = c.tx(&alice(), TxBody::Register(reg("billing", "web", "a2")));
    let (_, r) = c.block(1_000, &[d, b]);
    assert!(r.receipts.iter().all(|r| r.outcome == TxOutcome::Applied));
    assert_eq!(c.reader().namespaces().unwrap(), vec!["billing"]);
}

#[test]
fn revocation_removes_every_owned_instance_at_once() {
    let mut c = Chain::new();
    let txs: Vec<_> = [("web", "a1"), ("api", "a2")]
        .iter()
        .map(|(s, i)| c.tx(&alice(), TxBody::Register(reg("shop", s, i))))
        .collect();
    let b = c.tx(&bob(), TxBody::Register(reg("shop", "web", "b1")));
    c.block(1_000, &[txs[0].clone(), txs[1].clone(), b]);
    let revoke = c.authority_tx(TxBody::Revoke {
        identity: alice().public(),
    });
    c.block(1_000, &[revoke]);
    assert_eq!(c.instances("shop", "web"), vec!["b1"]);
    assert_eq!(c.service("shop", "api"), None);
    let id = c.reader().identity(&alice().public()).unwrap().unwrap();
    assert_eq!((id.revoked_at, id.owned), (Some(2), 0));
    assert_eq!(
        c.reader().owned_instances(&alice().public()).unwrap(),
        vec![]
    );
    assert_eq!(c.reader().namespaces().unwrap(), vec!["shop"]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// In any permutation of one signer's transactions, a block carrying one
    /// whose sequence is at or below one applied before it in the block is
    /// invalid (naming exactly those); without them the rest apply; and a
    /// replay of an applied transaction is always refused.
    #[test]
    fn replay_and_reordering_are_refused(order in Just((0..6u64).collect::<Vec<_>>()).prop_shuffle(), replay in 0..6usize) {
        let mut c = Chain::new();
        let txs: Vec<_> = (0..6u64)
            .map(|s| sign(&alice(), s, TxBody::Register(reg("shop", "web", &format!("i{s}")))))
            .collect();
        let shuffled: Vec<_> = order.iter().map(|&i| txs[i as usize].clone()).collect();
        let mut high: Option<u64> = None;
        let mut fresh = Vec::new();
        let mut stale = Vec::new();
        for (&s, stx) in order.iter().zip(&shuffled) {
            if high.is_none_or(|h| s > h) {
                high = Some(s);
                fresh.push(stx.clone());
            } else {
                stale.push(stx.id());
            }
        }
        let before = c.root();
        match c.try_block(1_000, &shuffled) {
            Err(ExecutionError::Inadmissible { tx_ids, .. }) => {
                prop_assert_eq!(tx_ids, stale.clone());
                prop_assert_eq!(c.root(), before);
            }
            Ok(_) => prop_assert!(stale.is_empty(), "a block with stale sequences executed"),
            Err(e) => prop_assert!(false, "unexpected error {:?}", e),
        }
        if !stale.is_empty() {
            let (_, r) = c.block(1_000, &fresh);
            prop_assert!(r.receipts.iter().all(|r| r.outcome == TxOutcome::Applied));
        }
        let replayed = txs[replay].clone();
        let applied_before = fresh.iter().any(|t| t.id() == replayed.id());
        let got = c.try_block(1_000, &[replayed]);
        if applied_before {
            let refused = matches!(got, Err(ExecutionError::Inadmissible { .. }));
            prop_assert!(refused, "a replay of an applied transaction executed");
        }
    }

    /// One transaction twice in one block: the block is invalid, so no id
    /// ever has two certified outcomes (review of issue 13 item 7).
    #[test]
    fn one_transaction_twice_in_a_block_is_refused(seq in 0..3u64) {
        let mut c = Chain::new();
        for s in 0..seq {
            c.one(sign(&alice(), s, TxBody::Register(reg("shop", "web", &format!("p{s}")))));
        }
        let hb = sign(&alice(), seq, TxBody::Register(reg("shop", "web", "twice")));
        let before = c.root();
        let got = c.try_block(1_000, &[hb.clone(), hb.clone()]);
        let refused_ids = match &got {
            Err(ExecutionError::Inadmissible { tx_ids, .. }) => Some(tx_ids.clone()),
            _ => None,
        };
        prop_assert_eq!(refused_ids, Some(vec![hb.id()]));
        prop_assert_eq!(c.root(), before);
    }

    /// Whatever identity writes to whatever namespace, it succeeds exactly
    /// when it is enrolled there, and only the owner or an admin changes an
    /// existing instance.
    #[test]
    fn escalation_and_ownership(ops in proptest::collection::vec((0..5usize, 0..2usize, 0..3usize, 0..3usize), 1..20)) {
        let ids = [alice(), bob(), admin(), carol(), key(30)];
        let namespaces = ["shop", "billing"];
        let mut c = Chain::new();
        let mut owners: std::collections::HashMap<(usize, usize), usize> = Default::default();
        for (who, ns, inst, op) in ops {
            let k = &ids[who];
            let name = format!("i{inst}");
            let body = match op {
                0 => TxBody::Register(reg(namespaces[ns], "svc", &name)),
                1 => heartbeat(namespaces[ns], "svc", &name),
                _ => TxBody::Deregister { namespace: namespaces[ns].into(), service: "svc".into(), instance: name.clone() },
            };
            let stx = c.tx(k, body);
            let enrolled = match who { 0..=2 => ns == 0, 3 => ns == 1, _ => false };
            // Unauthorized writes never reach a receipt: their block is refused.
            let out = match c.try_block(1_000, std::slice::from_ref(&stx)) {
                Ok((_, r)) => r.receipts[0].outcome.clone(),
                Err(crate::executor::ExecutionError::Inadmissible { .. }) => {
                    prop_assert!(!enrolled, "refused an authorized write by {}", who);
                    TxOutcome::Rejected(TxRejection::NotEnrolled(k.public()))
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            };
            let owner = owners.get(&(ns, inst)).copied();
            let may_change = owner.is_none_or(|o| o == who) || who == 2;
            let expect_ok = enrolled && match op {
                0 => may_change,
                _ => owner.is_some() && may_change,
            };
            prop_assert_eq!(out == TxOutcome::Applied, expect_ok, "{:?} by {} in {} op {}", out, who, ns, op);
            if expect_ok {
                match op {
                    0 => { owners.entry((ns, inst)).or_insert(who); }
                    2 => { owners.remove(&(ns, inst)); }
                    _ => {}
                }
            }
        }
        for (ns, name) in namespaces.iter().enumerate() {
            let mut want: Vec<String> = owners.keys().filter(|(n, _)| *n == ns).map(|(_, i)| format!("i{i}")).collect();
            want.sort();
            prop_assert_eq!(c.instances(name, "svc"), want);
        }
    }

    /// An instance registered with any TTL survives every block up to its
    /// deadline and is gone in the first block after it.
    #[test]
    fn lease_expiry_at_the_exact_block(ttl in 1u32..120, steps in proptest::collection::vec(1u64..20_000, 1..30)) {
        let mut c = Chain::new();
        let tx = c.tx(&alice(), TxBody::Register(reg_ttl("a1", ttl)));
        c.block(500, &[tx]);
        let deadline = c.time + ttl as u64 * 1000;
        for dt in steps {
            c.block(dt, &[]);
            let present = !c.instances("shop", "web").is_empty();
            prop_assert_eq!(present, c.time <= deadline, "time {} deadline {}", c.time, deadline);
        }
    }
}
