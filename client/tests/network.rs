//! The client over real HTTP: failover, retry, k-node reads, epoch
//! following, the offline cache, submissions, watch resumption, heartbeats.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_client::{
    Cache, Client, ClientConfig, ClientError, HeartbeatTask, InstanceRef, LookupAnswer, Signer,
};
use palisade_crypto::api::{EpochsResponse, LookupResponse, WatchUpdate};
use palisade_crypto::{BlockInfo, Hex, SecretKey, TxBody};

use crate::support::fixture::{
    block, lookup_response, now_ms, service_key, tamper, Chain, World, CHAIN,
};
use crate::support::server::{dead_url, sse_event, MockNode, Reply};
use crate::support::{tx_node, TxBehavior, NEXT_SEQUENCE};

fn config() -> ClientConfig {
    ClientConfig {
        retries: 1,
        retry_backoff: Duration::from_millis(10),
        poll_interval: Duration::from_millis(10),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

fn client(chain: &Chain, urls: &[String], config: ClientConfig) -> Client {
    Client::new(chain.network(urls), config).unwrap()
}

/// A node answering every lookup with `response`.
fn lookup_node(response: LookupResponse) -> MockNode {
    MockNode::start(move |_| Reply::ok(&response))
}

#[test]
fn lookup_fails_over_past_dead_and_lying_nodes() {
    let world = World::new();
    let honest = world.answer("prod", "api", 5);
    let liar = lookup_node(tamper(&honest, |r| r.instances[0].endpoints[0].port = 6666));
    let good = lookup_node(honest);
    let c = client(
        &world.chain,
        &[liar.url.clone(), dead_url(), good.url.clone()],
        config(),
    );
    let answer = c.lookup("prod", "api").unwrap();
    assert!(!answer.is_stale());
    assert_eq!(answer.service().record.as_ref(), Some(&world.api));
    assert_eq!((liar.hits(), good.hits()), (1, 1));
}

#[test]
fn talking_to_one_lying_node_reports_the_forgery() {
    let world = World::new();
    let liar = lookup_node(tamper(&world.answer("prod", "api", 5), |r| {
        r.instances.pop();
    }));
    let good = lookup_node(world.answer("prod", "api", 5));
    let c = client(
        &world.chain,
        &[good.url.clone()],
        ClientConfig {
            only_node: Some(liar.url.clone()),
            ..config()
        },
    );
    assert!(matches!(
        c.lookup("prod", "api"),
        Err(ClientError::ForgedProof(_))
    ));
    assert_eq!(good.hits(), 0);
}

#[test]
fn unavailable_node_is_retried_with_backoff() {
    let world = World::new();
    let honest = world.answer("prod", "api", 5);
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let flaky = MockNode::start(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::error(503, "overloaded")
        } else {
            Reply::ok(&honest)
        }
    });
    let c = client(
        &world.chain,
        &[flaky.url.clone()],
        ClientConfig {
            retries: 2,
            ..config()
        },
    );
    assert_eq!(c.lookup("prod", "api").unwrap().service().height, 5);
    assert_eq!(flaky.hits(), 3);
}

#[test]
fn no_reachable_node_is_unavailable() {
    let world = World::new();
    let c = client(&world.chain, &[dead_url(), dead_url()], config());
    assert!(matches!(c.lookup("prod", "api"), Err(ClientError::Unavailable(v)) if v.len() == 2));
}

#[test]
fn reading_from_k_nodes_keeps_the_highest_verified_height() {
    let world = World::new();
    let behind = lookup_node(world.answer("prod", "api", 5));
    let ahead = lookup_node(world.answer("prod", "api", 7));
    let urls = [behind.url.clone(), ahead.url.clone()];
    let one = client(&world.chain, &urls, config());
    assert_eq!(one.lookup("prod", "api").unwrap().service().height, 5);
    let two = client(
        &world.chain,
        &urls,
        ClientConfig {
            read_quorum: 2,
            ..config()
        },
    );
    assert_eq!(two.lookup("prod", "api").unwrap().service().height, 7);
}

