//! Provable reads: services, namespaces, epochs, blocks; and status.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use palisade_consensus::state::StateReader;
use palisade_crypto::api::{
    BlockResponse, CertificateView, EpochsResponse, LookupResponse, NamespaceResponse,
    StatusResponse, TxView,
};
use palisade_crypto::{
    decode, encode, CommitCertificate, Digest, Hex, InstanceRecord, NamespaceRecord, ServiceRecord,
    SignedTransaction, TxBody,
};
use serde::Deserialize;

use super::{check_name, ApiErr};
use crate::context::Context;

/// The latest certified height and its certificate.
pub(crate) fn certified(ctx: &Context) -> Result<(u64, CommitCertificate), ApiErr> {
    ctx.store
        .latest_cert()?
        .ok_or_else(|| ApiErr::unavailable("no_certified_state", "no block is certified yet"))
}

fn state_err(e: impl std::fmt::Display) -> ApiErr {
    ApiErr::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "state",
        e.to_string(),
    )
}

/// A service lookup at certified height `height`.
pub(crate) fn lookup_at(
    ctx: &Context,
    height: u64,
    cert: &CommitCertificate,
    namespace: &str,
    service: &str,
) -> Result<LookupResponse, ApiErr> {
    let proof = StateReader::at(&ctx.store, height)
        .service(namespace, service)
        .map_err(state_err)?;
    let mut instances: Vec<InstanceRecord> = proof
        .instances
        .iter()
        .map(|bytes| decode(bytes))
        .collect::<Result<_, _>>()
        .map_err(state_err)?;
    let mut encoded = proof.instances;
    if ctx.byzantine.has(crate::ByzantineMode::ForgeLookups) {
        // Byzantine test mode: move every endpoint, keep the honest proof.
        for i in &mut instances {
            for e in &mut i.endpoints {
                e.port = e.port.wrapping_add(1);
            }
        }
        encoded = instances.iter().map(encode).collect();
    }
    let record = proof.lookup.value.as_ref().map(|_| ServiceRecord {
        namespace: namespace.to_string(),
        service: service.to_string(),
        instances,
    });
    Ok(LookupResponse {
        height,
        certificate: Hex::new(cert),
        lookup: Hex::new(&proof.lookup),
        instances: encoded.into_iter().map(Hex::from_bytes).collect(),
        record,
        certified: Some(cert.into()),
    })
}

pub(crate) async fn service(
    State(ctx): State<Arc<Context>>,
    Path((namespace, service)): Path<(String, String)>,
) -> Result<Json<LookupResponse>, ApiErr> {
    check_name("namespace", &namespace)?;
    check_name("service", &service)?;
    let (height, cert) = certified(&ctx)?;
    Ok(Json(lookup_at(&ctx, height, &cert, &namespace, &service)?))
}

pub(crate) async fn namespace(
    State(ctx): State<Arc<Context>>,
    Path(namespace): Path<String>,
) -> Result<Json<NamespaceResponse>, ApiErr> {
    check_name("namespace", &namespace)?;
    let (height, cert) = certified(&ctx)?;
    let lookup = StateReader::at(&ctx.store, height)
        .namespace(&namespace)
        .map_err(state_err)?;
    let record = match &lookup.value {
        Some(bytes) => Some(decode::<NamespaceRecord>(bytes).map_err(state_err)?),
        None => None,
    };
    Ok(Json(NamespaceResponse {
        namespace,
        certificate: Hex::new(&cert),
        value: lookup.value.map(Hex::from_bytes),
        proof: Hex::new(&lookup.proof),
        record,
        certified: Some((&cert).into()),
    }))
}

#[derive(Deserialize)]
pub(crate) struct EpochsQuery {
    #[serde(default)]
    from: u64,
}

