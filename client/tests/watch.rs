//! Watch over real HTTP: resumption, duplicates, forged updates, rollbacks,
//! nodes that cut, stall or send oversized events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use palisade_client::{Client, ClientError, VerifiedService, MAX_CHANGED};
use palisade_crypto::api::{
    ChangeLink, ChangesResponse, LookupResponse, NamespaceChanges, WatchSynced, WatchUpdate,
};
use palisade_crypto::{encode, Hex, NamespaceLink, StateKey};

use crate::network::{client, config};
use crate::support::fixture::{block, now_ms, tamper, World};
use crate::support::server::{sse_event, MockNode, Reply};

/// `synced` with a fresh certificate of `height` and `prod/api` proven at
/// it (what an honest node sends for a watch of `prod/api`).
fn synced(world: &World, height: u64) -> String {
    let subject = world.answer("prod", "api", height);
    let synced = WatchSynced {
        certificate: subject.certificate.clone(),
        service: Some(subject),
        namespace: None,
    };
    sse_event("synced", &serde_json::to_string(&synced).unwrap())
}

/// `synced` of a watch of namespace `prod` at `height`: a fresh certificate
/// and the namespace's change chain proven at it, with `links` inline (or
/// left out for the client to fetch).
fn ns_synced(world: &World, height: u64, links: Option<Vec<ChangeLink>>) -> String {
    let cert = world
        .chain
        .quorum(block(height, world.state.root, now_ms()));
    let (value, proof) = world.state.prove(&StateKey::NamespaceLog {
        namespace: "prod".into(),
    });
    let synced = WatchSynced {
        certificate: Hex::new(&cert),
        service: None,
        namespace: Some(NamespaceChanges {
            value: value.map(Hex::from_bytes),
            proof: Hex::new(&proof),
            links,
        }),
    };
    sse_event("synced", &serde_json::to_string(&synced).unwrap())
}

/// `synced` as nodes sent it before the issue-13 review: the certificate
/// alone, proving nothing about the subject.
fn bare_synced(world: &World, height: u64) -> String {
    let cert = world
        .chain
        .quorum(block(height, world.state.root, now_ms()));
    sse_event("synced", &serde_json::to_string(&Hex::new(&cert)).unwrap())
}

