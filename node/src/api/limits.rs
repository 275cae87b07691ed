//! A global bound on requests inside their handlers: beyond
//! `api.max_concurrent_requests` a request is refused at once with 503
//! `overloaded` (clients retry elsewhere) instead of queueing without bound.
//! A watch stream holds its permit only until its response starts.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::ApiErr;

/// The permits of one API router.
#[derive(Debug, Clone)]
pub(crate) struct RequestLimit(Arc<Semaphore>);

impl RequestLimit {
    pub(crate) fn new(max: usize) -> Self {
        RequestLimit(Arc::new(Semaphore::new(max)))
    }
}

pub(crate) async fn limit_concurrency(
    State(limit): State<RequestLimit>,
    req: Request,
    next: Next,
) -> Response {
    match limit.0.try_acquire() {
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
}
