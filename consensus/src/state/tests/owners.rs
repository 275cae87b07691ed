//! The owner index (issue 15): an identity's head record holds the count of
//! instances it owns, the list lives in `OWNER_PAGES` pages, and a write
//! rewrites one page, not a record that grows with everything it owns.

use std::collections::BTreeSet;
use std::sync::Mutex;

use jmt::storage::{Node, NodeKey};
use jmt::{KeyHash, OwnedValue, Version};

use super::super::records::{owner_page_key, InstanceRef, OWNER_PAGES};
use super::super::store::{CommitMeta, StateCommit, StateStore, StoreError};
use super::*;

fn iref(svc: &str, inst: &str) -> InstanceRef {
    InstanceRef {
        namespace: "shop".into(),
        service: svc.into(),
        instance: inst.into(),
    }
}

/// Check `key`'s owner index against `want` (see [`check_pages`]), with a
/// large index spread over most pages.
fn check_index(c: &Chain, key: &PublicKey, want: &BTreeSet<InstanceRef>, step: &str) {
    let pages_used = check_pages(c, key, want, step);
    if want.len() >= 200 {
        assert!(pages_used > OWNER_PAGES / 2, "{step}: {pages_used} pages");
    }
}

/// Check `key`'s owner index against `want`: every page sorted, each
/// instance on its own page, no empty page stored, and the head's count;
/// returns how many pages are stored.
fn check_pages(c: &Chain, key: &PublicKey, want: &BTreeSet<InstanceRef>, step: &str) -> u16 {
    let reader = c.reader();
    let mut pages_used = 0;
    for page in 0..OWNER_PAGES {
        let listed: Option<Vec<InstanceRef>> = reader.get(&owner_page_key(key, page)).unwrap();
        let Some(listed) = listed else { continue };
        pages_used += 1;
        assert!(!listed.is_empty(), "{step}: empty page {page} stored");
        assert!(
            listed.windows(2).all(|w| w[0] < w[1]),
            "{step}: page {page} unsorted"
        );
        assert!(
            listed.iter().all(|r| r.owner_page() == page),
            "{step}: page {page} lists another page's instance"
        );
    }
    let owned = reader.owned_instances(key).unwrap();
    assert_eq!(owned, want.iter().cloned().collect::<Vec<_>>(), "{step}");
    let id = reader.identity(key).unwrap().unwrap();
    assert_eq!(id.owned as usize, want.len(), "{step}: count");
    pages_used
}

/// Register, deregister (by the owner and by an admin), expiry and
/// revocation keep the paged owner index exact, with instances spread over
/// most pages; another identity's index is never touched.
#[test]
fn owner_index_follows_every_change_across_pages() {
    let mut g = genesis();
    // Expire everything due at once (no mass-expiry budget in the way).
    g.params.max_expiry_permille = 1000;
    g.params.min_expiry_per_window = 4096;
    let mut c = Chain::with(g);
    let (a, b) = (alice().public(), bob().public());
    let mut want_a = BTreeSet::new();
    let mut want_b = BTreeSet::new();
    let register = |c: &mut Chain, k: &SecretKey, want: &mut BTreeSet<_>, range, ttl| {
        let txs: Vec<_> = Vec::from_iter(range)
            .into_iter()
            .map(|i: u32| {
                let svc = format!("svc{}", i % 4);
                let inst = format!("{}-{i}", k.public().short());
                want.insert(iref(&svc, &inst));
                let mut r = reg("shop", &svc, &inst);
                r.ttl_secs = ttl;
                c.tx(k, TxBody::Register(r))
            })
            .collect();
        let (_, receipts) = c.block(1_000, &txs);
        assert!(receipts
            .receipts
            .iter()
            .all(|r| rejected(&r.outcome).is_none()));
    };
    // 300 long-lived and 100 short-lived instances for alice, 20 for bob.
    register(&mut c, &alice(), &mut want_a, 0..300, 600);
    register(&mut c, &alice(), &mut want_a, 300..400, 10);
    register(&mut c, &bob(), &mut want_b, 0..20, 600);
    check_index(&c, &a, &want_a, "registered");
    check_index(&c, &b, &want_b, "bob registered");
    // Re-registering an owned instance changes no index.
    let again = c.tx(
        &alice(),
        TxBody::Register(reg("shop", "svc1", &format!("{}-1", a.short()))),
    );
    assert_eq!(c.one(again), TxOutcome::Applied);
    check_index(&c, &a, &want_a, "re-registered");
    // The owner deregisters 50; an admin deregisters 10 more of alice's.
    let mut gone: Vec<InstanceRef> = want_a.iter().step_by(7).take(60).cloned().collect();
    let by_admin = gone.split_off(50);
    let mut txs = Vec::new();
    for (k, list) in [(alice(), &gone), (admin(), &by_admin)] {
        for r in list {
            txs.push(c.tx(
                &k,
                TxBody::Deregister {
                    namespace: r.namespace.clone(),
                    service: r.service.clone(),
                    instance: r.instance.clone(),
                },
            ));
        }
    }
    let (_, receipts) = c.block(1_000, &txs);
    assert!(receipts
        .receipts
        .iter()
        .all(|r| rejected(&r.outcome).is_none()));
    for r in gone.iter().chain(&by_admin) {
        want_a.remove(r);
    }
    check_index(&c, &a, &want_a, "deregistered");
    check_index(&c, &b, &want_b, "bob after alice's deregistrations");
    // The short-lived ones (ttl 10 s) expire; the rest (600 s) stay.
    c.block(20_000, &[]);
    let expired: Vec<_> = want_a
        .iter()
        .filter(|r| {
            r.instance
                .split('-')
                .nth(1)
                .unwrap()
                .parse::<u32>()
                .unwrap()
                >= 300
        })
        .cloned()
        .collect();
    assert!(!expired.is_empty());
    for r in &expired {
        want_a.remove(r);
    }
    check_index(&c, &a, &want_a, "expired");
    assert!(want_a.len() >= 200, "{}", want_a.len());
    // Revocation removes every instance on every page, and the pages.
    let revoke = c.authority_tx(TxBody::Revoke { identity: a });
    assert_eq!(c.one(revoke), TxOutcome::Applied);
    check_index(&c, &a, &BTreeSet::new(), "revoked");
    for page in 0..OWNER_PAGES {
        let listed: Option<Vec<InstanceRef>> = c.reader().get(&owner_page_key(&a, page)).unwrap();
        assert_eq!(listed, None, "page {page} left after revocation");
    }
    for svc in ["svc0", "svc1", "svc2", "svc3"] {
        let left = c.instances("shop", svc);
        assert_eq!(left.len(), 5, "{svc}: only bob's 5 stay: {left:?}");
    }
    check_index(&c, &b, &want_b, "bob after alice's revocation");
}

