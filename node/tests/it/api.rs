//! API behaviour on a one-validator chain: every refusal is a typed
//! `ApiError`, watch streams updates that verify, metrics count what happened.

use std::time::Duration;

use palisade_crypto::api::{ApiError, SubmitRequest, TxStatus, WatchUpdate};
use palisade_crypto::{Hex, SecretKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::cluster::Cluster;
use super::http::request;
use super::state_store::register;

async fn refused(c: &Cluster, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let (status, body) = request(c.api(0), method, path, body).await;
    let err: ApiError = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: body is not an ApiError ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, err.code)
}

/// Method, path, body, expected status and code.
type Case = (
    &'static str,
    &'static str,
    Option<Vec<u8>>,
    u16,
    &'static str,
);

fn submit_body(tx: &palisade_crypto::SignedTransaction) -> Vec<u8> {
    serde_json::to_vec(&SubmitRequest {
        tx: Hex::new(tx),
        wait: false,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_and_the_node_keeps_serving() {
    let c = Cluster::start(1).await;
    c.wait_height(0, 1).await;
    let post = |body: Vec<u8>| async move { body };
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/tx",
            Some(b"{not json".to_vec()),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/tx",
            Some(vec![b' '; 300 * 1024]),
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/v1/tx",
            Some(br#"{"tx":"zz"}"#.to_vec()),
            400,
            "malformed_json",
        ),
        (
            "POST",
            "/v1/tx",
            Some(br#"{"tx":"00ff"}"#.to_vec()),
            400,
            "malformed_tx",
        ),
        ("GET", "/v1/tx/nothex", None, 400, "bad_tx_id"),
        ("GET", "/v1/tx/00", None, 400, "bad_tx_id"),
        (
            "GET",
            "/v1/services/prod/bad%20name",
            None,
            400,
            "invalid_name",
        ),
        ("GET", "/v1/blocks/abc", None, 400, "bad_height"),
        ("GET", "/v1/blocks/99999999", None, 404, "unknown_block"),
        ("GET", "/v1/accounts/xyz", None, 400, "bad_key"),
        ("GET", "/v1/watch?service=x", None, 400, "bad_query"),
        ("GET", "/nowhere", None, 404, "no_route"),
    ];
    for (method, path, body, status, code) in cases {
        let body = match body {
            Some(b) => Some(post(b).await),
            None => None,
        };
        assert_eq!(
            refused(&c, method, path, body.as_deref()).await,
            (status, code.to_string()),
            "{method} {path}"
        );
    }
    let unknown = format!("/v1/tx/{}", "ab".repeat(32));
    assert_eq!(
        refused(&c, "GET", &unknown, None).await,
        (404, "unknown_tx".into())
    );
    // A forged signature, another chain, a replayed sequence.
    let mut forged = register(&c.genesis.hash(), &c.service, 0, "api", "x");
    forged.tx.sequence = 5;
    assert_eq!(
        refused(&c, "POST", "/v1/tx", Some(&submit_body(&forged))).await,
        (400, "bad_signature".into())
    );
    let mut foreign = register(&c.genesis.hash(), &c.service, 0, "api", "x").tx;
    foreign.chain_id = "elsewhere".into();
    let foreign = foreign.sign(&c.service);
    assert_eq!(
        refused(&c, "POST", "/v1/tx", Some(&submit_body(&foreign))).await,
        (400, "wrong_chain".into())
    );
    let (_, ok) = c
        .submit(
            0,
            &register(&c.genesis.hash(), &c.service, 0, "api", "x"),
            true,
        )
        .await;
    assert_eq!(ok.status, TxStatus::Committed);
    let replay = register(&c.genesis.hash(), &c.service, 0, "api", "y");
    let (status, code) = refused(&c, "POST", "/v1/tx", Some(&submit_body(&replay))).await;
    assert_eq!((status, code.as_str()), (400, "stale_sequence"));
    // A signer the registry does not know, or a namespace the signer is not
    // enrolled in, is refused before it can take a block slot.
    let stranger = SecretKey::from_seed([77; 32]);
    let body = submit_body(&register(&c.genesis.hash(), &stranger, 0, "api", "z"));
    assert_eq!(
        refused(&c, "POST", "/v1/tx", Some(&body)).await,
        (403, "not_enrolled".into())
    );
    let mut elsewhere = register(&c.genesis.hash(), &c.service, 1, "api", "z").tx;
    if let palisade_crypto::TxBody::Register(r) = &mut elsewhere.body {
        r.namespace = "staging".into();
    }
    let body = submit_body(&elsewhere.sign(&c.service));
    assert_eq!(
        refused(&c, "POST", "/v1/tx", Some(&body)).await,
        (403, "unknown_namespace".into())
    );
    // The service identity signs `body` at sequence 1.
    let signed = |body| {
        palisade_crypto::Transaction {
            chain_id: c.genesis.chain_id.clone(),
            genesis_hash: c.genesis.hash(),
            signer: c.service.public(),
            sequence: 1,
            body,
        }
        .sign(&c.service)
    };
    // Health reports come from validators only.
    let report = signed(palisade_crypto::TxBody::HealthReport {
        namespace: "prod".into(),
        service: "api".into(),
        instance: "x".into(),
        passing: false,
    });
    let body = submit_body(&report);
    assert_eq!(
        refused(&c, "POST", "/v1/tx", Some(&body)).await,
        (403, "not_a_validator".into())
    );
    // A transaction the state machine refuses in the block gets a receipt
    // with the reason: deregistering an instance that does not exist.
    let missing = signed(palisade_crypto::TxBody::Deregister {
        namespace: "prod".into(),
        service: "api".into(),
        instance: "nope".into(),
    });
    let (_, resp) = c.submit(0, &missing, true).await;
    assert_eq!(resp.status, TxStatus::Rejected, "{resp:?}");
    assert!(resp.receipt.unwrap().outcome.starts_with("rejected"));
    // The node still serves, and counted what happened.
    let (status, metrics) = request(c.api(0), "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    for needle in [
        "palisade_commits_total",
        "palisade_txs_rejected_total{reason=\"bad_signature\"} 1",
        "palisade_txs_rejected_total{reason=\"stale_sequence\"} 1",
        "palisade_txs_admitted_total 2",
        "palisade_api_request_seconds_bucket",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
    // Fault injection is on in these configs: partition and heal answer.
    let key = c.keys[0].public().to_hex();
    let body = format!(r#"{{"blocked":["{key}"]}}"#);
    assert_eq!(
        request(c.api(0), "POST", "/admin/partition", Some(body.as_bytes()))
            .await
            .0,
        200
    );
    assert_eq!(
        request(c.api(0), "POST", "/admin/heal", Some(b"{}"))
            .await
            .0,
        200
    );
    c.shutdown().await;
}

/// Read a server-sent-event stream until an `update` event arrives.
async fn first_update(addr: std::net::SocketAddr, path: &str) -> WatchUpdate {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream ended before an update");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(at) = text.find("event: update\ndata: ") {
                let rest = &text[at + "event: update\ndata: ".len()..];
                if let Some(end) = rest.find('\n') {
                    return serde_json::from_str::<WatchUpdate>(&rest[..end]).unwrap();
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("update within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_verified_updates_and_resumes_from_a_height() {
    let c = Cluster::start(1).await;
    c.wait_height(0, 1).await;
    let addr = c.api(0);
    let live =
        tokio::spawn(
            async move { first_update(addr, "/v1/watch?namespace=prod&service=api").await },
        );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, resp) = c
        .submit(
            0,
            &register(&c.genesis.hash(), &c.service, 0, "api", "w1"),
            true,
        )
        .await;
    let update = live.await.unwrap();
    assert_eq!(
        (update.namespace.as_str(), update.service.as_str()),
        ("prod", "api")
    );
    let ledger = update
        .lookup
        .certificate
        .decode()
        .unwrap()
        .verify(&c.validators(), &c.genesis.chain_id)
        .unwrap();
    let record = update
        .lookup
        .proof()
        .unwrap()
        .verify(&ledger)
        .unwrap()
        .record
        .unwrap();
    assert_eq!(record.instances[0].instance, "w1");
    assert!(update.lookup.height >= resp.receipt.unwrap().height);
    // Resuming from height 1 replays the change from storage.
    let replayed = first_update(addr, "/v1/watch?namespace=prod&from_height=1").await;
    assert_eq!(replayed.service, "api");
    // A watcher that stays connected does not hold the node up when it stops.
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"GET /v1/watch?namespace=prod HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(Duration::from_secs(20), c.shutdown())
        .await
        .expect("the node stops with a watch stream open");
    drop(open);
}

/// Issue 13 item 6: an outsider's transaction of every kind is refused at
/// admission with 403 and the state machine's reason, and never committed
/// (so throwaway keys cannot fill mempools or blocks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_are_refused_for_every_kind_and_never_committed() {
    use palisade_crypto::{Enrollment, Role, Transaction, TxBody, Validator};
    let c = Cluster::start(1).await;
    c.wait_height(0, 1).await;
    let outsider = SecretKey::from_seed([78; 32]);
    let by_outsider = |body| {
        Transaction {
            chain_id: c.genesis.chain_id.clone(),
            genesis_hash: c.genesis.hash(),
            signer: outsider.public(),
            sequence: 0,
            body,
        }
        .sign(&outsider)
    };
    let cases = vec![
        (
            by_outsider(TxBody::Enroll(Enrollment {
                identity: outsider.public(),
                namespaces: vec!["prod".into()],
                role: Role::Admin,
            })),
            "not_authority",
        ),
        (
            by_outsider(TxBody::Revoke {
                identity: c.service.public(),
            }),
            "not_authority",
        ),
        (
            by_outsider(TxBody::ChangeValidators {
                validators: vec![Validator {
                    key: outsider.public(),
                    power: 1,
                }],
            }),
            "not_authority",
        ),
        (
            register(&c.genesis.hash(), &outsider, 0, "api", "o1"),
            "not_enrolled",
        ),
        (
            by_outsider(TxBody::Heartbeat {
                namespace: "prod".into(),
                service: "api".into(),
                instance: "o1".into(),
            }),
            "not_enrolled",
        ),
        (
            by_outsider(TxBody::HealthReport {
                namespace: "prod".into(),
                service: "api".into(),
                instance: "o1".into(),
                passing: false,
            }),
            "not_a_validator",
        ),
        // The enrolled service identity is an outsider to the authority.
        (
            Transaction {
                chain_id: c.genesis.chain_id.clone(),
                genesis_hash: c.genesis.hash(),
                signer: c.service.public(),
                sequence: 0,
                body: TxBody::Revoke {
                    identity: c.service.public(),
                },
            }
            .sign(&c.service),
            "not_authority",
        ),
    ];
    for (tx, want) in &cases {
        let (status, code) = refused(&c, "POST", "/v1/tx", Some(&submit_body(tx))).await;
        assert_eq!(
            (status, code.as_str()),
            (403, *want),
            "{}",
            tx.tx.body.kind()
        );
    }
    // Blocks go on; none of them holds any of these transactions.
    let from = c.status(0).await.height;
    c.wait_height(0, from + 3).await;
    for (tx, _) in &cases {
        let (status, _) = request(c.api(0), "GET", &format!("/v1/tx/{}", tx.id()), None).await;
        assert_eq!(status, 404, "{} reached the chain", tx.tx.body.kind());
    }
    c.shutdown().await;
}
