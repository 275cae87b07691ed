//! `POST /v1/heartbeat`: take owners' signed heartbeats (off consensus).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use palisade_crypto::api::{
    HeartbeatRefusal, HeartbeatRequest, HeartbeatResponse, MAX_HEARTBEATS_PER_REQUEST,
};
use palisade_crypto::SignedHeartbeat;

use super::{now_ms, HeartbeatError};
use crate::api::{parse_json, ApiErr};
use crate::context::Context;

/// Verify each heartbeat once (prechecks first, signatures off the async
/// runtime), remember the ones taken; say which were refused and why.
pub(crate) async fn heartbeat(
    State(ctx): State<Arc<Context>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HeartbeatResponse>, ApiErr> {
    if !ctx.leases.enabled {
        return Err(ApiErr::new(
            StatusCode::CONFLICT,
            "leases_not_attested",
            "this chain's leases expire on block time: renew with Heartbeat transactions",
        ));
    }
    let req: HeartbeatRequest = parse_json(body)?;
    if req.heartbeats.is_empty() || req.heartbeats.len() > MAX_HEARTBEATS_PER_REQUEST {
        return Err(ApiErr::bad(
            "bad_heartbeats",
            format!(
                "{} heartbeats; 1 to {MAX_HEARTBEATS_PER_REQUEST} per request",
                req.heartbeats.len()
            ),
        ));
    }
    let mut decoded = Vec::with_capacity(req.heartbeats.len());
    for (i, h) in req.heartbeats.iter().enumerate() {
        let hb: SignedHeartbeat = h
            .decode()
            .map_err(|e| ApiErr::bad("malformed_heartbeat", format!("heartbeat {i}: {e}")))?;
        decoded.push(hb);
    }
    let task_ctx = ctx.clone();
    let response = tokio::task::spawn_blocking(move || take(&task_ctx, decoded))
        .await
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(response))
}

fn take(ctx: &Context, heartbeats: Vec<SignedHeartbeat>) -> HeartbeatResponse {
    let now = now_ms();
    // Prechecks under the lock (cheap), signatures outside it.
    let verdicts: Vec<Result<(), HeartbeatError>> = {
        let tracker = ctx.leases.tracker.lock().expect("lease tracker lock");
        heartbeats
            .iter()
            .map(|h| tracker.precheck(h, now))
            .collect()
    };
    let verdicts: Vec<Result<(), HeartbeatError>> = heartbeats
        .iter()
        .zip(verdicts)
        .map(|(h, v)| {
            v.and_then(|()| {
                h.verify()
                    .map_err(|e| HeartbeatError::BadSignature(e.to_string()))
            })
        })
        .collect();
    let mut tracker = ctx.leases.tracker.lock().expect("lease tracker lock");
    let mut accepted = 0;
    let mut refused = Vec::new();
    for (index, (h, v)) in heartbeats.iter().zip(verdicts).enumerate() {
        match v.and_then(|()| tracker.record(h, now)) {
            Ok(()) => accepted += 1,
            Err(e) => {
                tracing::debug!(index, identity = %h.heartbeat.identity.short(), error = %e, "heartbeat refused");
                refused.push(HeartbeatRefusal {
                    index,
                    code: e.code().to_string(),
                });
            }
        }
    }
    HeartbeatResponse { accepted, refused }
}
