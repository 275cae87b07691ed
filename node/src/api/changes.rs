//! A namespace's change chain (issue-13 review): the links a namespace
//! watch's `synced` proves, inline or from
//! `GET /v1/namespaces/{namespace}/changes?height=H&from_height=L`.
//!
//! The state holds only the newest link ([`StateKey::NamespaceLog`]); older
//! links are that leaf at older versions, and the services a link lists are
//! the node's change index of its height ([`crate::storage::HeightRecord`]),
//! the same keys the state machine hashed. Both are history: a link below
//! the retention window is answered 410, like a watch from there.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use palisade_consensus::state::StateReader;
use palisade_crypto::api::{ChangeLink, ChangesResponse, NamespaceChanges};
use palisade_crypto::{Digest, Hex, NamespaceLink, StateKey};
use serde::Deserialize;

use super::{check_name, ApiErr};
use crate::context::Context;

/// Most bytes of links one `changes` answer carries (at least one link).
const MAX_ANSWER_BYTES: usize = 1 << 20;

fn log_key(namespace: &str) -> StateKey {
    StateKey::NamespaceLog {
        namespace: namespace.to_string(),
    }
}

fn state_err(e: impl std::fmt::Display) -> ApiErr {
    ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, "state", e.to_string())
}

fn pruned(height: u64) -> ApiErr {
    ApiErr::new(
        StatusCode::GONE,
        "pruned",
        format!("the namespace's changes at height {height} are pruned; look the namespace up and watch from there"),
    )
}

/// The links of `namespace`'s chain, newest first, from the newest link at
/// or below version `top` down while heights are at least `from`; stops
/// after `budget` bytes (at least one link). Returns whether it reached
/// `from` (or the chain's start).
pub(crate) fn change_links(
    ctx: &Context,
    namespace: &str,
    top: u64,
    from: u64,
    budget: usize,
) -> Result<(Vec<ChangeLink>, bool), ApiErr> {
    let key = log_key(namespace);
    let mut links = Vec::new();
    let mut bytes = 0usize;
    let mut version = top;
    loop {
        let link: Option<NamespaceLink> = StateReader::at(&ctx.store, version)
            .get(&key)
            .map_err(|_| pruned(version))?;
        let Some(link) = link else {
            return Ok((links, true));
        };
        if link.height < from {
            return Ok((links, true));
        }
        let record = ctx
            .store
            .height_record(link.height)?
            .ok_or_else(|| pruned(link.height))?;
        let services: Vec<String> = record
            .changed
            .into_iter()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, s)| s)
            .collect();
        bytes = bytes.saturating_add(
            200 + 2 * namespace.len() + services.iter().map(|s| s.len() + 3).sum::<usize>(),
        );
        if bytes > budget && !links.is_empty() {
            return Ok((links, false));
        }
        let (prev, prev_height) = (link.prev, link.prev_height);
        links.push(ChangeLink {
            link: Hex::new(&link),
            services,
        });
        if prev == Digest::ZERO || prev_height < from || prev_height >= version {
            return Ok((links, true));
        }
        version = prev_height;
    }
}

/// A namespace watch's `synced` proof at certified height `certified`, for
/// a batch that started at `from`: the proven head and, when they fit in
/// `budget` bytes, the links down to `from`.
pub(crate) fn namespace_changes(
    ctx: &Context,
    namespace: &str,
    certified: u64,
    from: u64,
    budget: usize,
) -> Result<NamespaceChanges, ApiErr> {
    let (value, proof) = StateReader::at(&ctx.store, certified)
        .prove(&log_key(namespace))
        .map_err(state_err)?;
    let (links, complete) = change_links(ctx, namespace, certified, from, budget)?;
    Ok(NamespaceChanges {
        value: value.map(Hex::from_bytes),
        proof: Hex::new(&proof),
        links: complete.then_some(links),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangesQuery {
    height: u64,
    from_height: u64,
}

/// `GET /v1/namespaces/{namespace}/changes?height=H&from_height=L`.
pub(crate) async fn changes(
    State(ctx): State<Arc<Context>>,
    Path(namespace): Path<String>,
    query: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ChangesResponse>, ApiErr> {
    let Query(q) = query.map_err(|e| ApiErr::bad("bad_query", e.body_text()))?;
    check_name("namespace", &namespace)?;
    let (certified, _) = super::query::certified(&ctx)?;
    if q.height > certified {
        return Err(ApiErr::not_found(
            "not_certified",
            format!("height {} is above the certified {certified}", q.height),
        ));
    }
    let links = tokio::task::spawn_blocking(move || {
        change_links(&ctx, &namespace, q.height, q.from_height, MAX_ANSWER_BYTES)
    })
    .await
    .map_err(state_err)??
    .0;
    Ok(Json(ChangesResponse { links }))
}
