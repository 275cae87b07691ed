//! `GET /v1/snapshot/proof?height=H&key=K`: the range proof of key hash `K`
//! at certified height `H` (jmt's right siblings), which a node catching up
//! checks each snapshot page against (`crate::snapshot`); and
//! `POST /v1/snapshot/pin?height=H`: keep `H` from the pruner while a node
//! pages it ([`crate::snapshot::pin`]; every proof at `H` renews the pin).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use palisade_crypto::{Digest, Hex};
use serde::{Deserialize, Serialize};

use super::ApiErr;
use crate::context::Context;
use crate::snapshot::pin::PinRefused;
use crate::snapshot::{prove_range, SnapshotProof};

#[derive(Deserialize)]
pub(crate) struct ProofQuery {
    height: u64,
    key: String,
}

pub(crate) async fn proof(
    State(ctx): State<Arc<Context>>,
    q: Result<Query<ProofQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SnapshotProof>, ApiErr> {
    let Query(q) = q.map_err(|e| ApiErr::bad("bad_query", e.body_text()))?;
    let key =
        Digest::from_hex(&q.key).map_err(|e| ApiErr::bad("bad_query", format!("key: {e}")))?;
    // Only certified heights are served (what the snapshot pages serve).
    if ctx.store.cert_at(q.height)?.is_none() {
        return Err(ApiErr::not_found(
            "not_certified",
            format!("height {} has no commit certificate here", q.height),
        ));
    }
    // A page of a pinned height was asked for: the download goes on.
    ctx.snapshot_pins.renew(q.height, std::time::Instant::now());
    let store = ctx.store.clone();
    let height = q.height;
    let proof = tokio::task::spawn_blocking(move || prove_range(&store, height, key))
        .await
        .map_err(|e| ApiErr::unavailable("overloaded", e.to_string()))?
        .map_err(|e| ApiErr::new(StatusCode::NOT_FOUND, "no_such_key", e))?;
    Ok(Json(SnapshotProof {
        height,
        key_hash: key,
        proof: Hex::new(&proof),
    }))
}

#[derive(Deserialize)]
pub(crate) struct PinQuery {
    height: u64,
}

/// What `POST /v1/snapshot/pin` answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct PinResponse {
    height: u64,
    /// How long the pin lasts without a renewal (a proof at that height).
    expires_ms: u64,
}

pub(crate) async fn pin(
    State(ctx): State<Arc<Context>>,
    q: Result<Query<PinQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PinResponse>, ApiErr> {
    let Query(q) = q.map_err(|e| ApiErr::bad("bad_query", e.body_text()))?;
    if ctx.store.cert_at(q.height)?.is_none() {
        return Err(ApiErr::not_found(
            "not_certified",
            format!("height {} has no commit certificate here", q.height),
        ));
    }
    // The lowest height kept without pins: a new pin only inside the window.
    let window = ctx.peer_source.storage.retain_heights;
    let kept = match window {
        0 => 0,
        w => ctx
            .store
            .committed_height()?
            .saturating_add(1)
            .saturating_sub(w),
    };
    let left = ctx
        .snapshot_pins
        .pin(q.height, kept, std::time::Instant::now())
        .map_err(|e| match e {
            PinRefused::Full => ApiErr::unavailable("pins_full", e.to_string()),
            PinRefused::Pruned => ApiErr::new(StatusCode::GONE, "pruned", e.to_string()),
        })?;
    Ok(Json(PinResponse {
        height: q.height,
        expires_ms: left.as_millis() as u64,
    }))
}
