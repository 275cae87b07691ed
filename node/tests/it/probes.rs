//! Health probes end to end: a validator probes an instance that asked for
//! it, reports it failing in a signed HealthReport, and the committed record
//! turns Failing (one validator here, so f + 1 = 1 report suffices).

use std::time::Duration;

use palisade_crypto::api::{LookupResponse, TxStatus};
use palisade_crypto::{Health, ProbeKind, ProbeSpec, TxBody};

use super::cluster::Cluster;
use super::http::get_json;
use super::state_store::register;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_probe_is_reported_and_turns_the_instance_unhealthy() {
    let c = Cluster::start_with(1, |cfg| {
        cfg.probes.enabled = true;
        cfg.probes.interval_secs = 1;
    })
    .await;
    c.wait_height(0, 1).await;
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut tx = register(&c.genesis.hash(), &c.service, 0, "db", "d1").tx;
    if let TxBody::Register(r) = &mut tx.body {
        r.endpoints[0].host = "127.0.0.1".into();
        r.endpoints[0].port = port;
        r.probe = Some(ProbeSpec {
            kind: ProbeKind::Tcp,
            interval_secs: 1,
        });
    }
    let (_, resp) = c.submit(0, &tx.sign(&c.service), true).await;
    assert_eq!(resp.status, TxStatus::Committed, "{resp:?}");
    for _ in 0..600 {
        let lookup: LookupResponse = get_json(c.api(0), "/v1/services/prod/db", 200).await;
        let ledger = lookup
            .certificate
            .decode()
            .unwrap()
            .verify(&c.validators(), &c.genesis.chain_id)
            .unwrap();
        let record = lookup
            .proof()
            .unwrap()
            .verify(&ledger)
            .unwrap()
            .record
            .unwrap();
        if record.instances[0].health == Health::Failing {
            c.shutdown().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the instance did not turn Failing within 60 s");
}
