//! Submissions over real HTTP: sequence numbers, receipts, rejections,
//! time-outs, resubmission, confirmation in verified state, heartbeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_client::{ClientConfig, ClientError, HeartbeatTask, InstanceRef, Signer};
use palisade_crypto::{SecretKey, TxBody};

use crate::network::{client, config};
use crate::support::fixture::{Chain, CHAIN};
use crate::support::server::{MockNode, Reply};
use crate::support::{tx_node, TxBehavior, NEXT_SEQUENCE};

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

/// Issue 13 item 2: a node suggesting `u64::MAX - 1` cannot steer the
/// signer: the client signs with the committed sequence it verified.
#[test]
fn a_node_lying_about_the_account_cannot_steer_the_sequence() {
    let chain = Chain::test();
    let (liar, seen) = tx_node(chain.clone(), TxBehavior::LieAccount);
    let c = client(&chain, &[liar.url.clone()], config());
    let mut s = signer();
    c.execute(&mut s, heartbeat()).unwrap();
    let sequences: Vec<u64> = seen.lock().unwrap().iter().map(|t| t.tx.sequence).collect();
    assert_eq!(sequences, vec![NEXT_SEQUENCE]);
    assert_eq!(c.next_sequence(&s.public()).unwrap(), NEXT_SEQUENCE);
    // A proof of another value than the certified one is refused.
    let forger_chain = chain.clone();
    let forger = MockNode::start(move |req| {
        let key = req.path.trim_start_matches("/v1/accounts/");
        let key = palisade_crypto::PublicKey::from_hex(key).unwrap();
        let mut answer = crate::support::account_answer(&forger_chain, key, 3, 3);
        answer.value = Some(palisade_crypto::Hex::new(&(u64::MAX - 1)));
        Reply::ok(&answer)
    });
    let c = client(&chain, &[forger.url.clone()], config());
    assert!(matches!(
        c.next_sequence(&s.public()),
        Err(ClientError::ForgedProof(_))
    ));
}

/// Review of issue 13 item 2: an account proven against an old certified
/// state (here two hours old, next sequence 0) is refused like an old
/// lookup, so a node cannot have the signer sign a stale sequence that
/// honest nodes then refuse; the client takes an honest node's answer.
#[test]
fn an_account_proven_against_an_old_state_is_refused() {
    let chain = Chain::test();
    let old_chain = chain.clone();
    let stale = MockNode::start(move |req| {
        let key = req.path.trim_start_matches("/v1/accounts/");
        let key = palisade_crypto::PublicKey::from_hex(key).unwrap();
        let two_hours_ago = crate::support::fixture::now_ms() - 2 * 3600 * 1000;
        Reply::ok(&crate::support::account_answer_at(
            &old_chain,
            key,
            0,
            0,
            two_hours_ago,
        ))
    });
    let s = signer();
    let alone = client(&chain, &[stale.url.clone()], config());
    assert!(
        alone.next_sequence(&s.public()).is_err(),
        "an account proven two hours ago was used"
    );
    let (honest, _) = tx_node(chain.clone(), TxBehavior::Commit);
    let both = client(&chain, &[stale.url.clone(), honest.url.clone()], config());
    assert_eq!(both.next_sequence(&s.public()).unwrap(), NEXT_SEQUENCE);
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
            let key = palisade_crypto::PublicKey::from_hex(key).unwrap();
            return Reply::ok(&crate::support::account_answer(&receipts, key, 9, 9));
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
    // A certified rejection consumed its sequence number (issue-13
    // review): the next transaction takes the one after it.
    let sequences: Vec<u64> = seen.lock().unwrap().iter().map(|t| t.tx.sequence).collect();
    assert_eq!(sequences, vec![NEXT_SEQUENCE, NEXT_SEQUENCE + 1]);
    assert_eq!(s.known_next_sequence(), Some(NEXT_SEQUENCE + 2));
}

/// Issue 13 item 8: a node that answers "pending" to everything must not
/// stop the client from handing the transaction to, and asking, the others.
#[test]
fn a_node_answering_pending_forever_does_not_hold_the_write() {
    let chain = Chain::test();
    let (swallower, _) = tx_node(chain.clone(), TxBehavior::AlwaysPending);
    let honest: Vec<_> = (0..3)
        .map(|_| tx_node(chain.clone(), TxBehavior::Commit).0)
        .collect();
    let mut urls = vec![swallower.url.clone()];
    urls.extend(honest.iter().map(|n| n.url.clone()));
    let c = client(&chain, &urls, config());
    let r = c.execute(&mut signer(), heartbeat()).unwrap();
    assert!(r.applied());
    // f + 1 = 2 of the 4 nodes got the transaction.
    assert!(swallower.paths().iter().any(|p| p == "POST /v1/tx"));
    let handed: usize = honest
        .iter()
        .map(|n| n.paths().iter().filter(|p| *p == "POST /v1/tx").count())
        .sum();
    assert!(handed >= 1, "no honest node was given the transaction");
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

/// Issue 13 item 7: a node forging "rejected" for an applied transaction
/// (which would stop `heartbeat --every`) or "applied" for a rejected one
/// is caught; an honest node's verified outcome is used instead.
#[test]
fn a_node_forging_outcomes_is_caught_and_an_honest_node_used() {
    let chain = Chain::test();
    let (liar, _) = tx_node(chain.clone(), TxBehavior::FlipOutcome);
    let (good, _) = tx_node(chain.clone(), TxBehavior::Commit);
    let only_liar = client(&chain, &[liar.url.clone()], config());
    assert!(matches!(
        only_liar.execute(&mut signer(), heartbeat()),
        Err(ClientError::ForgedReceipt(_))
    ));
    let both = client(&chain, &[liar.url.clone(), good.url.clone()], config());
    let r = both.execute(&mut signer(), heartbeat()).unwrap();
    assert!(r.applied());
}

/// Issue 13 (smaller): the registration's confirmation compares what the
/// certified state holds with everything asked for, version included.
#[test]
fn registration_with_another_version_in_the_state_is_unconfirmed() {
    let chain = Chain::test();
    let (node, _) = tx_node(chain.clone(), TxBehavior::OtherVersion);
    let c = client(&chain, &[node.url.clone()], config());
    assert!(matches!(
        c.register(&mut signer(), api_registration("api-1")),
        Err(ClientError::Unconfirmed { .. })
    ));
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