/// The adversary of issue 15 is one enrolled identity choosing its names:
/// here every instance it registers lands on page 0 of its owner index (one
/// name in 64 does), at the default limits and with names of the longest
/// length. The quota alone holds that page: it reaches exactly
/// `max_instances_per_identity` entries, within the genesis bound a later
/// block must decode, and any further registration (on that page or
/// another) is refused `IdentityFull`; a removal frees one slot; another
/// identity's index is untouched; revocation still clears every entry.
#[test]
fn an_identity_crowding_one_page_stops_at_its_quota() {
    let g = genesis();
    let p = g.params.clone();
    let max = p.max_instances_per_identity as usize;
    let mut c = Chain::with(g);
    let (a, b) = (alice().public(), bob().public());
    // The longest names whose instance lands on `page`.
    let named = |page: u16, prefix: &'static str| {
        (0u64..).filter_map(move |n| {
            let mut inst = format!("{prefix}{n}-");
            inst.push_str(&"x".repeat(p.max_name_len as usize - inst.len()));
            let r = iref(&format!("s{}", n % 6), &inst);
            (r.owner_page() == page).then_some(r)
        })
    };
    let mut crowded = named(0, "n");
    let register = |c: &mut Chain, k: &SecretKey, r: &InstanceRef| {
        let mut body = reg(&r.namespace, &r.service, &r.instance);
        body.ttl_secs = p.max_ttl_secs;
        c.tx(k, TxBody::Register(body))
    };
    let mut want = BTreeSet::new();
    while want.len() < max {
        let batch: Vec<_> = crowded.by_ref().take((max - want.len()).min(256)).collect();
        let txs: Vec<_> = batch
            .iter()
            .map(|r| register(&mut c, &alice(), r))
            .collect();
        let (_, receipts) = c.block(1_000, &txs);
        for (r, receipt) in batch.iter().zip(&receipts.receipts) {
            assert_eq!(receipt.outcome, TxOutcome::Applied, "{r:?}");
        }
        want.extend(batch);
    }
    assert_eq!(check_pages(&c, &a, &want, "full"), 1);
    let page_bytes = |c: &Chain| {
        let (bytes, _) = c.reader().prove(&owner_page_key(&a, 0)).unwrap();
        bytes.map_or(0, |b| b.len() as u64)
    };
    let full = page_bytes(&c);
    let bound = p.record_bounds().owner_page;
    assert!(full <= bound, "page of {full} bytes over its bound {bound}");
    assert!(full > 80 * max as u64, "the names are the longest: {full}");
    // Past the quota nothing registers, on the crowded page or another.
    let next = crowded.next().unwrap();
    let elsewhere = named(1, "m").next().unwrap();
    for r in [&next, &elsewhere] {
        let tx = register(&mut c, &alice(), r);
        assert_eq!(
            c.one(tx),
            TxOutcome::Rejected(TxRejection::IdentityFull { max: max as u64 })
        );
    }
    check_pages(&c, &a, &want, "refused");
    assert_eq!(page_bytes(&c), full);
    // The same name registered by bob is listed in bob's index only.
    let tx = register(&mut c, &bob(), &next);
    assert_eq!(c.one(tx), TxOutcome::Applied);
    check_pages(&c, &a, &want, "after bob");
    check_pages(&c, &b, &BTreeSet::from([next.clone()]), "bob");
    // A deregistration frees exactly one slot.
    let gone = want.pop_first().unwrap();
    let tx = c.tx(
        &alice(),
        TxBody::Deregister {
            namespace: gone.namespace.clone(),
            service: gone.service.clone(),
            instance: gone.instance.clone(),
        },
    );
    assert_eq!(c.one(tx), TxOutcome::Applied);
    check_pages(&c, &a, &want, "one removed");
    let tx = register(&mut c, &alice(), &elsewhere);
    assert_eq!(c.one(tx), TxOutcome::Applied);
    want.insert(elsewhere.clone());
    assert_eq!(check_pages(&c, &a, &want, "refilled"), 2);
    let tx = register(&mut c, &alice(), &gone);
    assert_eq!(
        c.one(tx),
        TxOutcome::Rejected(TxRejection::IdentityFull { max: max as u64 })
    );
    // Revocation removes all of them, from both pages.
    let revoke = c.authority_tx(TxBody::Revoke { identity: a });
    assert_eq!(c.one(revoke), TxOutcome::Applied);
    assert_eq!(check_pages(&c, &a, &BTreeSet::new(), "revoked"), 0);
    for svc in ["s0", "s1", "s2", "s3", "s4", "s5"] {
        let left = c.instances("shop", svc);
        assert!(
            left.iter().all(|i| *i == next.instance),
            "{svc}: only bob's instance stays: {left:?}"
        );
    }
    check_pages(&c, &b, &BTreeSet::from([next]), "bob after the revocation");
}

