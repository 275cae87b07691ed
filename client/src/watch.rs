//! Watching a service or a namespace through the nodes' SSE streams.
//!
//! The node sends, per batch, one `update` per changed service (its lookup
//! proven at the node's latest certified height `c`), then `synced` with the
//! commit certificate of `c`: every change committed from the stream's
//! `from_height` up to `c` has been sent. A change whose proof would not fit
//! in an event is announced as `changed` (`namespace/service`), and the
//! client fetches it with a verified lookup from the same node.
//!
//! Every update is verified like a lookup (certificate against the trusted
//! set, proof against the certified root, the same freshness bound), and
//! must not go back: it is refused as [`ClientError::OutOfOrder`] when its
//! height is below the `from_height` asked for or below a height already
//! seen on this watch (a replayed old state). An update already delivered
//! (same service, same height) is dropped.
//!
//! Resuming: the watch reconnects from one past the last verified `synced`
//! height, never from the height of an update, so a stream cut in the middle
//! of a batch is resumed from the batch's start and no change is lost (some
//! may be delivered again at a newer height). A `synced` certificate must be
//! fresh and above what was seen, so a node cannot move the resume point
//! into the future or the past.
//!
//! `synced` proves the subject (issue-13 review): for a service watch it
//! carries the service's lookup proven at the synced height `c` (or, when
//! that would not fit in an event, the client looks the service up, at `c`
//! or later). If the proven state differs from the last state this watch
//! delivered, it is delivered now (at `c`): a node that sends `synced`
//! without the updates below it cannot move the resume point past a change,
//! since the change shows in the proof. A service watch therefore also
//! delivers the service's state at its first `synced` unless an update
//! already did. For a namespace watch `synced` carries the namespace's
//! change chain at `c` ([`crate::changes`]): it names every service changed
//! since the stream's first height, with the height of its newest change;
//! each one this watch did not deliver at or above that height is looked up
//! (at `c` or later) and delivered. A node that withholds a service's
//! update therefore delays it to the batch's `synced`, never hides it. A
//! `synced` without the proof of its subject (service or namespace) is
//! refused.
//!
//! Failover: a cutoff, an end of stream, an oversized event, a refused
//! update, or a stream that makes no verified progress for
//! [`WATCH_STALL`] (keepalives only) moves the watch to the next node.

use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::thread;
use std::time::{Duration, Instant};

use palisade_crypto::api::{
    ApiError, LookupResponse, NamespaceChanges, NamespaceResponse, WatchSynced, WatchUpdate,
};
use palisade_crypto::{Digest, ServiceRecord};

use crate::changes::{changed_since, Changed, MAX_CHANGED};
use crate::client::now_ms;
use crate::node::{encode_component, NodeApi};
use crate::sse::{SseEnd, SseReader, MAX_EVENT_BYTES};
use crate::verify::{verify_lookup, verify_namespace};
use crate::{Client, ClientError, VerifiedService};

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a stream may go without verified progress (a new `synced`
/// height or a new update) before the watch moves to another node. Honest
/// nodes certify a height at least every half round timeout, idle or not.
pub const WATCH_STALL: Duration = Duration::from_secs(20);

/// A verified stream of changes; iterate it to receive them.
///
/// The iterator never ends on its own: it yields `Err` when a node sent
/// something that does not verify or when a whole round of nodes could not
/// be reached, and keeps trying on the next call.
pub struct Watch<'a> {
    client: &'a Client,
    namespace: String,
    service: Option<String>,
    /// Lowest height an update may have (the `from_height` asked for).
    floor: Option<u64>,
    /// Where the next connection starts (`from_height` of the request).
    resume: Option<u64>,
    /// A resume point a namespace `synced` proved while it queued changes:
    /// it takes effect when the last of them is handed out, so
    /// [`Watch::resume_height`] never passes an undelivered change.
    pending_resume: Option<u64>,
    /// Highest verified height seen (update or `synced`).
    seen: u64,
    delivered: HashMap<String, u64>,
    /// A service watch's last delivered state (`None` inside: proven absent).
    last_state: Option<Option<ServiceRecord>>,
    stream: Option<SseReader<Box<dyn BufRead + Send>>>,
    node: usize,
    failures: u32,
    stall: Duration,
    progress: Instant,
    /// Whether the current stream made verified progress.
    stream_progressed: bool,
    /// Verified changes a namespace `synced` proved and the stream did not
    /// send, to deliver before reading on.
    queue: VecDeque<VerifiedService>,
    /// Most changed services one namespace `synced` may name before the
    /// watch re-lists the namespace instead.
    max_changed: usize,
}

