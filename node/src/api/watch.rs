//! `GET /v1/watch`: server-sent events of service changes in commit order.
//!
//! A stream walks certified heights from its `from_height`. A batch covers
//! every height from where the stream stands up to the latest certified
//! height `c`: for each watched service that changed in it, an `update`
//! whose lookup is proven at `c`, then `synced` (a `WatchSynced`: the commit
//! certificate of `c` and, for a service watch, the service's lookup proven
//! at `c`, for a namespace watch the namespace's change chain at `c` down to
//! the batch's start, see [`super::changes`]): every change up to `c` was sent, and a client resumes with
//! `from_height = c + 1`. The proven state lets the client check that claim
//! against what it was sent (issue-13 review). A client that loses the stream before
//! `synced` resumes from the batch's start, so no change is lost. An update
//! whose JSON would exceed `api.watch_inline_max_bytes` is announced as `changed` (data
//! `namespace/service`) and the client looks it up, so a large service never
//! needs a large event.
//!
//! Live heights arrive on a broadcast channel of `api.watch_buffer` entries:
//! the node never waits for a consumer; a consumer so slow that the channel
//! overwrote heights it had not read gets an `event: cutoff` and the stream
//! ends. Storage is read on the blocking pool (`spawn_blocking`), in steps
//! of [`REPLAY_STEP`] heights, so a replay from an old `from_height` neither
//! blocks the runtime nor costs more memory than a live stream (the changed
//! services of one namespace). Each stream is produced by its own task into
//! a small channel; a consumer that takes nothing for
//! `api.watch_idle_timeout_ms` is dropped and its slot freed. So that this
//! holds on a quiet namespace too, the task sends a heartbeat event every
//! `api.watch_heartbeat_ms`, which must drain like any event; and since
//! socket buffers can absorb heartbeats for a long time, every stream ends
//! after `api.watch_max_stream_ms` (the client resumes from its last
//! `synced` height): no reader, reading or not, holds a slot longer.
//! Streams are capped globally (`api.max_watch_streams`), per remote IP
//! address (`api.max_watch_streams_per_client`) and per IPv4 /24 or IPv6 /48
//! (`api.max_watch_streams_per_subnet`), so a few addresses cannot take
//! every slot (issue-13 review).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::{ConnectInfo, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Extension;
use futures::{Stream, StreamExt};
use palisade_crypto::api::{ApiError, WatchSynced, WatchUpdate};
use palisade_crypto::Hex;
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use super::query::{lookup_at, Record};
use super::{check_name, ApiErr};
use crate::context::Context;
use crate::ByzantineMode;

/// Heights read from storage per step of a replay.
const REPLAY_STEP: u64 = 256;

/// Events a stream's task may queue ahead of its consumer.
const STREAM_QUEUE: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchQuery {
    namespace: String,
    service: Option<String>,
    from_height: Option<u64>,
}

/// Open watch streams per remote IP address and per subnet (one per API
/// router).
#[derive(Debug, Default)]
pub(crate) struct WatchLimits {
    /// Keyed by `(subnet, address)`: entries with the address `None` count
    /// the whole subnet.
    open: Mutex<HashMap<SlotKey, usize>>,
}

/// `(subnet, address)`; the address `None` counts the whole subnet.
type SlotKey = (Option<IpAddr>, Option<IpAddr>);

/// The subnet an address counts in: its IPv4 /24 or IPv6 /48 (an
/// IPv4-mapped IPv6 address counts as IPv4).
fn subnet(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => subnet(IpAddr::V4(v4)),
            None => {
                let mut o = v6.octets();
                o[6..].fill(0);
                IpAddr::from(o)
            }
        },
    }
}

/// Counts an open stream, globally, for its client and for its subnet; the
/// counts drop when the stream (its producing task) ends.
struct StreamGuard {
    ctx: Arc<Context>,
    limits: Arc<WatchLimits>,
    client: Option<IpAddr>,
}

impl StreamGuard {
    fn keys(client: Option<IpAddr>) -> [SlotKey; 2] {
        let net = client.map(subnet);
        [(net, client), (net, None)]
    }