/// The first `n` items of a watch, or `None` when they do not arrive within
/// 30 s (the watch runs on its own thread, which is left behind then).
fn first_items(
    client: Client,
    from: Option<u64>,
    stall: Duration,
    n: usize,
) -> Option<Vec<Result<VerifiedService, ClientError>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let items: Vec<_> = client
            .watch("prod", Some("api"), from)
            .stall_after(stall)
            .take(n)
            .collect();
        let _ = tx.send(items);
    });
    rx.recv_timeout(Duration::from_secs(30)).ok()
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
    let synced3 = synced(&world, 3);
    let node = MockNode::start(move |_| {
        let events = match seen.fetch_add(1, Ordering::SeqCst) {
            0 => vec![
                ": hello\n\n".into(),
                answers[0].clone(),
                synced3.clone(),
                answers[1].clone(),
            ],
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
    let mut watch = c.watch("prod", None, Some(3));
    assert!(matches!(
        watch.next(),
        Some(Err(ClientError::ForgedProof(_)))
    ));
    let v = watch.next().unwrap().unwrap();
    assert_eq!((v.height, v.instances().len()), (3, 2));
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
fn watch_refuses_an_update_below_the_height_asked_for() {
    let world = World::new();
    let old = update(world.answer("prod", "api", 5));
    let liar = MockNode::start(move |_| Reply::Sse(vec![old.clone()]));
    let good = update(world.answer("prod", "api", 10));
    let honest = MockNode::start(move |_| Reply::Sse(vec![good.clone()]));
    let c = client(
        &world.chain,
        &[liar.url.clone(), honest.url.clone()],
        config(),
    );
    let mut watch = c.watch("prod", Some("api"), Some(10));
    assert_eq!(
        watch.next().unwrap(),
        Err(ClientError::OutOfOrder {
            service: "prod/api".into(),
            got: 5,
            last: 9
        })
    );
    assert_eq!(watch.next().unwrap().unwrap().height, 10);
}

#[test]
fn watch_refuses_an_old_certified_state_replayed_as_new() {
    let world = World::new();
    let hour_ago = now_ms() - 3_600_000;
    let replay = update(world.answer_at("prod", "api", 7, hour_ago, &[0, 1, 2]));
    let liar = MockNode::start(move |_| Reply::Sse(vec![replay.clone()]));
    let c = client(&world.chain, &[liar.url.clone()], config());
    let mut watch = c.watch("prod", Some("api"), None);
    assert!(matches!(watch.next(), Some(Err(ClientError::Stale { .. }))));
}

#[test]
fn namespace_watch_refuses_a_service_older_than_what_was_seen() {
    let world = World::new();
    let (api8, db6) = (
        update_of("api", world.answer("prod", "api", 8)),
        update_of("db", world.answer("prod", "db", 6)),
    );
    let node = MockNode::start(move |_| Reply::Sse(vec![api8.clone(), db6.clone()]));
    let c = client(&world.chain, &[node.url.clone()], config());
    let mut watch = c.watch("prod", None, Some(1));
    assert_eq!(watch.next().unwrap().unwrap().height, 8);
    assert_eq!(
        watch.next().unwrap(),
        Err(ClientError::OutOfOrder {
            service: "prod/db".into(),
            got: 6,
            last: 8
        })
    );
}

#[test]
fn watch_resumes_from_the_last_synced_height_not_from_an_update() {
    let world = World::new();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let (api5, db5, api7) = (
        update_of("api", world.answer("prod", "api", 5)),
        update_of("db", world.answer("prod", "db", 5)),
        update_of("api", world.answer("prod", "api", 7)),
    );
    let synced5 = ns_synced(&world, 5, Some(vec![]));
    let node = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            return Reply::error(404, "not_found");
        }
        let events = match seen.fetch_add(1, Ordering::SeqCst) {
            // The batch of heights 3..=5 is cut after its first update.
            0 => vec![api5.clone()],
            1 => vec![api5.clone(), db5.clone(), synced5.clone()],
            _ => vec![api7.clone()],
        };
        Reply::Sse(events)
    });
    let c = client(&world.chain, &[node.url.clone()], config());
    let got: Vec<(String, u64)> = c
        .watch("prod", None, Some(3))
        .take(3)
        .map(|u| {
            let u = u.unwrap();
            (u.service, u.height)
        })
        .collect();
    let expected = [("api", 5), ("db", 5), ("api", 7)].map(|(s, h)| (s.to_string(), h));
    assert_eq!(got, expected);
    let paths = node.paths();
    // Resumed from the batch's start (3), not from the update's height.
    assert!(paths[1].ends_with("from_height=3"), "{paths:?}");
    assert!(paths[2].ends_with("from_height=6"), "{paths:?}");
}

