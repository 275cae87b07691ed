//! Cross-datacenter routes: the export of this node's own chain (see
//! `palisade_crypto::dc`) and the read-only serving of imported datacenters.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use palisade_crypto::dc::LeafChange;
use palisade_crypto::dc::{ExportHead, LinksResponse, RemoteLookupResponse};
use palisade_crypto::{CommitCertificate, Digest, Hex};
use serde::Deserialize;

use super::limits::MayHold;
use super::{check_name, ApiErr};
use crate::byzantine::ByzantineMode;
use crate::context::Context;
use crate::links::export::{export_changes, export_head, export_snapshot, ExportError};

impl From<ExportError> for ApiErr {
    fn from(e: ExportError) -> Self {
        let message = e.to_string();
        match e {
            ExportError::NothingCertified => ApiErr::unavailable("no_certified_state", message),
            ExportError::AheadOfNode { .. } => ApiErr::not_found("unknown_height", message),
            ExportError::SnapshotRequired { .. } => {
                ApiErr::new(StatusCode::GONE, "snapshot_required", message)
            }
            ExportError::DeltaTooLarge { .. } => {
                ApiErr::new(StatusCode::CONFLICT, "delta_too_large", message)
            }
            ExportError::NotCertified(_) => ApiErr::not_found("not_certified", message),
            ExportError::Storage(s) => s.into(),
            ExportError::Tree(_) => {
                ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "state", message)
            }
        }
    }
}

/// The answer as borsh when the caller asked for
/// [`palisade_crypto::dc::EXPORT_BINARY_TYPE`] in `Accept`, else JSON.
fn answer<T: serde::Serialize + borsh::BorshSerialize>(headers: &HeaderMap, value: &T) -> Response {
    let binary = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(palisade_crypto::dc::EXPORT_BINARY_TYPE));
    if binary {
        (
            [(
                header::CONTENT_TYPE,
                palisade_crypto::dc::EXPORT_BINARY_TYPE,
            )],
            palisade_crypto::encode(value),
        )
            .into_response()
    } else {
        Json(value).into_response()
    }
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiErr> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiErr::bad("bad_query", e.body_text()))
}

/// Longest a head request may be held.
const MAX_HEAD_WAIT_MS: u64 = 5_000;

#[derive(Deserialize)]
pub(crate) struct HeadQuery {
    after: Option<u64>,
    #[serde(default)]
    wait_ms: u64,
}

/// Whether `head` carries news for an importer at `after`: a certified height
/// above it whose state root differs from the root at `after` (blocks that
/// change nothing are reported at the next heartbeat, not one by one).
fn news(ctx: &Context, head: &ExportHead, after: u64) -> Result<bool, ApiErr> {
    if head.height <= after {
        return Ok(false);
    }
    let old = ctx.store.block_info(after)?.map(|i| i.state_root);
    let new = ctx.store.block_info(head.height)?.map(|i| i.state_root);
    Ok(old.is_none() || old != new)
}

/// Wait (at most `wait_ms` ≤ 5 s) until a certified height above `after`
/// changed the state; the newest head either way.
async fn wait_for_news(ctx: &Context, after: u64, wait_ms: u64) -> Result<ExportHead, ApiErr> {
    let mut commits = ctx.commits.subscribe();
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(wait_ms.min(MAX_HEAD_WAIT_MS));
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let head = export_head(&ctx.store)?;
        if news(ctx, &head, after)? || tokio::time::Instant::now() >= deadline {
            return Ok(head);
        }
        tokio::select! {
            r = commits.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return Ok(head);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait() => return Ok(head),
        }
    }
}

