//! Lookups over real HTTP: failover, retry, k-node reads, equivocation,
//! epoch following, stale answers and the offline cache.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use palisade_client::{Cache, Client, ClientConfig, ClientError, LookupAnswer};
use palisade_crypto::api::{EpochsResponse, LookupResponse};
use palisade_crypto::{BlockInfo, Hex};

use crate::support::fixture::{
    block, lookup_response, now_ms, service_key, tamper, Chain, World, CHAIN,
};
use crate::support::server::{dead_url, MockNode, Reply};

pub(crate) fn config() -> ClientConfig {
    ClientConfig {
        retries: 1,
        retry_backoff: Duration::from_millis(10),
        poll_interval: Duration::from_millis(10),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    }
}

pub(crate) fn client(chain: &Chain, urls: &[String], config: ClientConfig) -> Client {
    Client::new(chain.network(urls), config).unwrap()
}

/// A node answering every lookup with `response`.
pub(crate) fn lookup_node(response: LookupResponse) -> MockNode {
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
    let flaky = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            return Reply::ok(&EpochsResponse {
                changes: vec![],
                epochs: vec![],
            });
        }
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
        world.state.instance_bytes("prod", "api"),
    );
    let mut end: BlockInfo = block(8, world.state.root, now_ms());
    end.next_validators = Some(epoch1.set.clone());
    let changes = EpochsResponse {
        changes: vec![Hex::new(&world.chain.quorum(end))],
        epochs: Vec::new(),
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
    // It asked which changes follow epoch 1 (this node answers nothing
    // usable, and the cached epochs stand).
    assert!(answer_only.epoch_checks() >= 1);
}

/// Issue-13 review: a client that trusts only genesis and never followed
/// the epoch change must not accept retired epoch-0 keys for a later
/// height. A lying node serves a well-signed epoch-0 answer at height 20
/// (epoch 0 ended at height 8) and claims no epoch change; before accepting,
/// the client asks f+1 = 2 nodes which changes follow epoch 0, learns the
/// end from the honest one, refuses the retired certificate and takes the
/// honest node's epoch-1 answer.
#[test]
fn retired_epoch_keys_are_refused_by_a_client_that_never_followed() {
    let world = World::new();
    let epoch1 = Chain::new(CHAIN, 1, 4, 50);
    let (value, proof) = world.state.prove(&service_key("prod", "api"));
    let answer = |chain: &Chain, height: u64| {
        lookup_response(
            chain.quorum(block(height, world.state.root, now_ms())),
            "prod",
            "api",
            value.clone(),
            proof.clone(),
            world.state.instance_bytes("prod", "api"),
        )
    };
    let retired = answer(&world.chain, 20);
    let retired_copy = retired.clone();
    let honest_answer = answer(&epoch1, 21);
    let mut end: BlockInfo = block(8, world.state.root, now_ms());
    end.next_validators = Some(epoch1.set.clone());
    let changes = EpochsResponse {
        changes: vec![Hex::new(&world.chain.quorum(end))],
        epochs: vec![],
    };
    let liar = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            Reply::ok(&EpochsResponse {
                changes: vec![],
                epochs: vec![],
            })
        } else {
            Reply::ok(&retired)
        }
    });
    let honest = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs?from=0") {
            Reply::ok(&changes)
        } else if req.path.starts_with("/v1/epochs") {
            Reply::ok(&EpochsResponse {
                changes: vec![],
                epochs: vec![],
            })
        } else {
            Reply::ok(&honest_answer)
        }
    });
    let urls = [liar.url.clone(), honest.url.clone(), dead_url(), dead_url()];
    let c = client(&world.chain, &urls, config());
    assert_eq!(c.trusted().latest_epoch(), 0);
    let v = c.lookup("prod", "api").unwrap();
    assert_eq!((v.service().height, v.service().epoch), (21, 1));
    assert_eq!(c.trusted().latest_epoch(), 1);
    assert!(honest.epoch_checks() >= 1);
    // The liar's answer was refused as retired, not merely out-raced.
    assert!(matches!(
        palisade_client::verify_lookup(&c.trusted(), "prod", "api", &retired_copy, now_ms(), None),
        Err(ClientError::RetiredEpoch {
            epoch: 0,
            height: 20,
            ended_at: 8
        })
    ));
    assert!(liar
        .paths()
        .iter()
        .any(|p| p.starts_with("GET /v1/services")));
}