pub(crate) async fn epochs(
    State(ctx): State<Arc<Context>>,
    query: Result<Query<EpochsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EpochsResponse>, ApiErr> {
    let Query(q) = query.map_err(|e| ApiErr::bad("bad_query", e.body_text()))?;
    let changes = ctx.store.epoch_changes(q.from, 1000)?;
    Ok(Json(EpochsResponse {
        changes: changes.iter().map(Hex::new).collect(),
        epochs: changes.iter().map(CertificateView::from).collect(),
    }))
}

pub(crate) async fn block(
    State(ctx): State<Arc<Context>>,
    Path(height): Path<String>,
) -> Result<Json<BlockResponse>, ApiErr> {
    let height: u64 = height
        .parse()
        .map_err(|_| ApiErr::bad("bad_height", format!("{height:?} is not a height")))?;
    super::refuse_pruned(&ctx, height)?;
    let info = ctx.store.block_info(height)?.ok_or_else(|| {
        ApiErr::not_found(
            "unknown_block",
            format!("height {height} is not committed here"),
        )
    })?;
    let certified = ctx
        .store
        .cert_at(height)?
        .map(|c| CertificateView::from(&c));
    let transactions = match ctx.store.committed_block(height)? {
        Some(committed) => transactions(&ctx, height, &committed.block.payload)?,
        None => Vec::new(), // before the first commit of a restored node
    };
    Ok(Json(BlockResponse {
        height,
        block: Hex::new(&info),
        info: Some(info),
        certified,
        transactions,
    }))
}

/// A committed block's transactions as plain JSON, with this node's outcomes.
fn transactions(ctx: &Context, height: u64, payload: &[u8]) -> Result<Vec<TxView>, ApiErr> {
    if payload.is_empty() {
        return Ok(Vec::new());
    }
    let txs: Vec<SignedTransaction> = decode(payload).map_err(state_err)?;
    let outcomes = ctx
        .store
        .height_record(height)?
        .map(|r| r.outcomes)
        .unwrap_or_default();
    Ok(txs
        .iter()
        .enumerate()
        .map(|(i, t)| TxView {
            id: t.id(),
            signer: t.tx.signer,
            sequence: t.tx.sequence,
            kind: t.tx.body.kind().to_string(),
            target: target(&t.tx.body),
            outcome: outcomes.get(i).cloned(),
        })
        .collect())
}

/// What a transaction acts on, for people reading a block.
fn target(body: &TxBody) -> Option<String> {
    match body {
        TxBody::Enroll(e) => Some(e.identity.to_string()),
        TxBody::Revoke { identity } => Some(identity.to_string()),
        TxBody::Register(r) => Some(format!("{}/{}/{}", r.namespace, r.service, r.instance)),
        TxBody::Deregister {
            namespace,
            service,
            instance,
        }
        | TxBody::Heartbeat {
            namespace,
            service,
            instance,
        }
        | TxBody::HealthReport {
            namespace,
            service,
            instance,
            ..
        } => Some(format!("{namespace}/{service}/{instance}")),
        #[allow(unreachable_patterns)] // bodies added later read as their kind alone
        _ => None,
    }
}

pub(crate) async fn status(
    State(ctx): State<Arc<Context>>,
) -> Result<Json<StatusResponse>, ApiErr> {
    let height = ctx.store.committed_height()?;
    let state_root = match ctx.store.block_info(height)? {
        Some(info) => info.state_root,
        None => StateReader::at(&ctx.store, 0)
            .root()
            .unwrap_or(Digest::ZERO),
    };
    let progress = ctx.progress.borrow().clone();
    let peers = ctx.net.shared.connected();
    ctx.metrics.peers.set(peers as i64);
    Ok(Json(StatusResponse {
        chain_id: ctx.chain_id.clone(),
        node_key: ctx.key.to_hex(),
        height,
        round: progress.round,
        epoch: progress.epoch,
        leader: progress.leader.map(|k| k.to_hex()).unwrap_or_default(),
        peers,
        mempool: ctx.mempool.lock().expect("mempool lock poisoned").len(),
        state_root,
    }))
}
