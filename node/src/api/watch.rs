//! `GET /v1/watch`: server-sent events of service changes in commit order.
//!
//! A stream walks certified heights. For each newly certified height `c` it
//! emits, for every watched service that changed in a height since the last
//! certified one it handled, an `update` whose lookup is proven at `c` (the
//! height the client resumes after, via `from_height = c + 1`). Live heights
//! arrive on a broadcast channel of `api.watch_buffer` entries: the node never
//! waits for a consumer; a consumer so slow that the channel overwrote heights
//! it had not read gets an `event: cutoff` and the stream ends, and it
//! reconnects with `from_height`. Replays are read from storage in bounded
//! steps, so an old `from_height` costs no more memory than a live stream.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use palisade_crypto::api::{ApiError, WatchUpdate};
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::RecvError};

use super::query::lookup_at;
use super::{check_name, ApiErr};
use crate::context::Context;

/// Heights read from storage per step of a replay.
const REPLAY_STEP: u64 = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchQuery {
    namespace: String,
    service: Option<String>,
    from_height: Option<u64>,
}

/// Counts an open stream: increments the count when opened, decrements it
/// when the stream is dropped.
struct StreamGuard(Arc<Context>);

impl StreamGuard {
    /// Open a stream; also returns how many are open now, this one included.
    fn open(ctx: Arc<Context>) -> (Self, usize) {
        let open = ctx.watch_streams.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.metrics.watch_streams.set(open as i64);
        (StreamGuard(ctx), open)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let n = self.0.watch_streams.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.metrics.watch_streams.set(n as i64);
    }
}

struct WatchState {
    guard: StreamGuard,
    namespace: String,
    service: Option<String>,
    /// Next height whose changes are not yet scanned.
    next: u64,
    live: broadcast::Receiver<u64>,
    /// Changed services not yet reported (waiting for a certified height).
    carried: BTreeSet<(String, String)>,
    pending: VecDeque<Event>,
    done: bool,
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

impl WatchState {
    /// A stream of `namespace` (or one `service` of it) from height `next`.
    fn new(guard: StreamGuard, namespace: String, service: Option<String>, next: u64) -> Self {
        let live = guard.0.commits.subscribe();
        WatchState {
            guard,
            namespace,
            service,
            next,
            live,
            carried: BTreeSet::new(),
            pending: VecDeque::new(),
            done: false,
        }
    }

    fn ctx(&self) -> &Arc<Context> {
        &self.guard.0
    }

    /// Scan from `next` up to the latest certified height (at most one
    /// step), queueing updates. Returns whether it advanced.
    fn scan(&mut self) -> Result<bool, ApiErr> {
        let ctx = self.ctx().clone();
        let Some((certified, _)) = ctx.store.latest_cert()? else {
            return Ok(false);
        };
        if self.next > certified {
            return Ok(false);
        }
        // Stop at the first certified height of this step; changes of
        // uncertified heights are carried to it.
        let limit = certified.min(self.next + REPLAY_STEP - 1);
        let found = match ctx.store.cert_from(self.next)? {
            Some((h, cert)) if h <= limit => Some((h, cert)),
            _ => None,
        };
        let Some((target, cert)) = found else {
            self.collect(self.next, limit)?;
            self.next = limit + 1;
            return Ok(true);
        };
        self.collect(self.next, target)?;
        for (ns, svc) in std::mem::take(&mut self.carried) {
            let lookup = lookup_at(&ctx, target, &cert, &ns, &svc)?;
            let update = WatchUpdate {
                namespace: ns,
                service: svc,
                lookup,
            };
            let data = serde_json::to_string(&update).expect("WatchUpdate encodes");
            self.pending
                .push_back(Event::default().event("update").data(data));
        }
        self.next = target + 1;
        Ok(true)
    }

    fn collect(&mut self, from: u64, to: u64) -> Result<(), ApiErr> {
        let ctx = self.ctx().clone();
        for h in from..=to {
            if let Some(record) = ctx.store.height_record(h)? {
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

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            match self.scan() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    self.done = true;
                    return Some(cutoff(format!("watch failed: {e:?}")));
                }
            }
            let mut stop = self.ctx().shutdown.clone();
            let received = tokio::select! {
                r = self.live.recv() => r,
                _ = stop.wait() => return None,
            };
            match received {
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    self.done = true;
                    return Some(cutoff(format!(
                        "consumer too slow: {n} certified heights were dropped from its buffer; \
                         reconnect with from_height={}",
                        self.next
                    )));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

pub(crate) async fn watch(
    State(ctx): State<Arc<Context>>,
    query: Result<Query<WatchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiErr> {
    let Query(q) = query.map_err(|e| ApiErr::bad("bad_query", e.body_text()))?;
    check_name("namespace", &q.namespace)?;
    if let Some(s) = &q.service {
        check_name("service", s)?;
    }
    let (guard, open) = StreamGuard::open(ctx.clone());
    if open > ctx.api.max_watch_streams {
        return Err(ApiErr::unavailable(
            "too_many_watchers",
            format!("at most {} watch streams", ctx.api.max_watch_streams),
        ));
    }
    let next = match q.from_height {
        Some(h) => h.max(1),
        None => ctx.store.latest_cert()?.map_or(1, |(h, _)| h + 1),
    };
    // Subscribed before any scan, so no height is missed between the two.
    let state = WatchState::new(guard, q.namespace, q.service, next);
    let stream = futures::stream::unfold(state, |mut s| async move {
        s.next_event().await.map(|e| (Ok(e), s))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_consumer_that_falls_behind_is_cut_off_and_the_stream_ends() {
        let (ctx, _trigger) = Context::for_tests(2);
        let mut state = WatchState::new(StreamGuard::open(ctx.clone()).0, "prod".into(), None, 1);
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
            text.contains("cutoff") && text.contains("from_height=1"),
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
        let mut state = WatchState::new(StreamGuard::open(ctx.clone()).0, "prod".into(), None, 1);
        trigger.trigger();
        let end = tokio::time::timeout(Duration::from_secs(5), state.next_event()).await;
        assert!(end.expect("no wait").is_none());
    }
}