/// Issue-13 review: the liar (asked first) shows an end of epoch 0 forged
/// with the retired keys, naming a set it controls, and answers under that
/// set. The client asks f+1 nodes from the same epoch; the honest node's
/// real end conflicts with the forged one, and the client refuses rather
/// than believe either.
#[test]
fn a_forged_end_of_a_retired_epoch_is_caught_by_the_epoch_check() {
    let world = World::new();
    let real = Chain::new(CHAIN, 1, 4, 50);
    let forged = Chain::new(CHAIN, 1, 4, 90);
    let (value, proof) = world.state.prove(&service_key("prod", "api"));
    let forged_answer = lookup_response(
        forged.quorum(block(20, world.state.root, now_ms())),
        "prod",
        "api",
        value,
        proof,
        world.state.instance_bytes("prod", "api"),
    );
    let end_to = |set: &palisade_crypto::ValidatorSet| {
        let mut end: BlockInfo = block(8, world.state.root, now_ms());
        end.next_validators = Some(set.clone());
        EpochsResponse {
            changes: vec![Hex::new(&world.chain.quorum(end))],
            epochs: vec![],
        }
    };
    let (fake_end, real_end) = (end_to(&forged.set), end_to(&real.set));
    let liar = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            Reply::ok(&fake_end)
        } else {
            Reply::ok(&forged_answer)
        }
    });
    let honest = MockNode::start(move |req| {
        if req.path.starts_with("/v1/epochs") {
            Reply::ok(&real_end)
        } else {
            Reply::error(503, "overloaded")
        }
    });
    let urls = [liar.url.clone(), honest.url.clone(), dead_url(), dead_url()];
    let cache = tempfile::tempdir().unwrap();
    let c = client(
        &world.chain,
        &urls,
        ClientConfig {
            retries: 0,
            cache_dir: Some(cache.path().to_path_buf()),
            ..config()
        },
    );
    let got = c.lookup("prod", "api");
    assert!(
        got.is_err(),
        "the forged set's answer was believed: {got:?}"
    );
    // The trust chain saw both ends and now refuses everything.
    let any = world.answer("prod", "api", 5);
    assert_eq!(
        palisade_client::verify_lookup(&c.trusted(), "prod", "api", &any, now_ms(), None),
        Err(ClientError::ConflictingEpochChange { epoch: 0 })
    );
    // Both ends were written as evidence that network.json alone checks.
    let bytes = std::fs::read(cache.path().join("epoch-fork-0.evidence")).unwrap();
    let evidence: palisade_crypto::dc::EquivocationEvidence =
        palisade_crypto::decode(&bytes).unwrap();
    assert_eq!(
        palisade_client::verify_evidence(&world.chain.network(&urls), &evidence),
        Ok(palisade_client::Equivocation::TwoEpochEnds {
            epoch: 0,
            heights: (8, 8)
        })
    );
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

#[test]
fn a_stale_answer_older_than_the_bound_is_refused() {
    let world = World::new();
    let two_hours_ago = now_ms() - 7_200_000;
    let a = lookup_node(world.answer_at("prod", "api", 5, two_hours_ago, &[0, 1, 2]));
    let c = client(&world.chain, &[a.url.clone()], config());
    assert!(matches!(
        c.lookup("prod", "api"),
        Err(ClientError::Stale {
            max_age_ms: 3_600_000,
            ..
        })
    ));
    // Allowed explicitly, it is served, marked stale.
    let patient = client(
        &world.chain,
        &[a.url.clone()],
        ClientConfig {
            max_stale_age: Duration::from_secs(3 * 3600),
            ..config()
        },
    );
    assert!(patient.lookup("prod", "api").unwrap().is_stale());
}

#[test]
fn one_node_sending_garbage_does_not_turn_a_quorum_loss_into_a_failure() {
    let world = World::new();
    let old = now_ms() - 600_000;
    let garbage = MockNode::start(|_| Reply::Json(200, "{}".into()));
    let forged = lookup_node(tamper(&world.answer("prod", "api", 9), |r| {
        r.instances.clear()
    }));
    let halted = lookup_node(world.answer_at("prod", "api", 6, old, &[0, 1, 2]));
    for liar in [&garbage, &forged] {
        let c = client(
            &world.chain,
            &[liar.url.clone(), halted.url.clone()],
            config(),
        );
        match c.lookup("prod", "api") {
            Ok(LookupAnswer::Stale { service, cause, .. }) => {
                assert_eq!(service.height, 6);
                assert!(matches!(cause, ClientError::Stale { .. }), "{cause:?}");
            }
            other => panic!("expected the halted chain's answer, stale: {other:?}"),
        }
    }
    // And a liar next to unreachable nodes does not hide the outage either.
    let dir = tempfile::tempdir().unwrap();
    let cached = ClientConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..config()
    };
    let node = lookup_node(world.answer("prod", "api", 5));
    client(&world.chain, &[node.url.clone()], cached.clone())
        .lookup("prod", "api")
        .unwrap();
    let offline = client(&world.chain, &[garbage.url.clone(), dead_url()], cached);
    assert!(offline.lookup("prod", "api").unwrap().is_stale());
}

#[test]
fn the_cache_keeps_the_newest_verified_answer() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let cached = ClientConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..config()
    };
    let ahead = lookup_node(world.answer("prod", "api", 8));
    client(&world.chain, &[ahead.url.clone()], cached.clone())
        .lookup("prod", "api")
        .unwrap();
    // A node behind answers fresh but older: served, not cached over 8.
    let behind = lookup_node(world.answer("prod", "api", 6));
    let c = client(&world.chain, &[behind.url.clone()], cached.clone());
    assert_eq!(c.lookup("prod", "api").unwrap().service().height, 6);
    let (kept, _) = c.cached("prod", "api").unwrap().unwrap();
    assert_eq!(kept.height, 8);
}

/// Issue-13 review: an epoch check that too few nodes answer (here none:
/// they answer `/v1/epochs` with garbage) is retried after a back-off, not
/// at every verification, where it cost n requests per lookup.
#[test]
fn a_failed_epoch_check_backs_off_instead_of_asking_every_node_at_every_lookup() {
    let world = World::new();
    let nodes: Vec<MockNode> = (0..4)
        .map(|_| lookup_node(world.answer("prod", "api", 5)))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let c = client(&world.chain, &urls, config());
    for _ in 0..5 {
        c.lookup("prod", "api").unwrap();
    }
    let checks: usize = nodes.iter().map(|n| n.epoch_checks()).sum();
    assert_eq!(checks, 4, "one round of epoch checks, then the back-off");
}
