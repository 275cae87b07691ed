//! `GET /v1/snapshot/proof?height=H&key=K`: the range proof of key hash `K`
//! at certified height `H` (jmt's right siblings), which a node catching up
//! checks each snapshot page against (`crate::snapshot`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use palisade_crypto::{Digest, Hex};
use serde::Deserialize;

use super::ApiErr;
use crate::context::Context;
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