#[test]
fn watch_fails_over_from_a_node_that_always_cuts_off() {
    let world = World::new();
    let cut = sse_event("cutoff", r#"{"code":"cutoff","message":"go away"}"#);
    let cutter = MockNode::start(move |_| Reply::Sse(vec![cut.clone()]));
    let good = update(world.answer("prod", "api", 4));
    let honest = MockNode::start(move |_| Reply::Sse(vec![good.clone()]));
    let c = client(
        &world.chain,
        &[cutter.url.clone(), honest.url.clone()],
        config(),
    );
    let items = first_items(c, None, Duration::from_secs(20), 1).expect("an update within 30 s");
    assert_eq!(items[0].as_ref().unwrap().height, 4);
    assert!(honest.hits() >= 1);
}

#[test]
fn watch_fails_over_from_a_node_that_sends_only_keepalives() {
    let world = World::new();
    let keepalives = vec![": keepalive\n\n".to_string(); 600];
    let staller =
        MockNode::start(move |_| Reply::SseTrickle(keepalives.clone(), Duration::from_millis(100)));
    let good = update(world.answer("prod", "api", 4));
    let honest = MockNode::start(move |_| Reply::Sse(vec![good.clone()]));
    let c = client(
        &world.chain,
        &[staller.url.clone(), honest.url.clone()],
        config(),
    );
    let items = first_items(c, None, Duration::from_secs(1), 1).expect("an update within 30 s");
    assert_eq!(items[0].as_ref().unwrap().height, 4);
    assert_eq!(staller.hits(), 1);
}

#[test]
fn an_oversized_event_is_reported_and_the_watch_moves_on() {
    let world = World::new();
    let huge = format!("event: update\ndata: {}\n\n", "x".repeat(9 << 20));
    let big = MockNode::start(move |_| Reply::Sse(vec![huge.clone()]));
    let good = update(world.answer("prod", "api", 4));
    let honest = MockNode::start(move |_| Reply::Sse(vec![good.clone()]));
    let c = client(
        &world.chain,
        &[big.url.clone(), honest.url.clone()],
        config(),
    );
    let mut watch = c.watch("prod", Some("api"), None);
    assert!(matches!(
        watch.next(),
        Some(Err(ClientError::Malformed(m))) if m.contains("over")
    ));
    assert_eq!(watch.next().unwrap().unwrap().height, 4);
}

#[test]
fn a_change_too_large_for_an_event_is_fetched_with_a_verified_lookup() {
    let world = World::new();
    let changed = sse_event("changed", "prod/api");
    let answer = world.answer("prod", "api", 9);
    let node = MockNode::start(move |r| {
        if r.path.starts_with("/v1/watch") {
            Reply::Sse(vec![changed.clone()])
        } else {
            Reply::ok(&answer)
        }
    });
    let c = client(&world.chain, &[node.url.clone()], config());
    let v = c.watch("prod", Some("api"), None).next().unwrap().unwrap();
    assert_eq!((v.height, v.instances().len()), (9, 2));
    assert_eq!(node.paths()[1], "GET /v1/services/prod/api");
}

/// The world after `prod/api` changed: api-2 moved to another host.
fn changed_world() -> World {
    let mut world = World::new();
    world.api = crate::support::fixture::record(
        "prod",
        "api",
        vec![
            crate::support::fixture::instance("api-1", "10.0.0.1", 8080),
            crate::support::fixture::instance("api-2", "10.0.9.9", 8080),
        ],
    );
    world.state.put_record(&world.api);
    world
}

/// Issue-13 review (the reviewer's attack): a lying node sends a fresh,
/// valid `synced` certificate without the updates below it. As nodes sent
/// it before, the certificate alone, it proves nothing about the service
/// and is refused: the resume point does not move past changes never sent.
#[test]
fn a_synced_without_a_subject_proof_does_not_move_the_resume_point() {
    let world = World::new();
    let bare = bare_synced(&world, 9);
    let node = MockNode::start(move |_| Reply::Sse(vec![bare.clone()]));
    let c = client(&world.chain, &[node.url.clone()], config());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut watch = c.watch("prod", Some("api"), Some(3));
        let first = watch.next();
        let _ = tx.send((first, watch.resume_height()));
    });
    let (first, resume) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the watch reports the unproven synced within 20 s");
    assert!(
        matches!(&first, Some(Err(ClientError::Malformed(m))) if m.contains("synced")),
        "{first:?}"
    );
    assert_eq!(
        resume,
        Some(3),
        "the resume point moved on an unproven synced"
    );
}

/// Issue-13 review: a node that sends only `synced` events (no update) for
/// a stretch in which the service changed cannot hide the change: the
/// subject proof shows it and the watch delivers it at the synced height.
#[test]
fn a_synced_without_the_updates_below_it_delivers_the_change_it_proves() {
    let before = World::new();
    let after = changed_world();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let (a3, s3) = (update(before.answer("prod", "api", 3)), synced(&before, 3));
    let s6 = synced(&after, 6);
    let node = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            return Reply::error(404, "not_found");
        }
        match seen.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::Sse(vec![a3.clone(), s3.clone()]),
            // Heights 4..=6 held a change; only `synced` is sent.
            _ => Reply::Sse(vec![s6.clone()]),
        }
    });
    let c = client(&before.chain, &[node.url.clone()], config());
    let got: Vec<VerifiedService> = c
        .watch("prod", Some("api"), Some(3))
        .take(2)
        .map(|u| u.unwrap())
        .collect();
    assert_eq!(got[0].height, 3);
    assert_eq!(got[0].record.as_ref(), Some(&before.api));
    assert_eq!(got[1].height, 6, "the change proven at 6 is delivered");
    assert_eq!(got[1].record.as_ref(), Some(&after.api));
}