    /// Open a stream for `client`, or refuse it over any cap.
    fn open(
        ctx: Arc<Context>,
        limits: Arc<WatchLimits>,
        client: Option<IpAddr>,
    ) -> Result<Self, ApiErr> {
        {
            let [mine, net] = Self::keys(client);
            let mut open = limits.open.lock().unwrap_or_else(|e| e.into_inner());
            let count = |k| open.get(&k).copied().unwrap_or(0);
            let api = &ctx.api;
            if count(mine) >= api.max_watch_streams_per_client {
                return Err(ApiErr::unavailable(
                    "too_many_watchers",
                    format!(
                        "at most {} watch streams per client",
                        api.max_watch_streams_per_client
                    ),
                ));
            }
            if count(net) >= api.max_watch_streams_per_subnet {
                return Err(ApiErr::unavailable(
                    "too_many_watchers",
                    format!(
                        "at most {} watch streams per subnet (IPv4 /24, IPv6 /48)",
                        api.max_watch_streams_per_subnet
                    ),
                ));
            }
            *open.entry(mine).or_insert(0) += 1;
            *open.entry(net).or_insert(0) += 1;
        }
        let open = ctx.watch_streams.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.metrics.watch_streams.set(open as i64);
        let guard = StreamGuard {
            ctx,
            limits,
            client,
        };
        if open > guard.ctx.api.max_watch_streams {
            return Err(ApiErr::unavailable(
                "too_many_watchers",
                format!("at most {} watch streams", guard.ctx.api.max_watch_streams),
            ));
        }
        Ok(guard)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let n = self.ctx.watch_streams.fetch_sub(1, Ordering::Relaxed) - 1;
        self.ctx.metrics.watch_streams.set(n as i64);
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        for key in Self::keys(self.client) {
            if let Some(n) = open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

fn cutoff(message: String) -> Event {
    let body = ApiError {
        code: "cutoff".into(),
        message,
    };
    Event::default()
        .event("cutoff")
        .data(serde_json::to_string(&body).expect("ApiError encodes"))
}

/// The storage side of a stream: what it has scanned and still carries.
/// Runs on the blocking pool.
struct Scanner {
    ctx: Arc<Context>,
    namespace: String,
    service: Option<String>,
    /// Next height whose changes are not yet scanned.
    next: u64,
    /// Changed services not yet reported (waiting for the batch's end).
    carried: BTreeSet<(String, String)>,
    /// First height of the batch being scanned.
    batch_from: Option<u64>,
}

impl Scanner {
    /// Scan at most one step from `next` towards the latest certified
    /// height; when it is reached, the batch's events. Returns whether it
    /// advanced.
    fn step(&mut self) -> Result<(bool, Vec<Event>), ApiErr> {
        let ctx = self.ctx.clone();
        let Some((certified, cert)) = ctx.store.latest_cert()? else {
            return Ok((false, Vec::new()));
        };
        if self.next > certified {
            return Ok((false, Vec::new()));
        }
        let to = certified.min(self.next.saturating_add(REPLAY_STEP - 1));
        let batch_from = *self.batch_from.get_or_insert(self.next);
        self.collect(self.next, to)?;
        self.next = to + 1;
        if to < certified {
            return Ok((true, Vec::new()));
        }
        let (proof_height, proof_cert) = if ctx.byzantine.has(ByzantineMode::ReplayWatch) {
            // Byzantine test mode: the oldest certified state, as if new.
            ctx.store.cert_from(1)?.unwrap_or((certified, cert.clone()))
        } else {
            (certified, cert.clone())
        };
        self.batch_from = None;
        let mut events = Vec::new();
        let mut carried = std::mem::take(&mut self.carried);
        if self.service.is_none() && ctx.byzantine.has(ByzantineMode::OmitWatch) {
            // Byzantine test mode: a namespace stream sends no change at
            // all, only (honest) `synced` events.
            carried.clear();
        }
        for (ns, svc) in carried {
            let lookup = lookup_at(
                &ctx,
                proof_height,
                &proof_cert,
                &ns,
                &svc,
                Record::Included,
                None,
            )?;
            let update = WatchUpdate {
                namespace: ns,
                service: svc,
                lookup,
            };
            let data = serde_json::to_string(&update).expect("WatchUpdate encodes");
            events.push(if data.len() <= ctx.api.watch_inline_max_bytes {
                Event::default().event("update").data(data)
            } else {
                Event::default()
                    .event("changed")
                    .data(format!("{}/{}", update.namespace, update.service))
            });
        }
        // The watched service's state at `certified`, proven under the same
        // certificate (omitted when too large: the client looks it up).
        let subject = match &self.service {
            Some(svc) => Some(lookup_at(
                &ctx,
                certified,
                &cert,
                &self.namespace,
                svc,
                Record::Included,
                None,
            )?)
            .filter(|l| {
                serde_json::to_string(l).map_or(0, |s| s.len()) <= ctx.api.watch_inline_max_bytes
            }),
            None => None,
        };
        // A namespace watch's change chain at `certified`, down to the
        // batch's start (the links left out when too large: the client
        // fetches them).
        let namespace = match &self.service {
            Some(_) => None,
            None => Some(super::changes::namespace_changes(
                &ctx,
                &self.namespace,
                certified,
                batch_from,
                ctx.api.watch_inline_max_bytes,
            )?),
        };
        let synced = WatchSynced {
            certificate: Hex::new(&cert),
            service: subject,
            namespace,
        };
        let synced = serde_json::to_string(&synced).expect("WatchSynced encodes");
        events.push(Event::default().event("synced").data(synced));
        Ok((true, events))
    }

    fn collect(&mut self, from: u64, to: u64) -> Result<(), ApiErr> {
        // A pruned height's changes are gone: resuming there would skip
        // them silently, so the stream is refused (the client starts over
        // from a lookup).
        let kept_from = crate::storage::prune::history_from(self.ctx.store.kv().as_ref())?;
        if from < kept_from {
            return Err(ApiErr::new(
                axum::http::StatusCode::GONE,
                "pruned",
                format!("heights below {kept_from} are pruned; look the service up and watch from there"),
            ));
        }
        for h in from..=to {
            if let Some(record) = self.ctx.store.height_record(h)? {
                for (ns, svc) in record.changed {
                    let wanted =
                        ns == self.namespace && self.service.as_ref().is_none_or(|s| *s == svc);
                    if wanted {
                        self.carried.insert((ns, svc));
                    }
                }
            }
        }
        Ok(())
    }
}

struct WatchState {
    _guard: StreamGuard,
    ctx: Arc<Context>,
    scanner: Option<Scanner>,
    live: broadcast::Receiver<u64>,
    pending: VecDeque<Event>,
    done: bool,
    /// When the stream ends whatever its consumer does.
    ends_at: Instant,
    heartbeat: Duration,
}

impl WatchState {
    /// A stream of `namespace` (or one `service` of it) from height `next`.
    fn new(guard: StreamGuard, namespace: String, service: Option<String>, next: u64) -> Self {
        let ctx = guard.ctx.clone();
        let live = ctx.commits.subscribe();
        let ends_at = Instant::now() + Duration::from_millis(ctx.api.watch_max_stream_ms);
        let heartbeat = Duration::from_millis(ctx.api.watch_heartbeat_ms);
        WatchState {
            ends_at,
            heartbeat,
            _guard: guard,
            scanner: Some(Scanner {
                ctx: ctx.clone(),
                namespace,
                service,
                next,
                carried: BTreeSet::new(),
                batch_from: None,
            }),
            ctx,
            live,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// One scan step on the blocking pool.
    async fn scan(&mut self) -> Result<bool, String> {
        let mut scanner = self.scanner.take().ok_or("scanner lost")?;
        let (scanner, result) = tokio::task::spawn_blocking(move || {
            let r = scanner.step();
            (scanner, r)
        })
        .await
        .map_err(|e| format!("scan task failed: {e}"))?;
        self.scanner = Some(scanner);
        let (advanced, events) = result.map_err(|e| format!("{e:?}"))?;
        self.pending.extend(events);
        Ok(advanced)
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            if Instant::now() >= self.ends_at {
                // The stream's lifetime: end it (after a whole batch, so the
                // client resumes from its last `synced` height).
                tracing::debug!("watch stream reached its lifetime; closed");
                return None;
            }
            match self.scan().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.done = true;
                    return Some(cutoff(format!("watch failed: {e}")));
                }
            }
            let mut stop = self.ctx.shutdown.clone();
            let received = tokio::select! {
                r = self.live.recv() => r,
                _ = stop.wait() => return None,
                _ = tokio::time::sleep(self.heartbeat) => {
                    // Must drain like any event (see `produce`).
                    return Some(Event::default().comment("heartbeat"));
                }
                _ = tokio::time::sleep_until(self.ends_at) => continue,
            };
            match received {
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    self.done = true;
                    let next = self.scanner.as_ref().map_or(0, |s| s.next);
                    return Some(cutoff(format!(
                        "consumer too slow: {n} certified heights were dropped from its buffer; \
                         reconnect from the last synced height + 1 (this stream stood at {next})"
                    )));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// Produce a stream's events into `tx` until the stream ends, the consumer
/// hangs up, or it takes nothing for `idle`.
async fn produce(mut state: WatchState, tx: mpsc::Sender<Event>, idle: Duration) {
    while let Some(event) = state.next_event().await {
        if let Err(e) = tx.send_timeout(event, idle).await {
            if matches!(e, mpsc::error::SendTimeoutError::Timeout(_)) {
                tracing::info!(
                    idle_ms = idle.as_millis() as u64,
                    "watch consumer idle; stream closed"
                );
            }
            return;
        }
    }
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

pub(crate) async fn watch(
    State(ctx): State<Arc<Context>>,
    Extension(limits): Extension<Arc<WatchLimits>>,
    parts: axum::http::request::Parts,
    query: Result<Query<WatchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, ApiErr> {
    let Query(q) = query.map_err(|e| ApiErr::bad("bad_query", e.body_text()))?;
    check_name("namespace", &q.namespace)?;
    if let Some(s) = &q.service {
        check_name("service", s)?;
    }
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let guard = StreamGuard::open(ctx.clone(), limits, client)?;
    // Byzantine modes only; honest streams carry their own heartbeat.
    let keepalive = KeepAlive::default();
    if ctx.byzantine.has(ByzantineMode::CutWatch) {
        // Byzantine test mode: every stream ends at once with a cutoff.
        let event = cutoff("cut (byzantine test mode)".into());
        let stream: EventStream = Box::pin(futures::stream::once(async move {
            drop(guard);
            Ok(event)
        }));
        return Ok(Sse::new(stream).keep_alive(keepalive).into_response());
    }
    if ctx.byzantine.has(ByzantineMode::StallWatch) {
        // Byzantine test mode: keepalives only, for as long as the client stays.
        let stream: EventStream = Box::pin(futures::stream::pending().chain(
            futures::stream::once(async move {
                drop(guard);
                Ok(Event::default())
            }),
        ));
        return Ok(Sse::new(stream).keep_alive(keepalive).into_response());
    }
    let next = match q.from_height {
        Some(h) => h.max(1),
        None => ctx.store.latest_cert()?.map_or(1, |(h, _)| h + 1),
    };
    // Subscribed before any scan, so no height is missed between the two.
    let state = WatchState::new(guard, q.namespace, q.service, next);
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let idle = Duration::from_millis(ctx.api.watch_idle_timeout_ms);
    tokio::spawn(produce(state, tx, idle));
    let stream: EventStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok(e), rx))
    }));
    Ok(Sse::new(stream).into_response())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn guard(ctx: &Arc<Context>) -> StreamGuard {
        StreamGuard::open(ctx.clone(), Arc::new(WatchLimits::default()), None).unwrap()
    }

    #[tokio::test]
    async fn a_consumer_that_falls_behind_is_cut_off_and_the_stream_ends() {
        let (ctx, _trigger) = Context::for_tests(2);
        let mut state = WatchState::new(guard(&ctx), "prod".into(), None, 1);
        // The node publishes more certified heights than the buffer holds
        // while the consumer reads nothing; publishing never waits.
        for h in 1..=5 {
            let _ = ctx.commits.send(h);
        }
        let event = tokio::time::timeout(Duration::from_secs(5), state.next_event())
            .await
            .expect("an event at once")
            .expect("a cutoff event");
        let text = format!("{event:?}");
        assert!(
            text.contains("cutoff") && text.contains("stood at 1"),
            "{text}"
        );
        assert!(
            state.next_event().await.is_none(),
            "the stream ends after a cutoff"
        );
    }

    #[tokio::test]
    async fn a_stream_ends_when_the_node_stops() {
        let (ctx, trigger) = Context::for_tests(2);
        let mut state = WatchState::new(guard(&ctx), "prod".into(), None, 1);
        trigger.trigger();
        let end = tokio::time::timeout(Duration::from_secs(5), state.next_event()).await;
        assert!(end.expect("no wait").is_none());
    }

    #[tokio::test]
    async fn streams_are_capped_per_client_address() {
        let (ctx, _trigger) = Context::for_tests(2);
        let cap = ctx.api.max_watch_streams_per_client;
        let limits = Arc::new(WatchLimits::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut held: Vec<StreamGuard> = (0..cap)
            .map(|_| StreamGuard::open(ctx.clone(), limits.clone(), Some(a)).unwrap())
            .collect();
        let refused = StreamGuard::open(ctx.clone(), limits.clone(), Some(a));
        assert!(
            matches!(&refused, Err(e) if e.code == "too_many_watchers"),
            "stream {} of one client must be refused",
            cap + 1
        );
        // Another client is not affected, and a closed stream frees its slot.
        assert!(StreamGuard::open(ctx.clone(), limits.clone(), Some(b)).is_ok());
        held.pop();
        assert!(StreamGuard::open(ctx.clone(), limits.clone(), Some(a)).is_ok());
        drop(held);
        assert_eq!(ctx.watch_streams.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_consumer_that_reads_nothing_loses_its_stream_slot() {
        let (ctx, _trigger) = Context::for_tests(2);
        let mut state = WatchState::new(guard(&ctx), "prod".into(), None, 1);
        for i in 0..3 {
            state
                .pending
                .push_back(Event::default().data(format!("{i}")));
        }
        assert_eq!(ctx.watch_streams.load(Ordering::Relaxed), 1);
        // The consumer holds its end and never reads.
        let (tx, _rx) = mpsc::channel(1);
        let task = tokio::spawn(produce(state, tx, Duration::from_millis(200)));
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the producer gives up on an idle consumer")
            .unwrap();
        assert_eq!(ctx.watch_streams.load(Ordering::Relaxed), 0);
    }
}
