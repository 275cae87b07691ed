//! `POST /v1/tx`, `GET /v1/tx/{id}`, `GET /v1/accounts/{key}`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use palisade_consensus::state::StateReader;
use palisade_crypto::api::{AccountResponse, Receipt, SubmitRequest, SubmitResponse, TxStatus};
use palisade_crypto::{
    decode_capped, Digest, Hex, PublicKey, ReceiptTree, SignedTransaction, StateKey,
    OUTCOME_APPLIED,
};
use tokio::sync::broadcast::error::RecvError;

use super::{parse_json, ApiErr};
use crate::context::Context;
use crate::error::StorageError;
use crate::mempool::AdmitError;

/// The receipt of a committed transaction, once its block and a certificate
/// at or above it are stored.
pub(crate) fn receipt(ctx: &Context, id: &Digest) -> Result<Option<Receipt>, StorageError> {
    let store = &ctx.store;
    let Some(loc) = store.tx_location(id)? else {
        return Ok(None);
    };
    let (Some(record), Some(block)) = (
        store.height_record(loc.height)?,
        store.block_info(loc.height)?,
    ) else {
        return Ok(None);
    };
    let Some((cert_height, cert)) = store.cert_from(loc.height)? else {
        return Ok(None);
    };
    if cert_height > store.served_ledger_height() {
        // Written, neither synced nor released by the driver (the QC that
        // committed it holds a vote of this node not yet durable): a
        // receipt now could name a commit a power loss would undo.
        return Ok(None);
    }
    let mut descendants = Vec::new();
    for h in loc.height + 1..=cert_height {
        match store.block_info(h)? {
            Some(info) => descendants.push(Hex::new(&info)),
            None => return Ok(None),
        }
    }
    let index = loc.index as usize;
    if index >= record.tx_ids.len()
        || record.outcomes.len() != record.tx_ids.len()
        || record.codes.len() != record.tx_ids.len()
    {
        return Err(StorageError::Corrupt {
            cf: "receipts",
            reason: format!(
                "index {index} beyond block of {} ids, {} outcomes and {} codes",
                record.tx_ids.len(),
                record.outcomes.len(),
                record.codes.len()
            ),
        });
    }
    let tree = ctx.receipt_trees.get(loc.height, || {
        let leaves: Vec<(Digest, u16)> = record
            .tx_ids
            .iter()
            .copied()
            .zip(record.codes.iter().copied())
            .collect();
        ReceiptTree::new(&leaves)
    });
    let mut outcome = record.outcomes[index].clone();
    let mut outcome_code = record.codes[index];
    if ctx.byzantine.has(crate::ByzantineMode::ClaimOutcomes) {
        // Byzantine test mode: claim the opposite outcome (the proof stays
        // the honest one, which then no longer matches).
        (outcome, outcome_code) = if outcome_code == OUTCOME_APPLIED {
            ("rejected: forged by a Byzantine node".into(), 14)
        } else {
            ("applied".into(), OUTCOME_APPLIED)
        };
    }
    Ok(Some(Receipt {
        tx_id: *id,
        height: loc.height,
        block: Hex::new(&block),
        inclusion: Hex::new(&tree.proof(index)),
        descendants,
        certificate: Hex::new(&cert),
        outcome,
        outcome_code,
        block_info: Some(block),
        certified: Some((&cert).into()),
    }))
}

fn answer(id: Digest, receipt: Option<Receipt>) -> SubmitResponse {
    let status = match &receipt {
        None => TxStatus::Pending,
        Some(r) if r.outcome_code == OUTCOME_APPLIED => TxStatus::Committed,
        Some(_) => TxStatus::Rejected,
    };
    SubmitResponse {
        tx_id: id,
        status,
        receipt,
    }
}