impl std::fmt::Debug for Watch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("namespace", &self.namespace)
            .field("service", &self.service)
            .field("resume", &self.resume)
            .field("seen", &self.seen)
            .finish()
    }
}

impl Client {
    /// Watch one service (`Some(service)`) or a whole namespace, from
    /// `from_height` on. With `None`, a namespace watch first takes a
    /// verified listing of the namespace ([`Client::services`]) and starts
    /// right after its height, so every later change is delivered; a
    /// service watch delivers the service's proven state at the first
    /// `synced` (state, not each change in between). Heights only grow per
    /// service: across services of a namespace, a change a `synced` proved
    /// the stream left out is delivered at the height it was looked up.
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
            floor: from_height,
            resume: from_height,
            pending_resume: None,
            seen: 0,
            delivered: HashMap::new(),
            last_state: None,
            stream: None,
            node: 0,
            failures: 0,
            stall: WATCH_STALL,
            progress: Instant::now(),
            stream_progressed: false,
            queue: VecDeque::new(),
            max_changed: MAX_CHANGED,
        }
    }
}

/// What one event did to the watch.
enum Step {
    Deliver(VerifiedService),
    Continue,
}

impl Watch<'_> {
    /// The height the next connection resumes from: every change below it
    /// has been handed out by this iterator, so it is safe to persist after
    /// processing an item and to pass as `from_height` after a restart.
    pub fn resume_height(&self) -> Option<u64> {
        self.resume
    }

    /// Move to another node when a stream makes no verified progress for
    /// this long (default [`WATCH_STALL`]).
    pub fn stall_after(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }

    /// Most changed services one namespace `synced` may name (default
    /// [`MAX_CHANGED`]); beyond it (or beyond 2^20 links) the watch takes a
    /// verified listing of the namespace and delivers the proven state of
    /// every listed service and of every one it delivered before.
    pub fn max_changed(mut self, max: usize) -> Self {
        self.max_changed = max.max(1);
        self
    }

    fn path(&self) -> String {
        let mut path = format!("/v1/watch?namespace={}", encode_component(&self.namespace));
        if let Some(s) = &self.service {
            path.push_str(&format!("&service={}", encode_component(s)));
        }
        if let Some(h) = self.resume {
            path.push_str(&format!("&from_height={h}"));
        }
        path
    }

    fn current_node(&self) -> &NodeApi {
        let nodes = self.client.nodes();
        &nodes[self.node % nodes.len()]
    }

    fn connect(&mut self) -> Result<(), ClientError> {
        if self.resume.is_none() && self.service.is_none() {
            // A namespace watch from "now" starts at a verified height: a
            // node that later proves its change chain then proves it from
            // there, and a stream cut before the first `synced` resumes
            // from there rather than from the next node's "now" (wave-3
            // review H2).
            let listing = self.client.services(&self.namespace)?;
            self.resume = Some(listing.height.saturating_add(1));
        }
        let node = self.current_node().clone();
        let lifetime = self.client.config().watch_stream_lifetime;
        let reader = node.stream(&self.path(), lifetime)?;
        tracing::info!(node = node.url(), from_height = ?self.resume, "watch connected");
        self.stream = Some(SseReader::new(reader));
        self.progress = Instant::now();
        self.stream_progressed = false;
        Ok(())
    }

    fn made_progress(&mut self) {
        self.progress = Instant::now();
        self.stream_progressed = true;
        self.failures = 0;
    }

    fn switch_node(&mut self) {
        self.stream = None;
        self.node = self.node.wrapping_add(1);
    }

    fn backoff(&self) -> Duration {
        let base = self.client.config().retry_backoff;
        (base * 2u32.saturating_pow(self.failures.min(16))).min(MAX_BACKOFF)
    }

    fn asked(&self) -> String {
        match &self.service {
            Some(s) => format!("{}/{s}", self.namespace),
            None => format!("{}/*", self.namespace),
        }
    }

    fn check_subject(&self, namespace: &str, service: &str) -> Result<(), ClientError> {
        if namespace != self.namespace || self.service.as_ref().is_some_and(|s| s != service) {
            return Err(ClientError::WrongService {
                asked: self.asked(),
                got: format!("{namespace}/{service}"),
            });
        }
        Ok(())
    }

    /// The height a verified answer must reach: the `from_height` asked for
    /// and every height seen so far.
    fn check_not_older(&self, name: &str, height: u64) -> Result<(), ClientError> {
        if let Some(floor) = self.floor {
            if height < floor {
                return Err(ClientError::OutOfOrder {
                    service: name.to_string(),
                    got: height,
                    last: floor.saturating_sub(1),
                });
            }
        }
        if height < self.seen {
            return Err(ClientError::OutOfOrder {
                service: name.to_string(),
                got: height,
                last: self.seen,
            });
        }
        Ok(())
    }

    /// Verify a lookup answer about `namespace/service` and decide whether
    /// it is new.
    fn accept_lookup(
        &mut self,
        namespace: &str,
        service: &str,
        response: &LookupResponse,
    ) -> Result<Step, ClientError> {
        self.check_subject(namespace, service)?;
        let node = self.current_node().clone();
        let fresh = self.client.config().freshness;
        let verified = self.client.verified(&node, |t| {
            verify_lookup(t, namespace, service, response, now_ms(), Some(&fresh))
        })?;
        let name = verified.name();
        self.check_not_older(&name, verified.height)?;
        if let Some(&last) = self.delivered.get(&name) {
            if verified.height <= last {
                return Ok(Step::Continue);
            }
        }
        self.delivered.insert(name, verified.height);
        if verified.height > self.seen {
            self.seen = verified.height;
        }
        if self.service.is_some() {
            self.last_state = Some(verified.record.clone());
        }
        self.made_progress();
        Ok(Step::Deliver(verified))
    }

    /// A `changed` announcement: fetch the service with a verified lookup.
    fn accept_changed(&mut self, data: &str) -> Result<Step, ClientError> {
        let (namespace, service) = data
            .trim()
            .split_once('/')
            .ok_or_else(|| ClientError::Malformed(format!("watch `changed` event {data:?}")))?;
        self.check_subject(namespace, service)?;
        let path = format!(
            "/v1/services/{}/{}",
            encode_component(namespace),
            encode_component(service)
        );
        let response: LookupResponse = self.current_node().get(&path)?;
        let (namespace, service) = (namespace.to_string(), service.to_string());
        self.accept_lookup(&namespace, &service, &response)
    }

    /// A `synced` event: every change up to its height was sent. For a
    /// service watch, the service's proven state at that height is checked
    /// against what was delivered; a difference is delivered now.
    fn accept_synced(&mut self, data: &str) -> Result<Step, ClientError> {
        let synced: WatchSynced = serde_json::from_str(data).map_err(|e| {
            ClientError::Malformed(format!(
                "watch `synced` event (certificate and subject proof expected): {e}"
            ))
        })?;
        let cert = synced
            .certificate
            .decode()
            .map_err(|e| ClientError::Malformed(format!("watch `synced` certificate: {e}")))?;
        let node = self.current_node().clone();
        let ledger = self.client.verified(&node, |t| t.verify(&cert))?;
        let block = ledger.block();
        self.client
            .config()
            .freshness
            .check(block.timestamp_ms, now_ms())?;
        self.check_not_older(&self.asked(), block.height)?;
        let height = block.height;
        // Prove the subject before the resume point moves.
        let step = match self.service.clone() {
            Some(service) => self.check_synced_subject(&service, height, synced.service)?,
            None => self.check_synced_namespace(height, &block.state_root, synced.namespace)?,
        };
        if height > self.seen {
            self.seen = height;
            self.made_progress();
        }
        let next = height.saturating_add(1);
        if self.queue.is_empty() {
            self.advance_resume(next);
        } else {
            // Changes proven at or below `height` wait in the queue: the
            // resume point moves when the last one is handed out (H5).
            self.pending_resume = self.pending_resume.max(Some(next));
        }
        Ok(step)
    }

    fn advance_resume(&mut self, next: u64) {
        if self.resume.is_none_or(|r| next > r) {
            self.resume = Some(next);
        }
    }

    /// The watched service's state at the synced height `height`: from the
    /// event (proven at exactly `height`) or, when the node left it out,
    /// looked up from the node (at `height` or later). Delivered when it
    /// differs from the last state this watch delivered.
    fn check_synced_subject(
        &mut self,
        service: &str,
        height: u64,
        inline: Option<LookupResponse>,
    ) -> Result<Step, ClientError> {
        let exact = inline.is_some();
        let response = match inline {
            Some(r) => r,
            None => self.current_node().get(&format!(
                "/v1/services/{}/{}",
                encode_component(&self.namespace),
                encode_component(service)
            ))?,
        };
        let node = self.current_node().clone();
        let fresh = self.client.config().freshness;
        let namespace = self.namespace.clone();
        let verified = self.client.verified(&node, |t| {
            verify_lookup(t, &namespace, service, &response, now_ms(), Some(&fresh))
        })?;
        if verified.height < height || (exact && verified.height != height) {
            return Err(ClientError::Malformed(format!(
                "watch `synced` at height {height} proves {} at height {}",
                verified.name(),
                verified.height
            )));
        }
        if self.last_state.as_ref() == Some(&verified.record) {
            return Ok(Step::Continue);
        }
        tracing::info!(
            service = %verified.name(),
            height = verified.height,
            "synced proves a state the stream did not send; delivering it"
        );
        self.delivered.insert(verified.name(), verified.height);
        self.last_state = Some(verified.record.clone());
        Ok(Step::Deliver(verified))
    }

    /// A namespace watch's `synced` at `height`: every service its change
    /// chain names as changed since the stream's first height and this
    /// watch did not deliver at or above its newest change is looked up (at
    /// `height` or later) and queued for delivery.
    fn check_synced_namespace(
        &mut self,
        height: u64,
        root: &Digest,
        changes: Option<NamespaceChanges>,
    ) -> Result<Step, ClientError> {
        let changes = changes.ok_or_else(|| {
            ClientError::Malformed(format!(
                "watch `synced` at height {height} without the change chain of {}",
                self.namespace
            ))
        })?;
        let node = self.current_node().clone();
        let deadline = Instant::now() + self.stall;
        let changed = changed_since(
            &node,
            &self.namespace,
            root,
            &changes,
            self.resume,
            deadline,
            self.max_changed,
        )?;
        let mut found = Vec::new();
        match changed {
            Changed::Services(changed) => {
                for (service, changed_at) in changed {
                    let name = format!("{}/{service}", self.namespace);
                    if self.delivered.get(&name).is_some_and(|&d| d >= changed_at) {
                        continue;
                    }
                    let verified = self.lookup_at_least(&node, &service, height)?;
                    tracing::info!(
                        service = %name,
                        changed_at,
                        height = verified.height,
                        "synced proves a change the stream did not send; delivering it"
                    );
                    found.push(verified);
                }
            }
            Changed::TooMany => {
                // Too long a chain to walk (wave-3 review H6): the proven
                // state of every service listed now, and of every one
                // delivered before (a vanished one as a proven absence).
                let response: NamespaceResponse = node.get(&format!(
                    "/v1/namespaces/{}",
                    encode_component(&self.namespace)
                ))?;
                let (namespace, fresh) = (self.namespace.clone(), self.client.config().freshness);
                let listing = self.client.verified(&node, |t| {
                    verify_namespace(t, &namespace, &response, now_ms(), Some(&fresh))
                })?;
                if listing.height < height {
                    return Err(ClientError::Malformed(format!(
                        "watch `synced` at height {height}: {namespace} listed at height {}",
                        listing.height
                    )));
                }
                let prefix = format!("{namespace}/");
                let mut names: std::collections::BTreeSet<String> =
                    listing.services.iter().map(|s| s.to_string()).collect();
                names.extend(
                    self.delivered
                        .keys()
                        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)),
                );
                tracing::warn!(
                    namespace = %namespace,
                    height,
                    services = names.len(),
                    "more changes than one synced may name; delivering the namespace's proven state"
                );
                for service in names {
                    found.push(self.lookup_at_least(&node, &service, height)?);
                }
            }
        }
        for verified in found {
            self.delivered.insert(verified.name(), verified.height);
            self.queue.push_back(verified);
        }
        Ok(Step::Continue)
    }

    /// `service` of the watched namespace looked up from `node`, verified
    /// and proven at `height` or later.
    fn lookup_at_least(
        &self,
        node: &NodeApi,
        service: &str,
        height: u64,
    ) -> Result<VerifiedService, ClientError> {
        let namespace = self.namespace.clone();
        let response: LookupResponse = node.get(&format!(
            "/v1/services/{}/{}",
            encode_component(&namespace),
            encode_component(service)
        ))?;
        let fresh = self.client.config().freshness;
        let verified = self.client.verified(node, |t| {
            verify_lookup(t, &namespace, service, &response, now_ms(), Some(&fresh))
        })?;
        if verified.height < height {
            return Err(ClientError::Malformed(format!(
                "watch `synced` at height {height}: {namespace}/{service} looked up at height {}",
                verified.height
            )));
        }
        Ok(verified)
    }

    /// Handle one event of the current stream.
    fn handle(&mut self, event: &str, data: &str) -> Result<Step, ClientError> {
        match event {
            "update" => {
                let update: WatchUpdate = serde_json::from_str(data)
                    .map_err(|e| ClientError::Malformed(format!("watch update: {e}")))?;
                self.accept_lookup(&update.namespace, &update.service, &update.lookup)
            }
            "changed" => self.accept_changed(data),
            "synced" => self.accept_synced(data),
            _ => Ok(Step::Continue),
        }
    }

    /// Leave the current node after a failure; `report` says whether the
    /// caller hears of it now (else once per round of nodes).
    fn fail(&mut self, error: ClientError, report: bool) -> Option<ClientError> {
        self.failures += 1;
        self.switch_node();
        let round = self.client.nodes().len() as u32;
        (report || self.failures % round == 0).then_some(error)
    }
}