#[test]
fn lookup_follows_epoch_changes_through_the_node() {
    let world = World::new();
    let epoch1 = Chain::new(CHAIN, 1, 4, 50);
    let (value, proof) = world.state.prove(&service_key("prod", "api"));
    let answer = lookup_response(
        epoch1.quorum(block(9, world.state.root, now_ms())),
        "prod",
        "api",
        value,
        proof,
    );
    let mut end: BlockInfo = block(8, world.state.root, now_ms());
    end.next_validators = Some(epoch1.set.clone());
    let changes = EpochsResponse {
        changes: vec![Hex::new(&world.chain.quorum(end))],
    };
    let node = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs?from=0") {
            Reply::ok(&changes)
        } else {
            Reply::ok(&answer)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cached = ClientConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..config()
    };
    let c = client(&world.chain, &[node.url.clone()], cached.clone());
    let v = c.lookup("prod", "api").unwrap();
    assert_eq!((v.service().height, v.service().epoch), (9, 1));
    assert_eq!(c.trusted().latest_epoch(), 1);
    // A later client starts from the epochs followed before (verified again
    // from genesis), even from a node that does not serve them.
    let answer_only = MockNode::start({
        let a = c.lookup_fresh("prod", "api").unwrap().1;
        move |_| Reply::ok(&a)
    });
    let later = client(&world.chain, &[answer_only.url.clone()], cached);
    assert_eq!(later.trusted().latest_epoch(), 1);
    assert_eq!(later.lookup("prod", "api").unwrap().service().epoch, 1);
    assert!(answer_only.paths().iter().all(|p| !p.contains("epochs")));
}

#[test]
fn a_halted_chain_serves_its_newest_verified_state_marked_stale() {
    let world = World::new();
    let old = now_ms() - 600_000;
    let a = lookup_node(world.answer_at("prod", "api", 5, old, &[0, 1, 2]));
    let b = lookup_node(world.answer_at("prod", "api", 6, old + 1_000, &[0, 1, 2]));
    let urls = [a.url.clone(), b.url.clone()];
    match client(&world.chain, &urls, config())
        .lookup("prod", "api")
        .unwrap()
    {
        LookupAnswer::Stale {
            service,
            age,
            cause,
        } => {
            assert_eq!(service.height, 6);
            assert!(age >= Duration::from_secs(599));
            assert!(matches!(cause, ClientError::Stale { .. }));
        }
        other => panic!("expected a stale answer, got {other:?}"),
    }
    let strict = client(
        &world.chain,
        &urls,
        ClientConfig {
            serve_stale: false,
            ..config()
        },
    );
    assert!(matches!(
        strict.lookup("prod", "api"),
        Err(ClientError::Stale { .. })
    ));
    assert!(matches!(
        strict.lookup_fresh("prod", "api"),
        Err(ClientError::Stale { .. })
    ));
    // A fresh answer from any node wins over stale ones.
    let fresh = lookup_node(world.answer("prod", "api", 4));
    let mixed = client(&world.chain, &[a.url.clone(), fresh.url.clone()], config());
    let answer = mixed.lookup("prod", "api").unwrap();
    assert_eq!((answer.is_stale(), answer.service().height), (false, 4));
}

#[test]
fn cache_serves_the_last_verified_answer_when_no_node_answers() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let cached = ClientConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..config()
    };
    let node = lookup_node(world.answer("prod", "api", 5));
    let online = client(&world.chain, &[node.url.clone()], cached.clone());
    let fresh = online.lookup("prod", "api").unwrap();
    assert!(!fresh.is_stale());

    let offline = client(&world.chain, &[dead_url()], cached.clone());
    match offline.lookup("prod", "api").unwrap() {
        LookupAnswer::Stale { service, cause, .. } => {
            assert_eq!(&service, fresh.service());
            assert!(matches!(cause, ClientError::Transport { .. }), "{cause:?}");
        }
        other => panic!("expected a cached answer, got {other:?}"),
    }
    // Nothing cached for another service: the outage is reported.
    assert!(matches!(
        offline.lookup("prod", "db"),
        Err(ClientError::Transport { .. })
    ));

    // A tampered cache file fails verification like a lying node.
    let cache = Cache::new(dir.path().join(CHAIN));
    let honest = cache.load("prod", "api").unwrap().unwrap();
    let forged = tamper(&honest, |r| {
        r.instances[1].endpoints[0].host = "6.6.6.6".into()
    });
    cache.store("prod", "api", &forged).unwrap();
    assert!(matches!(
        offline.lookup("prod", "api"),
        Err(ClientError::ForgedProof(_))
    ));
}

fn signer() -> Signer {
    Signer::new(SecretKey::from_seed([21; 32]))
}

fn heartbeat() -> TxBody {
    InstanceRef {
        namespace: "prod".into(),
        service: "api".into(),
        instance: "api-1".into(),
    }
    .heartbeat()
}

