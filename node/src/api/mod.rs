//! The HTTP/JSON API (axum), exactly the routes and types of
//! `palisade_crypto::api`, plus `/admin/partition` and `/admin/heal` when the
//! node runs with `fault_injection`.
//!
//! Every refusal is a 4xx/5xx with an [`ApiError`] body: bodies above
//! `api.max_body_bytes` (413 `body_too_large`), malformed JSON or hex (400
//! `malformed_json`, `malformed_tx`), bad signatures (400 `bad_signature`),
//! bad names (400 `invalid_name`), unknown transactions (404 `unknown_tx`).
//! A service or namespace that does not exist is answered with a provable
//! absence (200), which a client can check, rather than a bare 404 it could not.

mod admin;
mod audit;
mod changes;
mod export;
mod limits;
mod query;
mod snapshot;
mod tx;
mod watch;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use palisade_crypto::api::ApiError;
use tracing::warn;

use crate::context::Context;
use crate::error::StorageError;
use crate::metrics::RouteLabel;

/// An API refusal.
#[derive(Debug)]
pub(crate) struct ApiErr {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// 410 `pruned` for a committed height below this node's pruned mark (a
/// retention window passed it, or the node started from a snapshot above
/// it): the height existed, this node no longer has it.
pub(crate) fn refuse_pruned(ctx: &Context, height: u64) -> Result<(), ApiErr> {
    let below = crate::storage::prune::pruned_below(ctx.store.kv().as_ref())?;
    if height > 0 && height < below {
        return Err(ApiErr::new(
            StatusCode::GONE,
            "pruned",
            format!("heights below {below} are pruned here"),
        ));
    }
    Ok(())
}

impl ApiErr {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiErr {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub(crate) fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl From<StorageError> for ApiErr {
    fn from(e: StorageError) -> Self {
        warn!(error = %e, "storage failure while serving the API");
        ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let body = ApiError {
            code: self.code.to_string(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// A name from a path or query: non-empty, bounded, printable ASCII without '/'.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), ApiErr> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
    if ok {
        Ok(())
    } else {
        Err(ApiErr::bad(
            "invalid_name",
            format!("{what} {name:?} must be 1..=253 printable ASCII characters without '/'"),
        ))
    }
}

async fn track_latency(State(ctx): State<Arc<Context>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    ctx.metrics
        .api_latency
        .get_or_create(&RouteLabel {
            route,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn fallback() -> ApiErr {
    ApiErr::not_found(
        "no_route",
        "no such route; see palisade_crypto::api for the routes",
    )
}

/// `/metrics`: OpenMetrics to a scraper that asks for it (Prometheus does),
/// the Prometheus text format 0.0.4 to everyone else (curl, promtool).
async fn metrics(
    State(ctx): State<Arc<Context>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    ctx.metrics.peers.set(ctx.net.shared.connected() as i64);
    let openmetrics = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            ctx.metrics.encode_openmetrics(),
        )
    } else {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            ctx.metrics.encode(),
        )
    }
}

/// The API router.
pub(crate) fn router(ctx: Arc<Context>) -> Router {
    let mut router = Router::new()
        .route("/v1/tx", post(tx::submit))
        .route("/v1/tx/{id}", get(tx::status))
        .route("/v1/accounts/{key}", get(tx::account))
        .route("/v1/services/{namespace}/{service}", get(query::service))
        .route("/v1/namespaces/{namespace}", get(query::namespace))
        .route("/v1/namespaces/{namespace}/changes", get(changes::changes))
        .route("/v1/epochs", get(query::epochs))
        .route("/v1/blocks/{height}", get(query::block))
        .route("/v1/audit/blocks/{height}", get(audit::block))
        .route("/v1/status", get(query::status))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/export/head", get(export::head))
        .route("/v1/export/changes", get(export::changes))
        .route("/v1/export/snapshot", get(export::snapshot))
        .route("/v1/snapshot/proof", get(snapshot::proof))
        .route("/v1/snapshot/pin", post(snapshot::pin))
        .route("/v1/links", get(export::links))
        .route(
            "/v1/remote/{datacenter}/services/{namespace}/{service}",
            get(export::remote_service),
        )
        .route("/v1/heartbeat", post(crate::leases::heartbeat))
        .route("/metrics", get(metrics));
    if ctx.fault_injection {
        router = router
            .route("/admin/partition", post(admin::partition))
            .route("/admin/heal", post(admin::heal));
    }
    router
        .fallback(fallback)
        .layer(axum::Extension(Arc::new(watch::WatchLimits::default())))
        .layer(axum::Extension(Arc::new(query::LookupCache::default())))
        .layer(middleware::from_fn_with_state(
            limits::RequestLimit::new(ctx.api.max_concurrent_requests),
            limits::limit_concurrency,
        ))
        .layer(middleware::from_fn_with_state(ctx.clone(), track_latency))
        .layer(DefaultBodyLimit::max(ctx.api.max_body_bytes))
        .with_state(ctx)
}

/// Parse a JSON body that was read as bytes, refusing with an [`ApiError`].
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiErr> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                e.body_text(),
            )
        } else {
            ApiErr::bad("bad_body", e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiErr::bad("malformed_json", e.to_string()))
}
