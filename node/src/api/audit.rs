//! Read-only history for auditors (`palisade-audit`): one committed height
//! with its whole block (payload included), the QC that commits it, and the
//! node's per-transaction outcomes. Everything here is checked by the
//! auditor against the genesis validator set; nothing is trusted.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use palisade_crypto::Hex;
use serde_json::{json, Value};

use super::ApiErr;
use crate::context::Context;

/// `GET /v1/audit/blocks/{height}`.
pub(crate) async fn block(
    State(ctx): State<Arc<Context>>,
    Path(height): Path<String>,
) -> Result<Json<Value>, ApiErr> {
    let height: u64 = height
        .parse()
        .map_err(|_| ApiErr::bad("bad_height", format!("{height:?} is not a height")))?;
    super::refuse_pruned(&ctx, height)?;
    let committed = ctx.store.committed_block(height)?.ok_or_else(|| {
        ApiErr::not_found(
            "unknown_block",
            format!("height {height} is not committed here"),
        )
    })?;
    let (tx_ids, outcomes) = ctx
        .store
        .height_record(height)?
        .map(|r| (r.tx_ids, r.outcomes))
        .unwrap_or_default();
    Ok(Json(json!({
        "height": height,
        "committed": Hex::new(&committed),
        "tx_ids": tx_ids,
        "outcomes": outcomes,
    })))
}