#[test]
fn execute_learns_the_sequence_and_returns_the_verified_receipt() {
    let chain = Chain::test();
    let (node, seen) = tx_node(chain.clone(), TxBehavior::Commit);
    let c = client(&chain, &[node.url.clone()], config());
    let mut s = signer();
    let r = c.execute(&mut s, heartbeat()).unwrap();
    assert_eq!(r.certified_height, 11);
    c.execute(&mut s, heartbeat()).unwrap();
    let seen = seen.lock().unwrap();
    let sequences: Vec<u64> = seen.iter().map(|t| t.tx.sequence).collect();
    assert_eq!(sequences, vec![NEXT_SEQUENCE, NEXT_SEQUENCE + 1]);
    assert_eq!(seen[0].tx.chain_id, CHAIN);
    assert_eq!(seen[0].id(), r.tx_id);
    // Only the first transaction asked the nodes for the sequence.
    let asked = node
        .paths()
        .iter()
        .filter(|p| p.starts_with("GET /v1/accounts/"))
        .count();
    assert_eq!(asked, 1);
}

#[test]
fn sequence_refusal_makes_the_client_ask_the_nodes_again() {
    let chain = Chain::test();
    let (first, _) = tx_node(chain.clone(), TxBehavior::Commit);
    let mut s = signer();
    client(&chain, &[first.url.clone()], config())
        .execute(&mut s, heartbeat())
        .unwrap();
    assert_eq!(s.known_next_sequence(), Some(NEXT_SEQUENCE + 1));
    // Another process used the key meanwhile: the nodes are at 9.
    let receipts = chain.clone();
    let moved_on = MockNode::start(move |req| {
        if req.path.starts_with("/v1/accounts/") {
            let key = req.path.trim_start_matches("/v1/accounts/");
            return Reply::ok(&palisade_crypto::api::AccountResponse {
                key: palisade_crypto::PublicKey::from_hex(key).unwrap(),
                next_sequence: 9,
            });
        }
        let submit: palisade_crypto::api::SubmitRequest =
            serde_json::from_slice(&req.body).unwrap();
        let tx: palisade_crypto::SignedTransaction = submit.tx.decode().unwrap();
        if tx.tx.sequence < 9 {
            return Reply::error(400, "stale_sequence");
        }
        Reply::ok(&palisade_crypto::api::SubmitResponse {
            tx_id: tx.id(),
            status: palisade_crypto::api::TxStatus::Committed,
            receipt: Some(crate::support::receipt(&receipts, tx.id(), 0, "applied")),
        })
    });
    client(&chain, &[moved_on.url.clone()], config())
        .execute(&mut s, heartbeat())
        .unwrap();
    assert_eq!(s.known_next_sequence(), Some(10));
}

#[test]
fn pending_submission_is_polled_until_committed() {
    let chain = Chain::test();
    let (node, _) = tx_node(chain.clone(), TxBehavior::PendingThenCommit);
    let c = client(&chain, &[node.url.clone()], config());
    c.execute(&mut signer(), heartbeat()).unwrap();
    assert!(node.paths().iter().any(|p| p.starts_with("GET /v1/tx/")));
}

#[test]
fn a_transaction_no_node_knows_is_submitted_again() {
    let chain = Chain::test();
    let (node, seen) = tx_node(chain.clone(), TxBehavior::LoseFirst);
    let c = client(&chain, &[node.url.clone()], config());
    let r = c.execute(&mut signer(), heartbeat()).unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].id(), seen[1].id()), (r.tx_id, r.tx_id));
}

#[test]
fn rejection_is_reported_with_its_reason() {
    let chain = Chain::test();
    let (node, seen) = tx_node(
        chain.clone(),
        TxBehavior::Reject("rejected: not enrolled in prod"),
    );
    let c = client(&chain, &[node.url.clone()], config());
    let mut s = signer();
    for _ in 0..2 {
        assert!(matches!(
            c.execute(&mut s, heartbeat()),
            Err(ClientError::Rejected { reason, .. }) if reason == "not enrolled in prod"
        ));
    }
    // A rejected transaction consumes no sequence number.
    let sequences: Vec<u64> = seen.lock().unwrap().iter().map(|t| t.tx.sequence).collect();
    assert_eq!(sequences, vec![NEXT_SEQUENCE, NEXT_SEQUENCE]);
    assert_eq!(s.known_next_sequence(), None);
}

