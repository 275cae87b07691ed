//! `palisade dns`: a local DNS face whose every answer was verified.
//!
//! Names (one zone, `palisade.`):
//! - `SVC.NS.palisade.` — A (and AAAA): the IP-literal endpoints of the
//!   service's passing instances;
//! - `_SVC._tcp.NS.palisade.` — SRV: one per endpoint of a passing instance
//!   (priority 0, the endpoint's weight and port); the target is the
//!   endpoint's host name, or `INSTANCE.SVC.NS.palisade.` for an IP literal,
//!   whose A/AAAA go in the additional section;
//! - `INSTANCE.SVC.NS.palisade.` — A (and AAAA) of that instance.
//!
//! Rules (the adversary owns any f nodes and the network):
//! - Nothing is answered that [`Client::lookup_fresh`] did not verify
//!   (certificate of a quorum, proof against its root, freshness): a forged
//!   record from a lying node is refused there and never reaches a resolver.
//! - A verified absence of the service (or of the instance in its verified
//!   record) is NXDOMAIN; a verified record without a passing instance for the
//!   asked type is an empty NOERROR; when nothing verifies in time: SERVFAIL.
//!   A stale answer is never served.
//! - Kept fresh by a verified watch per served service (a change reaches DNS
//!   within the stream's latency) and by re-verifying an entry older than
//!   [`DnsConfig::refresh`] on the next query, so a watch that silently
//!   stalls costs at most that long. TTLs are short ([`DnsConfig::ttl`]).
//! - Bounded: the cached services, the watches, the lookups in flight and
//!   the records per answer (a UDP answer that would exceed
//!   [`DnsConfig::max_udp_records`] is cut and marked truncated, so the
//!   resolver asks again over TCP); names outside the zone, other classes
//!   and opcodes are REFUSED (this is no recursive resolver, and no
//!   amplifier: an answer holds only the records the question asked for).
//!
//! DNS names are case-insensitive and a label cannot hold a `.`; Palisade
//! names are lowercase, so every name without a `.` is reachable.

mod answer;
mod handler;
mod name;
mod zone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::Client;

pub use answer::{answer, Outcome};
pub use name::{parse_name, QueryName};

/// How the DNS face serves.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// TTL of every record, in seconds.
    pub ttl: u32,
    /// Oldest certified state served; older is re-verified or SERVFAIL.
    pub max_age: Duration,
    /// A cached answer older than this (by the local clock since it was
    /// verified or updated by the watch) is verified again before use.
    pub refresh: Duration,
    /// Bound on one query's verification (else SERVFAIL).
    pub lookup_timeout: Duration,
    /// Services remembered (and watched); more are verified per query.
    pub max_services: usize,
    /// Verifications in flight; a query beyond it gets SERVFAIL at once.
    pub max_inflight: usize,
    /// Records in one UDP answer (more: truncated, ask over TCP).
    pub max_udp_records: usize,
    /// Records in one TCP answer.
    pub max_tcp_records: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            ttl: 5,
            max_age: Duration::from_secs(30),
            refresh: Duration::from_secs(5),
            lookup_timeout: Duration::from_secs(3),
            max_services: 1024,
            max_inflight: 64,
            max_udp_records: 16,
            max_tcp_records: 256,
            tcp_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the DNS face could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} ({proto}): {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// "udp" or "tcp".
        proto: &'static str,
        /// The OS error.
        reason: String,
    },
    /// The async runtime could not start or the server failed.
    #[error("dns server: {0}")]
    Server(String),
}

/// Serve DNS on `listen` (UDP and TCP, the same port; port 0 picks one),
/// answering from `client`'s verified lookups, until the process ends.
/// `on_ready` is called once with the bound address.
pub fn serve(
    client: Arc<Client>,
    listen: SocketAddr,
    config: DnsConfig,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), DnsError> {
    let bind = |proto: &'static str, e: std::io::Error| DnsError::Bind {
        addr: listen,
        proto,
        reason: e.to_string(),
    };
    let udp = std::net::UdpSocket::bind(listen).map_err(|e| bind("udp", e))?;
    let addr = udp.local_addr().map_err(|e| bind("udp", e))?;
    let tcp = std::net::TcpListener::bind(addr).map_err(|e| bind("tcp", e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(config.max_inflight.max(1))
        .enable_all()
        .build()
        .map_err(|e| DnsError::Server(format!("starting the runtime: {e}")))?;
    let zone = Arc::new(zone::Zone::new(client, config.clone()));
    let result = runtime.block_on(async move {
        let handler = handler::Handler::new(zone.clone(), &config);
        let mut server = hickory_server::ServerFuture::new(handler);
        server
            .register_socket_std(udp)
            .map_err(|e| bind("udp", e))?;
        server
            .register_listener_std(tcp, config.tcp_timeout)
            .map_err(|e| bind("tcp", e))?;
        tracing::info!(%addr, "dns face serving");
        on_ready(addr);
        let done = server.block_until_done().await;
        zone.stop();
        done.map_err(|e| DnsError::Server(e.to_string()))
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