/// An honest `synced` whose proven state is what was delivered delivers
/// nothing more: a quiet service's synced-only stream is just progress.
#[test]
fn a_synced_proving_the_delivered_state_delivers_nothing() {
    let world = World::new();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let (a3, s3, s5) = (
        update(world.answer("prod", "api", 3)),
        synced(&world, 3),
        synced(&world, 5),
    );
    let a7 = update(changed_world().answer("prod", "api", 7));
    let node = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            return Reply::error(404, "not_found");
        }
        match seen.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::Sse(vec![a3.clone(), s3.clone(), s5.clone()]),
            _ => Reply::Sse(vec![a7.clone()]),
        }
    });
    let c = client(&world.chain, &[node.url.clone()], config());
    let heights: Vec<u64> = c
        .watch("prod", Some("api"), Some(3))
        .take(2)
        .map(|u| u.unwrap().height)
        .collect();
    assert_eq!(heights, vec![3, 7]);
}

/// A registry where `prod/api` and `prod/db` both changed at height 6 (after
/// a change of `api` at 2), with the namespace's change chain saying so;
/// and the chain's head link with its services.
fn chained_world() -> (World, ChangeLink) {
    let mut world = changed_world();
    world.db = crate::support::fixture::record(
        "prod",
        "db",
        vec![crate::support::fixture::instance("db-1", "10.0.1.9", 5432)],
    );
    world.state.put_record(&world.db);
    let first = NamespaceLink::next(None, "prod", 2, &["api".to_string()]);
    let services = vec!["api".to_string(), "db".to_string()];
    let head = NamespaceLink::next(Some(&first), "prod", 6, &services);
    world.state.put(vec![(
        StateKey::NamespaceLog {
            namespace: "prod".into(),
        },
        Some(encode(&head)),
    )]);
    let link = ChangeLink {
        link: Hex::new(&head),
        services,
    };
    (world, link)
}

/// A node that, for a namespace watch from 5, sends `api`'s change at 6 and
/// leaves `db`'s out, then `synced` at 6 with the honest change chain
/// (`links` inline, or `None`: served by the `changes` route).
fn omitting_node(world: &World, link: &ChangeLink, inline: bool) -> MockNode {
    let api6 = update_of("api", world.answer("prod", "api", 6));
    let synced6 = ns_synced(world, 6, inline.then(|| vec![link.clone()]));
    let db6 = world.answer("prod", "db", 6);
    let changes = ChangesResponse {
        links: vec![link.clone()],
    };
    MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            Reply::error(404, "not_found")
        } else if req.path.starts_with("/v1/services/prod/db") {
            Reply::ok(&db6)
        } else if req
            .path
            .starts_with("/v1/namespaces/prod/changes?height=6&from_height=5")
        {
            Reply::ok(&changes)
        } else if req.path.starts_with("/v1/watch") {
            Reply::Sse(vec![api6.clone(), synced6.clone()])
        } else {
            Reply::error(404, "not_found")
        }
    })
}

/// The first `n` items of a watch of namespace `prod` from 5, or `None`
/// when they do not arrive within 30 s.
fn first_namespace_items(
    client: Client,
    n: usize,
) -> Option<Vec<Result<VerifiedService, ClientError>>> {
    namespace_items(client, Some(5), MAX_CHANGED, n)
}

/// The first `n` items of a watch of namespace `prod` from `from` with at
/// most `max_changed` services per `synced`, or `None` when they do not
/// arrive within 30 s (the watch's thread is then left behind).
fn namespace_items(
    client: Client,
    from: Option<u64>,
    max_changed: usize,
    n: usize,
) -> Option<Vec<Result<VerifiedService, ClientError>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let items: Vec<_> = client
            .watch("prod", None, from)
            .max_changed(max_changed)
            .take(n)
            .collect();
        let _ = tx.send(items);
    });
    rx.recv_timeout(Duration::from_secs(30)).ok()
}

/// Each item's service and height (panics on an error item).
fn services_at(items: &[Result<VerifiedService, ClientError>]) -> Vec<(String, u64)> {
    items
        .iter()
        .map(|u| {
            let u = u.as_ref().unwrap();
            (u.service.clone(), u.height)
        })
        .collect()
}

/// Issue-13 review: a lying node leaves one service's change out of a
/// namespace watch. The `synced` proves the namespace's change chain,
/// which names `db` as changed at 6: the client looks it up and delivers it.
#[test]
fn a_namespace_synced_delivers_a_change_the_stream_left_out() {
    let (world, link) = chained_world();
    let node = omitting_node(&world, &link, true);
    let c = client(&world.chain, &[node.url.clone()], config());
    let items = first_namespace_items(c, 2).expect("two changes within 30 s");
    let got = services_at(&items);
    assert_eq!(got, [("api".to_string(), 6), ("db".to_string(), 6)]);
    assert_eq!(items[1].as_ref().unwrap().record.as_ref(), Some(&world.db));
}

