//! Fault-injection routes, routed only when the node runs with
//! `fault_injection = true`: `POST /admin/partition {"blocked": [hex keys]}`
//! drops every frame to and from those validators; `POST /admin/heal {}`
//! lifts it.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;
use palisade_crypto::PublicKey;
use serde::Deserialize;

use super::{parse_json, ApiErr};
use crate::context::Context;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartitionRequest {
    blocked: Vec<String>,
}

pub(crate) async fn partition(
    State(ctx): State<Arc<Context>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiErr> {
    let req: PartitionRequest = parse_json(body)?;
    let mut keys = HashSet::new();
    for k in &req.blocked {
        let key = PublicKey::from_hex(k).map_err(|e| ApiErr::bad("bad_key", e.to_string()))?;
        keys.insert(key);
    }
    let n = keys.len();
    if !ctx.net.shared.set_blocked(keys) {
        return Err(ApiErr::not_found(
            "fault_injection_disabled",
            "fault injection is off",
        ));
    }
    Ok(Json(serde_json::json!({ "blocked": n })))
}

pub(crate) async fn heal(
    State(ctx): State<Arc<Context>>,
) -> Result<Json<serde_json::Value>, ApiErr> {
    if !ctx.net.shared.set_blocked(HashSet::new()) {
        return Err(ApiErr::not_found(
            "fault_injection_disabled",
            "fault injection is off",
        ));
    }
    Ok(Json(serde_json::json!({ "blocked": 0 })))
}
