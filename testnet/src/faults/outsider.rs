//! An outsider: no enrolled identity, no validator key, only network access
//! to the public API. It floods every public endpoint of every node within a
//! bounded loop (count and time), from its own loopback address
//! (127.0.0.2, so that per-client bounds on the nodes see it as a client of
//! its own, apart from the honest load on 127.0.0.1):
//! - malformed, oversized and undecodable submissions;
//! - well-formed transactions signed by throwaway keys that committed state
//!   shows can do nothing (an Enroll claiming authority, a Register into an
//!   enrolled namespace, a Heartbeat of nothing);
//! - reads of random accounts, services, namespaces and absurd heights;
//! - watch streams opened and held.
//!
//! What must hold is checked by the scenario: the honest load commits
//! throughout, the nodes answer afterwards, and no outsider transaction was
//! ever committed (not even as a rejected one with a receipt).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use palisade_crypto::{Digest, Hex, Role, SecretKey, SignedTransaction, Transaction, TxBody};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The outsider's own source address on the loopback network.
pub const OUTSIDER_ADDR: [u8; 4] = [127, 0, 0, 2];

/// What the flood did.
#[derive(Debug, Default, Clone)]
pub struct FloodReport {
    /// Requests sent.
    pub requests: u64,
    /// Answers by HTTP status (0: no answer within the timeout).
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Outsider transactions a node answered 2xx to (admitted).
    pub admitted: Vec<Digest>,
    /// Every outsider transaction sent, admitted or not.
    pub sent: Vec<Digest>,
    /// Watch streams a node accepted (status 200) and the outsider held.
    pub watches_held: u64,
}

/// One HTTP/1.1 request from the outsider's address; returns the status
/// code (0 when there was no answer) and the stream when `hold` (a watch).
fn request(
    node: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    hold: bool,
) -> (u16, Option<TcpStream>) {
    let Ok(stream) = connect_from_outsider(node) else {
        return (0, None);
    };
    let mut stream = stream;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {node}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
        body.len(),
        if hold { "" } else { "connection: close\r\n" }
    );
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
        return (0, None);
    }
    // The status line is all the outsider reads (at most 4 KiB).
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, hold.then_some(stream))
}

fn connect_from_outsider(node: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((OUTSIDER_ADDR, 0)).into())?;
    socket.connect_timeout(&node.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// A transaction a throwaway key signs: nothing committed allows it.
fn throwaway_tx(
    (chain_id, genesis_hash): (&str, &Digest),
    rng: &mut ChaCha8Rng,
    namespace: &str,
) -> SignedTransaction {
    let key = SecretKey::from_seed(rng.gen());
    let body = match rng.gen_range(0..3) {
        0 => palisade_client::enrollment(
            SecretKey::from_seed(rng.gen()).public(),
            vec![namespace.to_string()],
            Role::Service,
        )
        .expect("a valid enrollment body"),
        1 => TxBody::Register(
            palisade_client::registration(
                namespace,
                "svc0",
                &format!("outsider-{}", rng.gen::<u32>()),
                vec![palisade_client::parse_endpoint("127.0.0.1:6666").expect("an endpoint")],
                vec![],
                60,
            )
            .expect("a valid registration body"),
        ),
        _ => TxBody::Heartbeat {
            namespace: namespace.to_string(),
            service: "svc0".into(),
            instance: "outsider".into(),
        },
    };
    Transaction {
        chain_id: chain_id.to_string(),
        genesis_hash: *genesis_hash,
        signer: key.public(),
        sequence: rng.gen_range(0..3),
        body,
    }
    .sign(&key)
}

/// Flood `nodes` (their API socket addresses) for at most `duration` and at
/// most `max_requests` requests, holding at most `max_watches` watch streams.
pub fn flood(
    nodes: &[SocketAddr],
    (chain_id, genesis_hash): (&str, &Digest),
    namespace: &str,
    seed: u64,
    duration: Duration,
    max_requests: u64,
    max_watches: usize,
) -> FloodReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0075_7473_6964_6572);
    let mut report = FloodReport::default();
    let mut held = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && report.requests < max_requests {
        let node = nodes[rng.gen_range(0..nodes.len())];
        let roll = rng.gen_range(0..100);
        let (status, stream) = if roll < 35 {
            let body: Vec<u8> = match rng.gen_range(0..4) {
                0 => b"{not json".to_vec(),
                1 => vec![b'x'; 1 << 20],
                2 => br#"{"tx":"zz","wait":false}"#.to_vec(),
                _ => br#"{"tx":"00ff00ff","wait":false}"#.to_vec(),
            };
            request(node, "POST", "/v1/tx", &body, false)
        } else if roll < 70 {
            let tx = throwaway_tx((chain_id, genesis_hash), &mut rng, namespace);
            let id = tx.id();
            let body = serde_json::to_vec(&palisade_crypto::api::SubmitRequest {
                tx: Hex::new(&tx),
                wait: false,
            })
            .expect("a request encodes");
            let (status, s) = request(node, "POST", "/v1/tx", &body, false);
            report.sent.push(id);
            if (200..300).contains(&status) {
                report.admitted.push(id);
            }
            (status, s)
        } else if roll < 92 || held.len() >= max_watches {
            let key = SecretKey::from_seed(rng.gen()).public().to_hex();
            let path = match rng.gen_range(0..5) {
                0 => format!("/v1/accounts/{key}"),
                1 => format!("/v1/services/{namespace}/nope-{}", rng.gen::<u16>()),
                2 => format!("/v1/namespaces/{namespace}"),
                3 => format!("/v1/blocks/{}", u64::MAX),
                _ => "/v1/tx/zz".to_string(),
            };
            request(node, "GET", &path, &[], false)
        } else {
            let (status, s) = request(
                node,
                "GET",
                &format!("/v1/watch?namespace={namespace}"),
                &[],
                true,
            );
            if status == 200 {
                if let Some(s) = s {
                    held.push(s);
                    report.watches_held += 1;
                }
            }
            (status, None)
        };
        drop(stream);
        report.requests += 1;
        *report.statuses.entry(status).or_default() += 1;
    }
    drop(held);
    report
}
