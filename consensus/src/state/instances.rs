//! Mutations of the instance set, shared by transactions and lease expiry.
//!
//! These run only after a transaction's checks passed (or for expiry), so
//! they never reject; they keep every derived structure in step: the
//! service leaf (instances sorted by id), the namespace leaf (services
//! sorted), the namespace directory, the owner index (the identity's
//! count and one page), the live count of the expiry bookkeeping and the lease delta.

use palisade_crypto::{InstanceRecord, NamespaceRecord, PublicKey};

use super::apply::BlockEnv;
use super::error::StateError;
use super::records::InstanceRef;
use super::working::WorkingSet;

/// Insert or replace an instance, creating its service, namespace and
/// directory entries and the owner index entry as needed.
pub(crate) fn put_instance(
    ws: &mut WorkingSet<'_>,
    r: &InstanceRef,
    record: InstanceRecord,
) -> Result<(), StateError> {
    let owner = record.owner;
    let service_existed = ws.service(&r.namespace, &r.service)?.is_some();
    let is_new = ws.put_instance_leaf(r, record)?;
    if !service_existed {
        let mut ns = ws
            .namespace(&r.namespace)?
            .cloned()
            .unwrap_or(NamespaceRecord {
                namespace: r.namespace.clone(),
                services: Vec::new(),
            });
        if ns.services.is_empty() {
            let dir = ws.directory_mut()?;
            if let Err(pos) = dir.binary_search(&r.namespace) {
                dir.insert(pos, r.namespace.clone());
            }
        }
        if let Err(pos) = ns.services.binary_search(&r.service) {
            ns.services.insert(pos, r.service.clone());
        }
        ws.set_namespace(&r.namespace, Some(ns));
    }
    if is_new {
        if ws.identity(&owner)?.is_some() && ws.add_owned(&owner, r)? {
            if let Some(id) = ws.identity_mut(&owner)? {
                id.owned = id.owned.saturating_add(1);
            }
        }
        let mut expiry = ws.expiry()?;
        expiry.live += 1;
        ws.set_expiry(expiry);
    }
    Ok(())
}

/// Remove an instance (which must exist), its lease, and, when it was the
/// last, its service and namespace entries; `update_owner` drops it from the
/// owner index too (a revocation clears the whole index itself).
pub(crate) fn remove_instance(
    ws: &mut WorkingSet<'_>,
    r: &InstanceRef,
    owner: &PublicKey,
    update_owner: bool,
) -> Result<(), StateError> {
    let now_empty = ws.remove_instance_leaf(r)?;
    if now_empty {
        if let Some(mut ns) = ws.namespace(&r.namespace)?.cloned() {
            ns.services.retain(|s| s != &r.service);
            if ns.services.is_empty() {
                ws.set_namespace(&r.namespace, None);
                ws.directory_mut()?.retain(|n| n != &r.namespace);
            } else {
                ws.set_namespace(&r.namespace, Some(ns));
            }
        }
    }
    if update_owner && ws.remove_owned(owner, r)? {
        if let Some(id) = ws.identity_mut(owner)? {
            id.owned = id.owned.saturating_sub(1);
        }
    }
    let mut expiry = ws.expiry()?;
    expiry.live = expiry.live.saturating_sub(1);
    ws.set_expiry(expiry);
    ws.set_lease(r.clone(), None);
    Ok(())
}

/// Renew an instance's lease from block time; returns the new deadline.
pub(crate) fn renew(
    ws: &mut WorkingSet<'_>,
    env: &BlockEnv<'_>,
    r: &InstanceRef,
) -> Result<u64, StateError> {
    let mut deadline = env.now_ms;
    if let Some(inst) = ws.instance(r)?.cloned() {
        deadline = env.now_ms.saturating_add(inst.ttl_secs as u64 * 1000);
        ws.put_instance_leaf(
            r,
            InstanceRecord {
                lease_expires_at_ms: deadline,
                ..inst
            },
        )?;
    }
    Ok(deadline)
}
