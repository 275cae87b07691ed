//! A global bound on requests inside their handlers: beyond
//! `api.max_concurrent_requests` a request is refused at once with 503
//! `overloaded` (clients retry elsewhere) instead of queueing without bound.
//! A watch stream holds its permit only until its response starts.
//!
//! Held polls (an importer's `export/head?after=` and `export/changes` with
//! `wait_ms`, a remote watch's `after_height`) wait up to 5 s for news. They
//! take a permit of their own, smaller pool ([`MAX_HELD_POLLS`]) instead of
//! the global one, so an outsider holding polls cannot starve the API (wave-3
//! review D2); a held poll beyond that pool takes a global permit and is
//! answered at once, without holding ([`MayHold`]`(false)`): its caller polls
//! again after its own pause, as it does after an idle answer.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiErr;

/// Most polls held at once (each up to 5 s), apart from the global bound.
pub(crate) const MAX_HELD_POLLS: usize = 64;

/// The permits of one API router: every request's, and held polls'.
#[derive(Debug, Clone)]
pub(crate) struct RequestLimit {
    all: Arc<Semaphore>,
    held: Arc<Semaphore>,
}

impl RequestLimit {
    pub(crate) fn new(max: usize) -> Self {
        Self::with_held(max, MAX_HELD_POLLS)
    }

    fn with_held(max: usize, held: usize) -> Self {
        RequestLimit {
            all: Arc::new(Semaphore::new(max)),
            held: Arc::new(Semaphore::new(held)),
        }
    }
}

/// Whether a held poll may wait for news (a request extension, set by
/// [`limit_concurrency`] only on requests it counted in the held pool).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MayHold(pub bool);

impl MayHold {
    /// How long a poll asking for `wait_ms` may be held: only a request the
    /// middleware admitted to the held pool waits at all (a request whose
    /// query names it did not recognise, e.g. percent-encoded, holds a
    /// global permit and so is answered at once; wave-3 review D2-1).
    pub(crate) fn wait_ms(hold: Option<axum::Extension<MayHold>>, wait_ms: u64) -> u64 {
        match hold {
            Some(axum::Extension(MayHold(true))) => wait_ms,
            _ => 0,
        }
    }
}

/// Whether a request asks to be held (see the module's note).
fn is_held_poll(req: &Request) -> bool {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    let has = |name: &str| {
        query
            .split('&')
            .any(|kv| kv.split('=').next() == Some(name))
    };
    match path {
        "/v1/export/head" => has("after"),
        "/v1/export/changes" => has("wait_ms"),
        _ => path.starts_with("/v1/remote/") && has("after_height"),
    }
}

pub(crate) async fn limit_concurrency(
    State(limit): State<RequestLimit>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_held_poll(&req) {
        if let Ok(_held) = limit.held.try_acquire() {
            req.extensions_mut().insert(MayHold(true));
            return next.run(req).await;
        }
        req.extensions_mut().insert(MayHold(false));
    }
    match limit.all.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiErr::unavailable(
            "overloaded",
            "too many requests in progress; retry later or ask another node",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_beyond_the_bound_are_refused_not_queued() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let (r, e) = (release.clone(), entered.clone());
        let app = Router::new()
            .route(
                "/slow",
                get(move || {
                    let (r, e) = (r.clone(), e.clone());
                    async move {
                        e.notify_one();
                        r.notified().await;
                        "done"
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                RequestLimit::new(1),
                limit_concurrency,
            ));
        let request = || {
            Request::get("/slow")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let first = tokio::spawn(app.clone().oneshot(request()));
        tokio::time::timeout(Duration::from_secs(10), entered.notified())
            .await
            .expect("the first request is in its handler");
        let second = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(request()))
            .await
            .expect("the second request is answered at once")
            .unwrap();
        assert_eq!(second.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        release.notify_one();
        let first = first.await.unwrap().unwrap();
        assert_eq!(first.status(), axum::http::StatusCode::OK);
    }

    /// Wave-3 review D2: polls held for news (up to 5 s each) used to take
    /// global permits, so an outsider holding `max_concurrent_requests`
    /// of them starved every other request. They now have their own pool;
    /// beyond it a poll is answered at once (not held) instead of waiting.
    #[tokio::test]
    async fn held_polls_do_not_take_the_permits_of_other_requests() {
        let release = Arc::new(Notify::new());
        let entered = Arc::new(Notify::new());
        let (held_in, held_out) = (entered.clone(), release.clone());
        let app = Router::new()
            .route(
                "/v1/export/head",
                get(move |hold: Option<axum::Extension<MayHold>>| {
                    let (entered, release) = (held_in.clone(), held_out.clone());
                    async move {
                        if MayHold::wait_ms(hold, 5_000) > 0 {
                            entered.notify_one();
                            release.notified().await;
                            "held"
                        } else {
                            "at once"
                        }
                    }
                }),
            )
            .route("/v1/status", get(|| async { "status" }))
            .layer(axum::middleware::from_fn_with_state(
                RequestLimit::with_held(1, 1),
                limit_concurrency,
            ));
        let request = |path: &str| Request::get(path).body(axum::body::Body::empty()).unwrap();
        let held = tokio::spawn(
            app.clone()
                .oneshot(request("/v1/export/head?after=3&wait_ms=5000")),
        );
        tokio::time::timeout(Duration::from_secs(10), entered.notified())
            .await
            .expect("the poll is held in its handler");
        // While it is held, a plain request gets the one global permit.
        let status = app.clone().oneshot(request("/v1/status")).await.unwrap();
        assert_eq!(status.status(), axum::http::StatusCode::OK);
        // A second held poll beyond the held pool is answered at once.
        let second = tokio::time::timeout(
            Duration::from_secs(10),
            app.clone()
                .oneshot(request("/v1/export/head?after=3&wait_ms=5000")),
        )
        .await
        .expect("a poll beyond the held pool is answered at once")
        .unwrap();
        assert_eq!(second.status(), axum::http::StatusCode::OK);
        let body = axum::body::to_bytes(second.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"at once");
        // A poll whose query name is percent-encoded (`aft%65r`, which the
        // handler's decoder reads as `after`) is not in the held pool, so it
        // is not held either: it cannot keep a global permit for 5 s.
        let disguised = tokio::time::timeout(
            Duration::from_secs(10),
            app.clone()
                .oneshot(request("/v1/export/head?aft%65r=3&wait_ms=5000")),
        )
        .await
        .expect("a disguised poll is answered at once")
        .unwrap();
        let body = axum::body::to_bytes(disguised.into_body(), 1024)
            .await
            .unwrap();
        assert_eq!(&body[..], b"at once");
        release.notify_one();
        let held = held.await.unwrap().unwrap();
        let body = axum::body::to_bytes(held.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"held");
    }
}
