//! Byzantine node modes for the write path (issue 13): each mode runs in a
//! real node, and a real client rejects the lie or routes around it.

use std::time::Duration;

use palisade_client::{Client, ClientConfig, ClientError, Signer};
use palisade_crypto::api::SubmitResponse;
use palisade_crypto::{NetworkFile, NodeEndpoint, SecretKey, TxBody};
use palisade_node::{ByzantineMode, NodeConfig};

use super::cluster::Cluster;
use super::http::get_json;
use super::state_store::register;

fn network(c: &Cluster) -> NetworkFile {
    NetworkFile {
        chain_id: c.genesis.chain_id.clone(),
        datacenter: "dc1".into(),
        genesis_hash: c.genesis.hash(),
        validators: c.validators(),
        nodes: (0..c.nodes.len())
            .map(|i| NodeEndpoint {
                name: format!("node{i}"),
                public_key: c.keys[i].public(),
                api_url: format!("http://{}", c.api(i)),
                p2p_addr: c.configs[i].listen_p2p.clone(),
            })
            .collect(),
    }
}

fn client(c: &Cluster) -> Client {
    let config = ClientConfig {
        commit_timeout: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
        retries: 0,
        ..ClientConfig::default()
    };
    Client::new(network(c), config).unwrap()
}

/// Mark node 0 (only) with `modes`.
fn node0(modes: &'static [ByzantineMode]) -> impl Fn(&mut NodeConfig) {
    move |cfg: &mut NodeConfig| {
        if cfg.key_file.ends_with("node0.key") {
            cfg.byzantine = modes.to_vec();
        }
    }
}

fn registration(key: &SecretKey, instance: &str) -> TxBody {
    register(&palisade_crypto::Digest::ZERO, key, 0, "api", instance)
        .tx
        .body
}

/// `lie-accounts`: the node suggests `u64::MAX - 1` as the next sequence;
/// the client signs with the proven committed one and the write applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lie_accounts_cannot_steer_a_clients_sequence() {
    let c = Cluster::start_with(1, node0(&[ByzantineMode::LieAccounts])).await;
    c.wait_height(0, 1).await;
    let cl = client(&c);
    let key = c.service.clone();
    let body = registration(&key, "l1");
    let (receipt, next) = tokio::task::spawn_blocking(move || {
        let mut signer = Signer::new(key.clone());
        let receipt = cl.execute(&mut signer, body).unwrap();
        (receipt, cl.next_sequence(&key.public()).unwrap())
    })
    .await
    .unwrap();
    assert!(receipt.applied(), "{}", receipt.outcome);
    // The node's own claim is the lie; the proven account moved by one.
    let path = format!("/v1/accounts/{}", c.service.public().to_hex());
    let claim: palisade_crypto::api::AccountResponse = get_json(c.api(0), &path, 200).await;
    assert_eq!(claim.next_sequence, u64::MAX - 1);
    assert_eq!(next, 1);
    c.shutdown().await;
}

/// `claim-outcomes`: the node flips every receipt's outcome; the client
/// refuses the receipt as forged instead of printing the lie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_outcomes_is_caught_by_the_client() {
    let c = Cluster::start_with(1, node0(&[ByzantineMode::ClaimOutcomes])).await;
    c.wait_height(0, 1).await;
    let cl = client(&c);
    let key = c.service.clone();
    let body = registration(&key, "c1");
    let tx = Signer::new(key.clone()).sign(&c.genesis.chain_id, &c.genesis.hash(), 0, body);
    let id = tx.id();
    let result = tokio::task::spawn_blocking(move || cl.submit_and_wait(&tx))
        .await
        .unwrap();
    assert!(
        matches!(result, Err(ClientError::ForgedReceipt(ref m)) if m.contains("outcome")),
        "{result:?}"
    );
    // The node does claim the opposite of what the certified root binds.
    let answer: SubmitResponse = get_json(c.api(0), &format!("/v1/tx/{id}"), 200).await;
    assert!(answer.receipt.unwrap().outcome.starts_with("rejected"));
    c.shutdown().await;
}

/// `pending-forever`: the node swallows every submission and says pending;
/// the client, asked to prefer it, still gets the write committed through
/// the honest nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_forever_does_not_hold_a_write() {
    let c = Cluster::start_with(4, node0(&[ByzantineMode::PendingForever])).await;
    c.wait_height(1, 1).await;
    let cl = client(&c);
    let key = c.service.clone();
    let body = registration(&key, "p1");
    let tx = Signer::new(key.clone()).sign(&c.genesis.chain_id, &c.genesis.hash(), 0, body);
    let id = tx.id();
    let receipt = tokio::task::spawn_blocking(move || cl.submit_and_wait(&tx))
        .await
        .unwrap()
        .unwrap();
    assert!(receipt.applied(), "{}", receipt.outcome);
    // Node 0 still says pending for a committed transaction.
    let answer: SubmitResponse = get_json(c.api(0), &format!("/v1/tx/{id}"), 200).await;
    assert!(answer.receipt.is_none());
    c.shutdown().await;
}