/// A [`MemStore`] that counts the value bytes each commit writes (what the
/// map hashes and a node writes to RocksDB for the block's records).
#[derive(Default)]
struct Counting {
    store: MemStore,
    value_bytes: Mutex<Vec<usize>>,
}

impl StateStore for Counting {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StoreError> {
        self.store.node(key)
    }
    fn value(&self, v: Version, k: KeyHash) -> Result<Option<OwnedValue>, StoreError> {
        self.store.value(v, k)
    }
    fn last_commit(&self) -> Result<Option<CommitMeta>, StoreError> {
        self.store.last_commit()
    }
    fn write_commit(&self, commit: &StateCommit) -> Result<(), StoreError> {
        let bytes = commit
            .tree
            .node_batch
            .values()
            .values()
            .map(|v| v.as_ref().map_or(0, Vec::len))
            .sum();
        self.value_bytes.lock().unwrap().push(bytes);
        self.store.write_commit(commit)
    }
}

/// The 1,000th registration of one identity writes about the bytes of its
/// 2nd: no record it rewrites grows with what the identity owns (before
/// issue 15 the identity record listed every owned instance, ~20 KB here).
#[test]
fn a_registration_writes_the_same_bytes_whatever_its_identity_owns() {
    let g = genesis();
    let store = Counting::default();
    let mut exec = RegistryExecutor::open(&store, &g).unwrap();
    let (mut parent, _) = exec.committed();
    let mut seq = 0;
    let mut height = 0;
    // One block of registrations `(service, instance)`; the value bytes it wrote.
    let mut block = |exec: &mut RegistryExecutor<&Counting>, regs: &[(String, String)]| {
        let txs: Vec<_> = regs
            .iter()
            .map(|(svc, inst)| {
                seq += 1;
                sign(&alice(), seq - 1, TxBody::Register(reg("shop", svc, inst)))
            })
            .collect();
        height += 1;
        let ctx = ExecutionContext {
            parent_id: parent,
            block_id: block_id(&parent, height, 0),
            height,
            epoch: 0,
            timestamp_ms: T0 + height * 1_000,
        };
        exec.execute(&ctx, &encode_payload(&txs)).unwrap();
        let receipts = exec.speculative_receipts(&ctx.block_id).unwrap();
        assert!(receipts
            .receipts
            .iter()
            .all(|r| r.outcome == TxOutcome::Applied));
        exec.commit(&ctx.block_id).unwrap();
        parent = ctx.block_id;
        store.value_bytes.lock().unwrap()[height as usize]
    };
    let one = |svc: &str, inst: &str| vec![(svc.to_string(), inst.to_string())];
    // Each measured registration creates a service in the existing
    // namespace, so the service index and the namespace log are alike.
    block(&mut exec, &one("warm", "w0"));
    let second = block(&mut exec, &one("m1", "x"));
    for chunk in 0..10 {
        let regs: Vec<_> = (0..100)
            .map(|i| chunk * 100 + i)
            .filter(|i| *i < 997)
            .map(|i| (format!("svc{}", i % 4), format!("i{i}")))
            .collect();
        block(&mut exec, &regs);
    }
    let id = exec.reader().identity(&alice().public()).unwrap().unwrap();
    assert_eq!(id.owned, 999);
    let thousandth = block(&mut exec, &one("m2", "x"));
    // The namespace record grew by 5 service names; a page by ~16 entries
    // of ~20 bytes. The old identity record alone grew by ~20 KB.
    assert!(
        thousandth <= second + 1_024,
        "the 1,000th registration wrote {thousandth} value bytes, the 2nd {second}"
    );
}
