//! Watching a service or a namespace through the nodes' SSE streams.
//!
//! Every update is verified like a lookup (certificate against the trusted
//! set, proof against the certified root) before it is handed out; freshness
//! is not applied, since a resumed stream replays past heights. After a
//! disconnect, a stream cut-off or a failed verification the watch reconnects
//! (to the next node) from the last height it delivered, and drops updates it
//! already delivered (same service, same height). An update for a service at
//! a height below the last one delivered is refused as
//! [`ClientError::OutOfOrder`].

use std::collections::HashMap;
use std::io::BufRead;
use std::thread;
use std::time::Duration;

use palisade_crypto::api::{ApiError, WatchUpdate};

use crate::client::now_ms;
use crate::node::encode_component;
use crate::sse::{SseEnd, SseReader};
use crate::verify::verify_lookup;
use crate::{Client, ClientError, VerifiedService};

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A verified stream of changes; iterate it to receive them.
///
/// The iterator never ends on its own: it yields `Err` when a node sent
/// something that does not verify or when a whole round of nodes could not
/// be reached, and keeps trying on the next call.
pub struct Watch<'a> {
    client: &'a Client,
    namespace: String,
    service: Option<String>,
    from_height: Option<u64>,
    delivered: HashMap<String, u64>,
    stream: Option<SseReader<Box<dyn BufRead + Send>>>,
    node: usize,
    failures: u32,
}

impl std::fmt::Debug for Watch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("namespace", &self.namespace)
            .field("service", &self.service)
            .field("from_height", &self.from_height)
            .finish()
    }
}

impl Client {
    /// Watch one service (`Some(service)`) or a whole namespace, from
    /// `from_height` on. With `None` the node starts after its latest
    /// certified height, and a reconnection before the first update does so
    /// again, which may skip changes committed in between: pass the height
    /// after a verified lookup (or [`Client::services`]) to be exact.
    pub fn watch(
        &self,
        namespace: &str,
        service: Option<&str>,
        from_height: Option<u64>,
    ) -> Watch<'_> {
        Watch {
            client: self,
            namespace: namespace.to_string(),
            service: service.map(str::to_string),
            from_height,
            delivered: HashMap::new(),
            stream: None,
            node: 0,
            failures: 0,
        }
    }
}

impl Watch<'_> {
    /// The height the next connection resumes from.
    pub fn resume_height(&self) -> Option<u64> {
        self.from_height
    }

    fn path(&self) -> String {
        let mut path = format!("/v1/watch?namespace={}", encode_component(&self.namespace));
        if let Some(s) = &self.service {
            path.push_str(&format!("&service={}", encode_component(s)));
        }
        if let Some(h) = self.from_height {
            path.push_str(&format!("&from_height={h}"));
        }
        path
    }

    fn connect(&mut self) -> Result<(), ClientError> {
        let nodes = self.client.nodes();
        let node = &nodes[self.node % nodes.len()];
        let lifetime = self.client.config().watch_stream_lifetime;
        let reader = node.stream(&self.path(), lifetime)?;
        tracing::info!(node = node.url(), from_height = ?self.from_height, "watch connected");
        self.stream = Some(SseReader::new(reader));
        Ok(())
    }

    fn drop_stream(&mut self, switch_node: bool) {
        self.stream = None;
        if switch_node {
            self.node = self.node.wrapping_add(1);
        }
    }

    fn backoff(&self) -> Duration {
        let base = self.client.config().retry_backoff;
        (base * 2u32.saturating_pow(self.failures.min(16))).min(MAX_BACKOFF)
    }

    /// Verify an update and decide whether it is new.
    fn accept(&mut self, data: &str) -> Result<Option<VerifiedService>, ClientError> {
        let update: WatchUpdate = serde_json::from_str(data)
            .map_err(|e| ClientError::Malformed(format!("watch update: {e}")))?;
        let asked = match &self.service {
            Some(s) => format!("{}/{s}", self.namespace),
            None => format!("{}/*", self.namespace),
        };
        if update.namespace != self.namespace
            || self.service.as_ref().is_some_and(|s| *s != update.service)
        {
            return Err(ClientError::WrongService {
                asked,
                got: format!("{}/{}", update.namespace, update.service),
            });
        }
        let nodes = self.client.nodes();
        let node = &nodes[self.node % nodes.len()];
        let verified = self.client.verified(node, |t| {
            verify_lookup(
                t,
                &update.namespace,
                &update.service,
                &update.lookup,
                now_ms(),
                None,
            )
        })?;
        let name = verified.name();
        match self.delivered.get(&name) {
            Some(&last) if verified.height == last => return Ok(None),
            Some(&last) if verified.height < last => {
                return Err(ClientError::OutOfOrder {
                    service: name,
                    got: verified.height,
                    last,
                })
            }
            _ => {}
        }
        self.delivered.insert(name, verified.height);
        self.from_height = Some(self.from_height.unwrap_or(0).max(verified.height));
        Ok(Some(verified))
    }
}

impl Iterator for Watch<'_> {
    type Item = Result<VerifiedService, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.stream.is_none() {
                if self.failures > 0 {
                    thread::sleep(self.backoff());
                }
                if let Err(e) = self.connect() {
                    tracing::warn!(error = %e, "watch connection failed");
                    self.failures += 1;
                    self.drop_stream(true);
                    let round = self.client.nodes().len() as u32;
                    if self.failures % round == 0 {
                        return Some(Err(e));
                    }
                    continue;
                }
            }
            let stream = self.stream.as_mut().expect("connected above");
            match stream.next_event() {
                Ok(event) if event.event == "update" => match self.accept(&event.data) {
                    Ok(Some(v)) => {
                        self.failures = 0;
                        return Some(Ok(v));
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "watch update refused; switching node");
                        self.failures += 1;
                        self.drop_stream(true);
                        return Some(Err(e));
                    }
                },
                Ok(event) if event.event == "cutoff" => {
                    let reason = serde_json::from_str::<ApiError>(&event.data)
                        .map(|e| format!("{}: {}", e.code, e.message))
                        .unwrap_or(event.data);
                    tracing::warn!(%reason, "watch cut off by the node; resuming");
                    self.failures += 1;
                    self.drop_stream(false);
                }
                Ok(_) => continue,
                Err(end) => {
                    let reason = match end {
                        SseEnd::Closed(r) => r,
                        SseEnd::TooLarge => "oversized event".to_string(),
                    };
                    tracing::info!(%reason, "watch stream ended; resuming");
                    self.failures += 1;
                    self.drop_stream(true);
                }
            }
        }
    }
}