fn admit_error(e: AdmitError) -> ApiErr {
    let status = match e {
        AdmitError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
        AdmitError::SequenceTaken(_) => StatusCode::CONFLICT,
        AdmitError::NotPermitted { .. } => StatusCode::FORBIDDEN,
        AdmitError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiErr::new(status, e.code(), e.to_string())
}

pub(crate) async fn submit(
    State(ctx): State<Arc<Context>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiErr> {
    let req: SubmitRequest = parse_json(body)?;
    let tx: SignedTransaction = decode_capped(req.tx.bytes(), ctx.limits.max_tx_bytes)
        .map_err(|e| ApiErr::bad("malformed_tx", e.to_string()))?;
    let id = tx.id();
    if ctx.byzantine.has(crate::ByzantineMode::PendingForever) {
        // Byzantine test mode: swallow the transaction, claim it is pending.
        return Ok((StatusCode::ACCEPTED, Json(answer(id, None))).into_response());
    }
    // Subscribe before admission so no commit slips between the two.
    let mut commits = ctx.commits.subscribe();
    let ctx2 = ctx.clone();
    // Signature verification is CPU work: keep it off the I/O threads.
    let admitted = tokio::task::spawn_blocking(move || ctx2.admit(tx, true))
        .await
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match admitted {
        Ok(_) | Err(AdmitError::Duplicate) => {}
        Err(e) => return Err(admit_error(e)),
    }
    tracing::debug!(tx = %id, "admitted");
    let mut current = receipt(&ctx, &id)?;
    if req.wait && current.is_none() {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ctx.api.wait_timeout_ms);
        let mut stop = ctx.shutdown.clone();
        while current.is_none() {
            let next = tokio::select! {
                r = tokio::time::timeout_at(deadline, commits.recv()) => r,
                _ = stop.wait() => break,
            };
            match next {
                Err(_) => break,
                Ok(Err(RecvError::Closed)) => break,
                Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => current = receipt(&ctx, &id)?,
            }
        }
    }
    tracing::debug!(tx = %id, height = current.as_ref().map(|r| r.height), "answered");
    let code = if current.is_some() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((code, Json(answer(id, current))).into_response())
}

pub(crate) async fn status(
    State(ctx): State<Arc<Context>>,
    Path(id): Path<String>,
) -> Result<Json<SubmitResponse>, ApiErr> {
    let id = Digest::from_hex(&id).map_err(|e| ApiErr::bad("bad_tx_id", e.to_string()))?;
    if ctx.byzantine.has(crate::ByzantineMode::PendingForever) {
        return Ok(Json(answer(id, None)));
    }
    let current = receipt(&ctx, &id)?;
    if current.is_none() && !ctx.is_pending(&id) && ctx.store.tx_location(&id)?.is_none() {
        return Err(ApiErr::not_found(
            "unknown_tx",
            format!("transaction {id} is neither pending nor committed here"),
        ));
    }
    Ok(Json(answer(id, current)))
}

pub(crate) async fn account(
    State(ctx): State<Arc<Context>>,
    Path(key): Path<String>,
) -> Result<Json<AccountResponse>, ApiErr> {
    let key = PublicKey::from_hex(&key).map_err(|e| ApiErr::bad("bad_key", e.to_string()))?;
    let (height, cert) = super::query::certified(&ctx)?;
    let (value, proof) = StateReader::at(&ctx.store, height)
        .prove(&StateKey::Account { key })
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "state", e.to_string()))?;
    let committed = ctx.committed_next_sequence(&key);
    let mut next = ctx
        .mempool
        .lock()
        .expect("mempool lock poisoned")
        .next_sequence(&key, committed);
    if ctx.byzantine.has(crate::ByzantineMode::LieAccounts) {
        // Byzantine test mode: steer the signer to the end of the sequence
        // space; the proof stays honest.
        next = u64::MAX - 1;
    }
    Ok(Json(AccountResponse {
        key,
        next_sequence: next,
        height,
        certificate: Hex::new(&cert),
        value: value.map(Hex::from_bytes),
        proof: Hex::new(&proof),
    }))
}