/// `GET /v1/export/head[?after=H&wait_ms=W]`: the newest certificate; with
/// `after`, held (at most `W` ≤ 5 s) until a certified height above `H`
/// changed the state, so an idle link costs one answer per `W` (its
/// heartbeat) and a change travels as soon as it is certified.
pub(crate) async fn head(
    State(ctx): State<Arc<Context>>,
    hold: Option<axum::Extension<MayHold>>,
    headers: HeaderMap,
    q: Result<Query<HeadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiErr> {
    let q = query(q)?;
    let head = match q.after {
        None => export_head(&ctx.store)?,
        Some(after) => wait_for_news(&ctx, after, MayHold::wait_ms(hold, q.wait_ms)).await?,
    };
    Ok(answer(&headers, &lie_about_head(&ctx, head)?))
}

/// The Byzantine test modes of the export side (never set outside
/// fault-injection testnets): a certificate that no longer verifies, or an
/// older one.
fn lie_about_certificate(
    ctx: &Context,
    cert: Hex<CommitCertificate>,
) -> Result<Hex<CommitCertificate>, ApiErr> {
    let b = &ctx.byzantine;
    if b.has(ByzantineMode::StaleCheckpoint) {
        if let Some(old) = stale_certificate(ctx)? {
            return Ok(Hex::new(&old));
        }
    }
    if b.has(ByzantineMode::ForgeCheckpoint) {
        if let Ok(mut c) = cert.decode() {
            if let Some(info) = c.ledger_info.commit.as_mut() {
                info.state_root.0[0] ^= 0xff;
            }
            return Ok(Hex::new(&c));
        }
    }
    Ok(cert)
}

/// A certificate at least 20 heights older than the newest (the newest
/// certified height at or below it, looking back at most 64 heights).
fn stale_certificate(ctx: &Context) -> Result<Option<CommitCertificate>, ApiErr> {
    let Some((latest, _)) = ctx.store.latest_cert()? else {
        return Ok(None);
    };
    let top = latest.saturating_sub(20);
    for h in (top.saturating_sub(64)..=top).rev() {
        if let Some(c) = ctx.store.cert_at(h)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn lie_about_head(ctx: &Context, mut head: ExportHead) -> Result<ExportHead, ApiErr> {
    head.certificate = lie_about_certificate(ctx, head.certificate)?;
    Ok(head)
}

/// Leave out or alter the first leaf of a delta or snapshot page.
fn lie_about_leaves(ctx: &Context, leaves: Hex<Vec<LeafChange>>) -> Hex<Vec<LeafChange>> {
    let b = &ctx.byzantine;
    if !b.has(ByzantineMode::OmitChange) && !b.has(ByzantineMode::AlterChange) {
        return leaves;
    }
    let Ok(mut list) = leaves.decode() else {
        return leaves;
    };
    if b.has(ByzantineMode::OmitChange) && !list.is_empty() {
        list.remove(0);
    }
    if b.has(ByzantineMode::AlterChange) {
        if let Some(first) = list.first_mut() {
            match first.value.as_mut() {
                Some(v) if !v.is_empty() => v[0] ^= 0xff,
                Some(v) => v.push(1),
                None => first.value = Some(vec![1]),
            }
        }
    }
    Hex::new(&list)
}

#[derive(Deserialize)]
pub(crate) struct ChangesQuery {
    from_height: u64,
    /// Hold the request (≤ 5 s) until there is news after `from_height`,
    /// like a head request, and answer with the delta itself (saves the
    /// importer a round trip per change).
    #[serde(default)]
    wait_ms: u64,
}

pub(crate) async fn changes(
    State(ctx): State<Arc<Context>>,
    hold: Option<axum::Extension<MayHold>>,
    headers: HeaderMap,
    q: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiErr> {
    let q = query(q)?;
    let wait_ms = MayHold::wait_ms(hold, q.wait_ms);
    if wait_ms > 0 {
        wait_for_news(&ctx, q.from_height, wait_ms).await?;
    }
    let store = ctx.store.clone();
    let page = tokio::task::spawn_blocking(move || export_changes(&store, q.from_height))
        .await
        .map_err(|e| ApiErr::unavailable("overloaded", e.to_string()))??;
    let mut page = page;
    page.certificate = lie_about_certificate(&ctx, page.certificate)?;
    page.changes = lie_about_leaves(&ctx, page.changes);
    Ok(answer(&headers, &page))
}

#[derive(Deserialize)]
pub(crate) struct SnapshotQuery {
    height: u64,
    after: Option<String>,
}

pub(crate) async fn snapshot(
    State(ctx): State<Arc<Context>>,
    headers: HeaderMap,
    q: Result<Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiErr> {
    let q = query(q)?;
    let after = q
        .after
        .as_deref()
        .map(Digest::from_hex)
        .transpose()
        .map_err(|e| ApiErr::bad("bad_query", format!("after: {e}")))?;
    let store = ctx.store.clone();
    let mut page = tokio::task::spawn_blocking(move || export_snapshot(&store, q.height, after))
        .await
        .map_err(|e| ApiErr::unavailable("overloaded", e.to_string()))??;
    page.certificate = lie_about_certificate(&ctx, page.certificate)?;
    page.leaves = lie_about_leaves(&ctx, page.leaves);
    Ok(answer(&headers, &page))
}

pub(crate) async fn links(State(ctx): State<Arc<Context>>) -> Json<LinksResponse> {
    Json(LinksResponse {
        links: ctx.links.statuses(),
    })
}

#[derive(Deserialize)]
pub(crate) struct RemoteQuery {
    /// Hold the request (at most `wait_ms` ≤ 5 s) until the link imported a
    /// remote height above this one: the remote watch's long poll.
    after_height: Option<u64>,
    #[serde(default)]
    wait_ms: u64,
}

/// `GET /v1/remote/{dc}/services/{ns}/{svc}[?after_height=H&wait_ms=W]`:
/// the imported record with the remote certificate and proof; with
/// `after_height`, answered once the link imported a height above `H` (or
/// at the wait's end, with what it has).
pub(crate) async fn remote_service(
    State(ctx): State<Arc<Context>>,
    hold: Option<axum::Extension<MayHold>>,
    Path((datacenter, namespace, service)): Path<(String, String, String)>,
    q: Result<Query<RemoteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RemoteLookupResponse>, ApiErr> {
    let q = query(q)?;
    check_name("datacenter", &datacenter)?;
    check_name("namespace", &namespace)?;
    check_name("service", &service)?;
    let link = ctx.links.by_name.get(&datacenter).cloned().ok_or_else(|| {
        ApiErr::not_found(
            "unknown_datacenter",
            format!("this node does not import datacenter {datacenter:?}"),
        )
    })?;
    if let Some(after) = q.after_height {
        let mut imported = link.imported.subscribe();
        let wait_ms = MayHold::wait_ms(hold, q.wait_ms).min(MAX_HEAD_WAIT_MS);
        let wait = std::time::Duration::from_millis(wait_ms);
        let mut shutdown = ctx.shutdown.clone();
        tokio::select! {
            _ = imported.wait_for(|h| *h > after) => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => {}
        }
    }
    let status = link.status.lock().expect("link status lock").clone();
    let lookup = tokio::task::spawn_blocking(move || link.mirror.lookup(&namespace, &service))
        .await
        .map_err(|e| ApiErr::unavailable("overloaded", e.to_string()))?
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "mirror", e.to_string()))?
        .ok_or_else(|| {
            ApiErr::unavailable(
                "not_imported",
                format!("nothing imported from {datacenter:?} yet"),
            )
        })?;
    Ok(Json(RemoteLookupResponse {
        link: status,
        lookup,
    }))
}
