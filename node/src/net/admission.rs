//! Admission of inbound p2p connections before their handshake ends:
//! at most [`MAX_PENDING_PER_IP`] handshakes from one source address and
//! [`MAX_PENDING_INBOUND`] in all (wave-3 review N4 and review-3 N4-1).
//!
//! libp2p keeps a connection whose handshake never ends until its upgrade
//! timeout (10 s). A bound on all of them alone lets one outsider that keeps
//! the bound filled refuse every validator's dial of this node; per source
//! address, an outsider takes only its own slots and validators' dials from
//! their own addresses still get in. (An outsider with as many addresses as
//! the global bound allows can still fill it: documented residual.)

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionEstablished, ListenFailure};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Inbound handshakes in progress from one source address.
pub(crate) const MAX_PENDING_PER_IP: usize = 8;

/// Inbound handshakes in progress in all.
pub(crate) const MAX_PENDING_INBOUND: usize = 512;

/// Why a connection was refused (logged by the swarm).
#[derive(Debug)]
struct Refused(&'static str, Option<IpAddr>);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(ip) => write!(f, "{} (from {ip})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for Refused {}

/// The source address of a connection, when it has one.
fn source_ip(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Counts inbound handshakes by source address; see the module's note.
#[derive(Default)]
pub(crate) struct PendingInbound {
    by_connection: HashMap<ConnectionId, Option<IpAddr>>,
    by_ip: HashMap<Option<IpAddr>, usize>,
}

impl PendingInbound {
    fn release(&mut self, id: &ConnectionId) {
        if let Some(ip) = self.by_connection.remove(id) {
            if let Some(n) = self.by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.by_ip.remove(&ip);
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.by_connection.len()
    }
}

impl NetworkBehaviour for PendingInbound {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let ip = source_ip(remote);
        if self.by_connection.len() >= MAX_PENDING_INBOUND {
            return Err(ConnectionDenied::new(Refused(
                "too many inbound handshakes",
                ip,
            )));
        }
        let from_ip = self.by_ip.entry(ip).or_default();
        if *from_ip >= MAX_PENDING_PER_IP {
            return Err(ConnectionDenied::new(Refused(
                "too many inbound handshakes from one address",
                ip,
            )));
        }
        *from_ip += 1;
        self.by_connection.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.release(&connection_id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.release(&connection_id)
            }
            // Established through another path (never pending here): no-op.
            FromSwarm::ConnectionEstablished(ConnectionEstablished { connection_id, .. }) => {
                self.release(&connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/4000").parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_own_share_and_released_slots_come_back() {
        let mut b = PendingInbound::default();
        let local = addr("127.0.0.1");
        let ids: Vec<ConnectionId> = (0..MAX_PENDING_PER_IP + 1)
            .map(|_| ConnectionId::new_unchecked(rand_id()))
            .collect();
        for id in &ids[..MAX_PENDING_PER_IP] {
            b.handle_pending_inbound_connection(*id, &local, &addr("10.0.0.9"))
                .unwrap();
        }
        assert!(b
            .handle_pending_inbound_connection(ids[MAX_PENDING_PER_IP], &local, &addr("10.0.0.9"))
            .is_err());
        // Another address is admitted while the first is at its share.
        let other = ConnectionId::new_unchecked(rand_id());
        b.handle_pending_inbound_connection(other, &local, &addr("10.0.0.7"))
            .unwrap();
        // A handshake that ends frees its slot.
        b.handle_established_inbound_connection(
            ids[0],
            PeerId::random(),
            &local,
            &addr("10.0.0.9"),
        )
        .unwrap();
        b.handle_pending_inbound_connection(ids[MAX_PENDING_PER_IP], &local, &addr("10.0.0.9"))
            .unwrap();
        assert_eq!(b.pending(), MAX_PENDING_PER_IP + 1);
    }

    fn rand_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1_000_000);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