/// The same when the change chain's links did not fit in the event: the
/// client fetches them from the node and checks them against the head.
#[test]
fn a_namespace_synced_too_large_to_inline_fetches_its_links() {
    let (world, link) = chained_world();
    let node = omitting_node(&world, &link, false);
    let c = client(&world.chain, &[node.url.clone()], config());
    let items = first_namespace_items(c, 2).expect("two changes within 30 s");
    let db = items[1].as_ref().unwrap();
    assert_eq!((db.service.as_str(), db.height), ("db", 6));
    assert!(
        node.paths()
            .iter()
            .any(|p| p.contains("/v1/namespaces/prod/changes")),
        "{:?}",
        node.paths()
    );
}

/// A node that lists fewer services for a link than the link hashes (to
/// hide `db`'s change) is refused.
#[test]
fn a_change_link_listing_fewer_services_than_it_hashes_is_refused() {
    let (world, mut link) = chained_world();
    link.services.retain(|s| s == "api");
    let node = omitting_node(&world, &link, true);
    let c = client(&world.chain, &[node.url.clone()], config());
    let items = first_namespace_items(c, 2).expect("two items within 30 s");
    assert_eq!(items[0].as_ref().unwrap().service, "api");
    assert!(
        matches!(&items[1], Err(ClientError::ForgedProof(_))),
        "{:?}",
        items[1]
    );
}

/// A node that sends a namespace watch only `synced` at 6 (every change
/// left out), with the chain inline; it answers lookups of `api` and `db`
/// at 6 and lists the namespace at `listed`.
fn silent_node(world: &World, link: &ChangeLink, listed: u64) -> MockNode {
    let synced6 = ns_synced(world, 6, Some(vec![link.clone()]));
    let (api6, db6) = (
        world.answer("prod", "api", 6),
        world.answer("prod", "db", 6),
    );
    let listing = crate::support::fixture::namespace_response(world, "prod", listed);
    MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            Reply::error(404, "not_found")
        } else if req.path.starts_with("/v1/services/prod/api") {
            Reply::ok(&api6)
        } else if req.path.starts_with("/v1/services/prod/db") {
            Reply::ok(&db6)
        } else if req.path == "/v1/namespaces/prod" {
            Reply::ok(&listing)
        } else if req.path.starts_with("/v1/watch") {
            Reply::Sse(vec![synced6.clone()])
        } else {
            Reply::error(404, "not_found")
        }
    })
}

/// Wave-3 review H2: an SDK namespace watch started without a height used
/// to check only the chain's head, so a node that held the stream and then
/// sent a fresh `synced` hid every change in between. It now starts after a
/// verified listing (height 4), and the chain from 5 names both changes.
#[test]
fn a_namespace_watch_without_a_height_starts_after_a_verified_listing() {
    let (world, link) = chained_world();
    let node = silent_node(&world, &link, 4);
    let c = client(&world.chain, &[node.url.clone()], config());
    let items = namespace_items(c, None, MAX_CHANGED, 2)
        .expect("both changes the stream left out within 30 s");
    let got = services_at(&items);
    assert_eq!(got, [("api".to_string(), 6), ("db".to_string(), 6)]);
    let watch = node
        .paths()
        .into_iter()
        .find(|p| p.contains("/v1/watch"))
        .unwrap();
    assert!(watch.ends_with("from_height=5"), "{watch}");
}

/// Wave-3 review H5: the changes a namespace `synced` proves and queues are
/// handed out one per call; the resume point reaches the synced height only
/// with the last of them, so persisting `resume_height()` after an item
/// never skips one still queued.
#[test]
fn the_resume_point_waits_for_the_changes_a_synced_queued() {
    let (world, link) = chained_world();
    let node = silent_node(&world, &link, 4);
    let c = client(&world.chain, &[node.url.clone()], config());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut watch = c.watch("prod", None, Some(5));
        let mut seen = Vec::new();
        for _ in 0..2 {
            let item = watch.next().unwrap().unwrap();
            seen.push((item.service, watch.resume_height()));
        }
        let _ = tx.send(seen);
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("two changes within 30 s");
    assert_eq!(
        seen,
        [("api".to_string(), Some(5)), ("db".to_string(), Some(7))],
        "the resume point passed a change still queued"
    );
}