#[test]
fn commit_that_never_comes_times_out() {
    let chain = Chain::test();
    let (node, _) = tx_node(chain.clone(), TxBehavior::AlwaysPending);
    let c = client(
        &chain,
        &[node.url.clone()],
        ClientConfig {
            commit_timeout: Duration::from_millis(100),
            ..config()
        },
    );
    assert!(matches!(
        c.execute(&mut signer(), heartbeat()),
        Err(ClientError::Timeout { .. })
    ));
}

#[test]
fn forged_receipt_is_refused_and_an_honest_node_used_instead() {
    let chain = Chain::test();
    let (liar, _) = tx_node(chain.clone(), TxBehavior::ForgeReceipt);
    let (good, _) = tx_node(chain.clone(), TxBehavior::Commit);
    let only_liar = client(&chain, &[liar.url.clone()], config());
    assert!(matches!(
        only_liar.execute(&mut signer(), heartbeat()),
        Err(ClientError::ForgedReceipt(_))
    ));
    let both = client(&chain, &[liar.url.clone(), good.url.clone()], config());
    both.execute(&mut signer(), heartbeat()).unwrap();
    assert!(good.paths().iter().any(|p| p == "POST /v1/tx"));
}

fn update(response: LookupResponse) -> String {
    update_of("api", response)
}

fn update_of(service: &str, response: LookupResponse) -> String {
    let u = WatchUpdate {
        namespace: "prod".into(),
        service: service.into(),
        lookup: response,
    };
    sse_event("update", &serde_json::to_string(&u).unwrap())
}

#[test]
fn watch_resumes_from_the_last_height_without_duplicates() {
    let world = World::new();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let answers: Vec<String> = (3..=5)
        .map(|h| update(world.answer("prod", "api", h)))
        .collect();
    let node = MockNode::start(move |_| {
        let events = match seen.fetch_add(1, Ordering::SeqCst) {
            0 => vec![": hello\n\n".into(), answers[0].clone(), answers[1].clone()],
            _ => vec![answers[1].clone(), answers[2].clone()],
        };
        Reply::Sse(events)
    });
    let c = client(&world.chain, &[node.url.clone()], config());
    let heights: Vec<u64> = c
        .watch("prod", Some("api"), Some(3))
        .take(3)
        .map(|u| u.unwrap().height)
        .collect();
    assert_eq!(heights, vec![3, 4, 5]);
    let paths = node.paths();
    assert_eq!(
        paths[0],
        "GET /v1/watch?namespace=prod&service=api&from_height=3"
    );
    assert_eq!(
        paths[1],
        "GET /v1/watch?namespace=prod&service=api&from_height=4"
    );
}

#[test]
fn watch_refuses_forged_updates_and_moves_to_another_node() {
    let world = World::new();
    let forged = update(tamper(&world.answer("prod", "api", 3), |r| {
        r.instances.clear()
    }));
    let liar = MockNode::start(move |_| Reply::Sse(vec![forged.clone()]));
    let honest = update(world.answer("prod", "api", 3));
    let good = MockNode::start(move |_| Reply::Sse(vec![honest.clone()]));
    let c = client(
        &world.chain,
        &[liar.url.clone(), good.url.clone()],
        config(),
    );
    let mut watch = c.watch("prod", None, None);
    assert!(matches!(
        watch.next(),
        Some(Err(ClientError::ForgedProof(_)))
    ));
    let v = watch.next().unwrap().unwrap();
    assert_eq!((v.height, v.instances().len()), (3, 2));
}

#[test]
fn heartbeat_task_renews_until_stopped() {
    let chain = Chain::test();
    let (node, seen) = tx_node(chain.clone(), TxBehavior::Commit);
    let c = Arc::new(client(&chain, &[node.url.clone()], config()));
    let target = InstanceRef {
        namespace: "prod".into(),
        service: "api".into(),
        instance: "api-1".into(),
    };
    let mut s = signer();
    c.register(&mut s, api_registration("api-1")).unwrap();
    let task = HeartbeatTask::spawn(c, s, target, Duration::from_millis(5));
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = task.stop();
    assert!(report.renewals >= 3, "{report:?}");
    assert_eq!(report.failures, 0);
    let seen = seen.lock().unwrap();
    assert!(seen[1..]
        .iter()
        .all(|t| matches!(t.tx.body, TxBody::Heartbeat { .. })));
    assert_eq!(seen.len() as u64 - 1, report.renewals);
}

