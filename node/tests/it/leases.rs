//! Attested leases on a real 4-node cluster: an owner's off-consensus
//! heartbeats to every node keep its instance, one validator down; an
//! instance whose owner falls silent leaves within TTL + a few report
//! rounds, on the reports of the three validators left (a quorum).

use std::time::{Duration, Instant};

use palisade_consensus::state::LeaseMode;
use palisade_crypto::api::{HeartbeatRequest, HeartbeatResponse, LookupResponse};
use palisade_crypto::{
    Enrollment, Hex, LeaseHeartbeat, Role, SecretKey, SignedTransaction, TxBody,
};

use palisade_client::{Client, ClientConfig, Signer};
use palisade_crypto::{NetworkFile, NodeEndpoint};

use super::cluster::Cluster;
use super::http::{get_json, request};
use super::state_store::register;

fn with_ttl(mut tx: SignedTransaction, key: &SecretKey, ttl: u32) -> SignedTransaction {
    if let TxBody::Register(r) = &mut tx.tx.body {
        r.ttl_secs = ttl;
    }
    tx.tx.sign(key)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn instances(c: &Cluster, node: usize) -> Vec<String> {
    let r: LookupResponse = get_json(c.api(node), "/v1/services/prod/web", 200).await;
    r.record
        .map(|s| s.instances.into_iter().map(|i| i.instance).collect())
        .unwrap_or_default()
}

async fn heartbeat(c: &Cluster, node: usize, key: &SecretKey, at: u64) -> HeartbeatResponse {
    let hb = LeaseHeartbeat {
        chain_id: "test-chain".into(),
        identity: key.public(),
        sent_at_ms: at,
    }
    .sign(key);
    let body = serde_json::to_vec(&HeartbeatRequest {
        heartbeats: vec![Hex::new(&hb)],
    })
    .unwrap();
    let (status, body) = request(c.api(node), "POST", "/v1/heartbeat", Some(&body)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_off_consensus_keep_the_live_and_a_quorum_of_reports_expires_the_silent() {
    let silent = SecretKey::from_seed([77; 32]);
    let silent_pub = silent.public();
    let mut c = Cluster::start_custom(
        4,
        move |g| {
            g.params.lease_mode = LeaseMode::Attested;
            g.enrollments.push(Enrollment {
                identity: silent_pub,
                namespaces: vec!["prod".into()],
                role: Role::Service,
            });
        },
        |_| {},
    )
    .await;
    let live = c.service.clone();
    let (_, r) = c
        .submit(
            0,
            &with_ttl(
                register(&c.genesis.hash(), &live, 0, "web", "live"),
                &live,
                3,
            ),
            true,
        )
        .await;
    assert!(r.receipt.is_some(), "live registered");
    let (_, r) = c
        .submit(
            0,
            &with_ttl(
                register(&c.genesis.hash(), &silent, 0, "web", "dead"),
                &silent,
                3,
            ),
            true,
        )
        .await;
    assert!(r.receipt.is_some(), "dead registered");
    // One validator down (f = 1): the three others hold a quorum.
    c.stop(3).await;
    let started = Instant::now();
    let mut gone_after = None;
    let mut last = 0u64;
    while started.elapsed() < Duration::from_secs(45) {
        last = now_ms().max(last + 1);
        for node in 0..3 {
            let r = heartbeat(&c, node, &live, last).await;
            // Refused only as "too soon" when two rounds fall within the
            // gap, or as "unknown_owner" before the node's next scan of
            // committed state (every 2 s) has seen the registration (which
            // counts as a renewal itself).
            let early = started.elapsed() < Duration::from_secs(3);
            assert!(
                r.accepted == 1
                    || r.refused
                        .iter()
                        .all(|f| f.code == "too_soon" || (early && f.code == "unknown_owner")),
                "{r:?}"
            );
        }
        let now = instances(&c, 0).await;
        assert!(
            now.contains(&"live".to_string()),
            "a heartbeating instance expired after {:?}",
            started.elapsed()
        );
        if !now.contains(&"dead".to_string()) {
            gone_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    let gone_after = gone_after.expect("the silent instance expired within 45 s");
    // TTL 3 s after registration, then report rounds (2 s) and the stagger.
    assert!(gone_after >= Duration::from_secs(2), "{gone_after:?}");
    // The live one stays a while longer.
    for _ in 0..6 {
        last = now_ms().max(last + 1);
        for node in 0..3 {
            heartbeat(&c, node, &live, last).await;
        }
        assert!(instances(&c, 1).await.contains(&"live".to_string()));
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    // The SDK sends one heartbeat to every node of the network file (the
    // three running), and each takes it.
    let network = NetworkFile {
        chain_id: c.genesis.chain_id.clone(),
        datacenter: "dc1".into(),
        genesis_hash: c.genesis.hash(),
        validators: c.validators(),
        nodes: (0..3)
            .map(|i| NodeEndpoint {
                name: format!("node{i}"),
                public_key: c.keys[i].public(),
                api_url: format!("http://{}", c.api(i)),
                p2p_addr: c.configs[i].listen_p2p.clone(),
            })
            .collect(),
    };
    let client = Client::new(network, ClientConfig::default()).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hb = Signer::new(live.clone()).lease_heartbeat("test-chain", now_ms().max(last + 1));
    let answers = tokio::task::spawn_blocking(move || client.send_heartbeats(&[hb]))
        .await
        .unwrap();
    assert_eq!(answers.len(), 3);
    for (url, answer) in &answers {
        assert!(
            matches!(answer, Ok(r) if r.accepted == 1),
            "{url}: {answer:?}"
        );
    }
    // A heartbeat of a key that owns nothing is refused, and a replay too.
    let stranger = SecretKey::from_seed([78; 32]);
    let r = heartbeat(&c, 0, &stranger, now_ms()).await;
    assert_eq!(r.refused[0].code, "unknown_owner");
    let r = heartbeat(&c, 0, &live, last).await;
    assert_eq!(r.refused[0].code, "stale");
    c.shutdown().await;
}
