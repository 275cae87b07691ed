//! Provable reads: services, namespaces, epochs, blocks; and status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use palisade_consensus::state::StateReader;
use palisade_crypto::api::{
    BlockResponse, CertificateView, EpochsResponse, LookupResponse, NamespaceResponse,
    StatusResponse, TxView,
};
use palisade_crypto::{
    decode, encode, CommitCertificate, Digest, Hex, InstanceRecord, NamespaceRecord, ServiceLookup,
    ServiceProof, ServiceRecord, SignedTransaction, TxBody,
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

/// Whether a lookup answer carries the decoded, unverified `record` beside
/// the proof material (it is for people; a verifying client reads the
/// instances from the proof and asks `?record=false`, which halves the
/// answer: 37 of 69 KB for a service of 100 instances).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    Included,
    Omitted,
}

#[derive(Deserialize)]
pub(crate) struct LookupQuery {
    #[serde(default = "included")]
    record: bool,
}

fn included() -> bool {
    true
}

/// Most bytes of instance records [`LookupCache`] keeps.
const MAX_CACHED_BYTES: usize = 32 << 20;
/// Most services it keeps.
const MAX_CACHED_SERVICES: usize = 8192;

/// The instance records of services served lately, with the exact index
/// bytes that list them: a lookup whose index is unchanged takes them from
/// here instead of one store read per instance
/// ([`StateReader::service_reusing`]; the index lists each record's hash,
/// so equal index bytes name equal records). Bounded in bytes and services;
/// emptied when full.
#[derive(Default)]
pub(crate) struct LookupCache {
    inner: Mutex<CachedServices>,
}

#[derive(Default)]
struct CachedServices {
    map: HashMap<String, Arc<Known>>,
    bytes: usize,
}

struct Known {
    index: Vec<u8>,
    records: Vec<Vec<u8>>,
}

impl Known {
    fn size(&self) -> usize {
        self.index.len() + self.records.iter().map(|r| r.len() + 24).sum::<usize>() + 64
    }
}

impl LookupCache {
    fn key(namespace: &str, service: &str) -> String {
        // Names never hold '/' (`check_name`, the state's name rules).
        format!("{namespace}/{service}")
    }

    fn get(&self, namespace: &str, service: &str) -> Option<Arc<Known>> {
        let inner = self.inner.lock().expect("lookup cache lock");
        inner.map.get(&Self::key(namespace, service)).cloned()
    }

    fn put(&self, namespace: &str, service: &str, known: Known) {
        let size = known.size();
        if size > MAX_CACHED_BYTES / 8 {
            return;
        }
        let mut inner = self.inner.lock().expect("lookup cache lock");
        let key = Self::key(namespace, service);
        if let Some(old) = inner.map.remove(&key) {
            inner.bytes -= old.size();
        }
        if inner.bytes + size > MAX_CACHED_BYTES || inner.map.len() >= MAX_CACHED_SERVICES {
            inner.map.clear();
            inner.bytes = 0;
        }
        inner.bytes += size;
        inner.map.insert(key, Arc::new(known));
    }
}

/// A service lookup at certified height `height` (with `cache`, unchanged
/// services' records come from it).
pub(crate) fn lookup_at(
    ctx: &Context,
    height: u64,
    cert: &CommitCertificate,
    namespace: &str,
    service: &str,
    record: Record,
    cache: Option<&LookupCache>,
) -> Result<LookupResponse, ApiErr> {
    let reader = StateReader::at(&ctx.store, height);
    let proof = match cache {
        None => reader.service(namespace, service),
        Some(cache) => {
            let known = cache.get(namespace, service);
            let proof = reader.service_reusing(
                namespace,
                service,
                known.as_deref().map(|k| (&k.index[..], &k.records[..])),
            );
            if let Ok(ServiceProof {
                lookup: ServiceLookup {
                    value: Some(index), ..
                },
                instances,
            }) = &proof
            {
                if known.as_ref().is_none_or(|k| k.index != *index) {
                    cache.put(
                        namespace,
                        service,
                        Known {
                            index: index.clone(),
                            records: instances.clone(),
                        },
                    );
                }
            }
            proof
        }
    }
    .map_err(state_err)?;
    let forge = ctx.byzantine.has(crate::ByzantineMode::ForgeLookups);
    let mut encoded = proof.instances;
    let mut instances: Vec<InstanceRecord> = Vec::new();
    if record == Record::Included || forge {
        instances = encoded
            .iter()
            .map(|bytes| decode(bytes))
            .collect::<Result<_, _>>()
            .map_err(state_err)?;
    }
    if forge {
        // Byzantine test mode: move every endpoint, keep the honest proof.
        for i in &mut instances {
            for e in &mut i.endpoints {
                e.port = e.port.wrapping_add(1);
            }
        }
        encoded = instances.iter().map(encode).collect();
    }
    let record = match record {
        Record::Included => proof.lookup.value.as_ref().map(|_| ServiceRecord {
            namespace: namespace.to_string(),
            service: service.to_string(),
            instances,
        }),
        Record::Omitted => None,
    };
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
    Extension(cache): Extension<Arc<LookupCache>>,
    Path((namespace, service)): Path<(String, String)>,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LookupResponse>, ApiErr> {
    let Query(q) = query.map_err(|e| ApiErr::bad("bad_query", e.body_text()))?;
    check_name("namespace", &namespace)?;
    check_name("service", &service)?;
    let (height, cert) = certified(&ctx)?;
    let record = if q.record {
        Record::Included
    } else {
        Record::Omitted
    };
    Ok(Json(lookup_at(
        &ctx,
        height,
        &cert,
        &namespace,
        &service,
        record,
        Some(&cache),
    )?))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn known(index: u8, records: usize, size: usize) -> Known {
        Known {
            index: vec![index; 16],
            records: vec![vec![index; size]; records],
        }
    }

    #[test]
    fn the_lookup_cache_keeps_the_newest_index_and_stays_bounded() {
        let cache = LookupCache::default();
        assert!(cache.get("ns", "a").is_none());
        cache.put("ns", "a", known(1, 2, 10));
        cache.put("ns", "a", known(2, 3, 10));
        let got = cache.get("ns", "a").unwrap();
        assert_eq!((got.index[0], got.records.len()), (2, 3));
        assert!(cache.get("ns", "b").is_none(), "keyed by service");
        // Replacing an entry does not count its old size twice.
        let bytes = cache.inner.lock().unwrap().bytes;
        assert_eq!(bytes, known(2, 3, 10).size());
        // A service too large for an eighth of the bound is not kept.
        cache.put("ns", "big", known(3, 1, MAX_CACHED_BYTES / 8));
        assert!(cache.get("ns", "big").is_none());
        // The bound in bytes empties the cache rather than growing past it.
        for i in 0..12 {
            cache.put("ns", &format!("s{i}"), known(4, 1, MAX_CACHED_BYTES / 10));
            assert!(cache.inner.lock().unwrap().bytes <= MAX_CACHED_BYTES);
        }
        assert!(cache.get("ns", "a").is_none(), "emptied when full");
        // So does the bound in services.
        let cache = LookupCache::default();
        for i in 0..MAX_CACHED_SERVICES + 1 {
            cache.put("ns", &format!("s{i}"), known(5, 0, 0));
        }
        assert!(cache.inner.lock().unwrap().map.len() <= MAX_CACHED_SERVICES);
    }
}
