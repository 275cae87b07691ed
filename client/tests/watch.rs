//! Watch over real HTTP: resumption, duplicates, forged updates, rollbacks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use palisade_client::ClientError;
use palisade_crypto::api::{LookupResponse, WatchUpdate};

use crate::network::{client, config};
use crate::support::fixture::{tamper, World};
use crate::support::server::{sse_event, MockNode, Reply};

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