#[test]
fn namespace_watch_resumes_inside_a_height_without_losing_or_repeating_services() {
    let world = World::new();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let (api4, db4, api5) = (
        update_of("api", world.answer("prod", "api", 4)),
        update_of("db", world.answer("prod", "db", 4)),
        update_of("api", world.answer("prod", "api", 5)),
    );
    let node = MockNode::start(move |_| {
        let events = match seen.fetch_add(1, Ordering::SeqCst) {
            // Cut after the first of two services changed at height 4.
            0 => vec![api4.clone()],
            _ => vec![api4.clone(), db4.clone(), api5.clone()],
        };
        Reply::Sse(events)
    });
    let c = client(&world.chain, &[node.url.clone()], config());
    let got: Vec<(String, u64)> = c
        .watch("prod", None, Some(4))
        .take(3)
        .map(|u| {
            let u = u.unwrap();
            (u.service, u.height)
        })
        .collect();
    let expected = [("api", 4), ("db", 4), ("api", 5)].map(|(s, h)| (s.to_string(), h));
    assert_eq!(got, expected);
    assert!(node.paths()[1].ends_with("from_height=4"));
}

#[test]
fn watch_refuses_a_rollback_of_a_service() {
    let world = World::new();
    let (newer, older) = (
        update(world.answer("prod", "api", 6)),
        update(world.answer("prod", "api", 5)),
    );
    let node = MockNode::start(move |_| Reply::Sse(vec![newer.clone(), older.clone()]));
    let c = client(&world.chain, &[node.url.clone()], config());
    let mut watch = c.watch("prod", Some("api"), None);
    assert_eq!(watch.next().unwrap().unwrap().height, 6);
    assert_eq!(
        watch.next().unwrap(),
        Err(ClientError::OutOfOrder {
            service: "prod/api".into(),
            got: 5,
            last: 6
        })
    );
}

#[test]
fn two_certified_states_at_one_height_are_equivocation() {
    let world = World::new();
    // The same validators certify another state at the same height.
    let mut other = World::new();
    other
        .state
        .put_record(&crate::support::fixture::record("prod", "api", vec![]));
    let a = lookup_node(world.answer("prod", "api", 5));
    let b = lookup_node(other.answer("prod", "api", 5));
    let c = client(
        &world.chain,
        &[a.url.clone(), b.url.clone()],
        ClientConfig {
            read_quorum: 2,
            ..config()
        },
    );
    assert!(matches!(
        c.lookup("prod", "api"),
        Err(ClientError::Equivocation { height: 5, .. })
    ));
}

fn api_registration(instance: &str) -> palisade_crypto::Registration {
    palisade_client::registration(
        "prod",
        "api",
        instance,
        vec![palisade_client::parse_endpoint("10.0.0.7:80").unwrap()],
        vec![palisade_client::parse_label("zone=a").unwrap()],
        30,
    )
    .unwrap()
}

#[test]
fn register_and_deregister_are_confirmed_by_verified_state() {
    let chain = Chain::test();
    let (node, _) = tx_node(chain.clone(), TxBehavior::Commit);
    let c = client(&chain, &[node.url.clone()], config());
    let mut s = signer();
    c.register(&mut s, api_registration("api-7")).unwrap();
    let found = c.lookup("prod", "api").unwrap();
    assert_eq!(found.service().instances()[0].instance, "api-7");
    let target = InstanceRef {
        namespace: "prod".into(),
        service: "api".into(),
        instance: "api-7".into(),
    };
    c.deregister(&mut s, &target).unwrap();
    assert!(c.lookup("prod", "api").unwrap().service().record.is_none());
}

#[test]
fn applied_outcome_the_state_does_not_show_is_unconfirmed() {
    let chain = Chain::test();
    let (node, _) = tx_node(chain.clone(), TxBehavior::Pretend);
    let c = client(&chain, &[node.url.clone()], config());
    assert!(matches!(
        c.register(&mut signer(), api_registration("api-7")),
        Err(ClientError::Unconfirmed { height: 11, .. })
    ));
}

#[test]
fn heartbeat_of_an_instance_the_state_lacks_is_unconfirmed() {
    let chain = Chain::test();
    let (node, _) = tx_node(chain.clone(), TxBehavior::Commit);
    let c = client(&chain, &[node.url.clone()], config());
    let target = InstanceRef {
        namespace: "prod".into(),
        service: "api".into(),
        instance: "never-registered".into(),
    };
    assert!(matches!(
        c.heartbeat(&mut signer(), &target),
        Err(ClientError::Unconfirmed { .. })
    ));
}