/// Wave-3 review H3: a node that serves a long change chain one slow page
/// at a time cannot hold a `synced` for longer than the stall limit: the
/// walk gives up (a timeout, not a forgery) and the next node, which
/// serves the chain at once, delivers the changes.
#[test]
fn a_node_paging_its_change_chain_slowly_is_left_after_the_stall_limit() {
    let (mut world, _) = chained_world();
    // Links at heights 2..=6, `api` at each and `db` at 6.
    let mut links: Vec<ChangeLink> = Vec::new();
    let mut prev: Option<NamespaceLink> = None;
    for h in 2..=6u64 {
        let services: Vec<String> = if h == 6 {
            vec!["api".into(), "db".into()]
        } else {
            vec!["api".into()]
        };
        let link = NamespaceLink::next(prev.as_ref(), "prod", h, &services);
        links.push(ChangeLink {
            link: Hex::new(&link),
            services,
        });
        prev = Some(link);
    }
    links.reverse();
    world.state.put(vec![(
        StateKey::NamespaceLog {
            namespace: "prod".into(),
        },
        Some(encode(prev.as_ref().unwrap())),
    )]);
    let start = |delay: Duration| {
        let synced6 = ns_synced(&world, 6, None);
        let (api6, db6) = (
            world.answer("prod", "api", 6),
            world.answer("prod", "db", 6),
        );
        let links = links.clone();
        MockNode::start(move |req| {
            if req.path.starts_with("/v1/epochs") {
                Reply::error(404, "not_found")
            } else if req.path.starts_with("/v1/services/prod/api") {
                Reply::ok(&api6)
            } else if req.path.starts_with("/v1/services/prod/db") {
                Reply::ok(&db6)
            } else if let Some(rest) = req.path.strip_prefix("/v1/namespaces/prod/changes?height=")
            {
                // One link per page, from the height asked for, after `delay`.
                let height: u64 = rest.split('&').next().unwrap().parse().unwrap();
                std::thread::sleep(delay);
                let page: Vec<ChangeLink> = links
                    .iter()
                    .filter(|l| l.link.decode().unwrap().height <= height)
                    .take(if delay.is_zero() { links.len() } else { 1 })
                    .cloned()
                    .collect();
                Reply::ok(&ChangesResponse { links: page })
            } else if req.path.starts_with("/v1/watch") {
                Reply::Sse(vec![synced6.clone()])
            } else {
                Reply::error(404, "not_found")
            }
        })
    };
    let (slow, fast) = (start(Duration::from_millis(400)), start(Duration::ZERO));
    let c = client(
        &world.chain,
        &[slow.url.clone(), fast.url.clone()],
        config(),
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let items: Vec<_> = c
            .watch("prod", None, Some(2))
            .stall_after(Duration::from_millis(600))
            .take(3)
            .collect();
        let _ = tx.send(items);
    });
    let items = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("three items within 30 s");
    assert!(
        matches!(&items[0], Err(ClientError::Timeout { .. })),
        "{:?}",
        items[0]
    );
    let got: Vec<String> = items[1..]
        .iter()
        .map(|u| u.as_ref().unwrap().service.clone())
        .collect();
    assert_eq!(got, ["api", "db"]);
}

/// Wave-3 review H6: a change chain naming more services than one `synced`
/// may (here the cap is set to 1; the default is 65,536) is an honest chain
/// after a long gap, not a forgery: the watch re-lists the namespace and
/// delivers the proven state of every listed service.
#[test]
fn a_synced_naming_more_changes_than_the_cap_relists_the_namespace() {
    let (world, link) = chained_world();
    let node = silent_node(&world, &link, 6);
    let c = client(&world.chain, &[node.url.clone()], config());
    let items = namespace_items(c, Some(5), 1, 2).expect("two items within 30 s");
    let got = services_at(&items);
    assert_eq!(got, [("api".to_string(), 6), ("db".to_string(), 6)]);
    assert!(
        node.paths()
            .iter()
            .any(|p| p == "GET /v1/namespaces/prod" || p.ends_with("/v1/namespaces/prod")),
        "{:?}",
        node.paths()
    );
}