impl Iterator for Watch<'_> {
    type Item = Result<VerifiedService, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(v) = self.queue.pop_front() {
                self.failures = 0;
                if self.queue.is_empty() {
                    if let Some(next) = self.pending_resume.take() {
                        self.advance_resume(next);
                    }
                }
                return Some(Ok(v));
            }
            if self.stream.is_none() {
                if self.failures > 0 {
                    thread::sleep(self.backoff());
                }
                if let Err(e) = self.connect() {
                    tracing::warn!(error = %e, "watch connection failed");
                    if let Some(e) = self.fail(e, false) {
                        return Some(Err(e));
                    }
                    continue;
                }
            }
            let stream = self.stream.as_mut().expect("connected above");
            let event = match stream.next_event() {
                Ok(event) => event,
                Err(SseEnd::Closed(reason)) if self.stream_progressed => {
                    // A stream that delivered ends (its lifetime, a restart):
                    // resume on the next node without counting a failure.
                    tracing::info!(%reason, "watch stream ended; resuming on the next node");
                    self.switch_node();
                    continue;
                }
                Err(end) => {
                    let (error, report) = match end {
                        SseEnd::Closed(reason) => (
                            ClientError::Transport {
                                node: self.current_node().url().to_string(),
                                reason: format!("watch stream ended: {reason}"),
                            },
                            false,
                        ),
                        SseEnd::TooLarge => (
                            ClientError::Malformed(format!(
                                "{} sent a watch event over {MAX_EVENT_BYTES} bytes",
                                self.current_node().url()
                            )),
                            true,
                        ),
                    };
                    tracing::info!(error = %error, "watch stream ended; resuming on the next node");
                    if let Some(e) = self.fail(error, report) {
                        return Some(Err(e));
                    }
                    continue;
                }
            };
            if event.event == "cutoff" {
                let reason = serde_json::from_str::<ApiError>(&event.data)
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .unwrap_or(event.data);
                tracing::warn!(%reason, "watch cut off by the node; resuming on the next node");
                let error = ClientError::Api {
                    node: self.current_node().url().to_string(),
                    status: 200,
                    code: "cutoff".into(),
                    message: reason,
                };
                if let Some(e) = self.fail(error, false) {
                    return Some(Err(e));
                }
                continue;
            }
            match self.handle(&event.event, &event.data) {
                Ok(Step::Deliver(v)) => {
                    self.failures = 0;
                    return Some(Ok(v));
                }
                Ok(Step::Continue) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "watch event refused; switching node");
                    self.fail(e.clone(), true);
                    return Some(Err(e));
                }
            }
            if self.progress.elapsed() > self.stall {
                let error = ClientError::Timeout {
                    what: format!(
                        "verified progress on the watch stream of {}",
                        self.current_node().url()
                    ),
                    waited_ms: self.progress.elapsed().as_millis() as u64,
                };
                tracing::warn!(error = %error, "watch stream stalled; switching node");
                if let Some(e) = self.fail(error, false) {
                    return Some(Err(e));
                }
            }
        }
    }
}
