//! Executing one block (and the genesis) into a jmt write batch.
//!
//! Order inside a block: lease expiry at the block's timestamp (bounded, see
//! [`super::lease`]), then the transactions in payload order, then one
//! `put_value_set` of every changed record at version = height, with the
//! next link of each changed namespace's change chain. The result is
//! a pure function of the parent's state, the lease index, the block's height,
//! epoch and timestamp, and the payload.

use std::collections::BTreeMap;

use jmt::storage::TreeUpdateBatch;
use jmt::JellyfishMerkleTree;
use palisade_crypto::{
    changed_services, decode, encode, state_key_hash, Digest, JmtHasher, NamespaceLink,
    SignedTransaction, StateKey, ValidatorSet,
};

use super::apply::{apply_tx, BlockEnv, Verdict};
use super::error::StateError;
use super::genesis::{Authority, Genesis, LeaseMode, Params};
use super::instances::remove_instance;
use super::lease::{window_budget, LeaseDelta, LeaseView};
use super::receipts::{BlockReceipts, TxReceipt};
use super::records::{system, system_key, ChainRecord, ExpiryState, IdentityRecord};
use super::store::BranchReader;
use super::working::WorkingSet;
use crate::hotstuff::SignatureVerifier;

/// Everything a block's execution produced.
pub(crate) struct BlockOutput {
    pub(crate) state_root: Digest,
    pub(crate) batch: TreeUpdateBatch,
    pub(crate) leases: LeaseDelta,
    pub(crate) receipts: BlockReceipts,
    pub(crate) next_validators: Option<ValidatorSet>,
    pub(crate) changed: Vec<StateKey>,
}

/// Apply `writes` on top of `reader` as tree version `version`.
pub(crate) fn put_writes(
    reader: &BranchReader<'_>,
    version: u64,
    writes: BTreeMap<StateKey, Option<Vec<u8>>>,
) -> Result<(Digest, TreeUpdateBatch, Vec<StateKey>), StateError> {
    let mut changed = Vec::with_capacity(writes.len());
    let mut set = Vec::with_capacity(writes.len());
    for (key, value) in writes {
        set.push((state_key_hash(&key), value));
        changed.push(key);
    }
    let tree = JellyfishMerkleTree::<_, JmtHasher>::new(reader);
    let (root, batch) = tree
        .put_value_set(set, version)
        .map_err(|e| StateError::Tree(format!("{e:#}")))?;
    Ok((Digest(root.0), batch, changed))
}

/// Add to `writes` the next link of the change chain of every namespace
/// whose services `writes` change ([`NamespaceLink`]): one fixed-size leaf
/// per changed namespace per block, however many changes it holds.
fn chain_namespace_changes(
    reader: &BranchReader<'_>,
    height: u64,
    writes: &mut BTreeMap<StateKey, Option<Vec<u8>>>,
) -> Result<(), StateError> {
    for (namespace, services) in changed_services(writes.keys()) {
        let key = StateKey::NamespaceLog {
            namespace: namespace.clone(),
        };
        let prev: Option<NamespaceLink> = match reader.value(height - 1, state_key_hash(&key))? {
            None => None,
            Some(bytes) => Some(decode(&bytes).map_err(|e| StateError::Corrupt {
                key: format!("{key:?}"),
                reason: e.to_string(),
            })?),
        };
        let link = NamespaceLink::next(prev.as_ref(), &namespace, height, &services);
        writes.insert(key, Some(encode(&link)));
    }
    Ok(())
}

/// Expire due leases under the mass-expiry bound.
fn expire(
    ws: &mut WorkingSet<'_>,
    env: &BlockEnv<'_>,
    view: &LeaseView<'_>,
) -> Result<(), StateError> {
    let p = env.params;
    let mut state = ws.expiry()?;
    if env.now_ms >= state.window_start_ms.saturating_add(p.expiry_window_ms) {
        state.window_start_ms = env.now_ms;
        state.window_budget =
            window_budget(state.live, p.max_expiry_permille, p.min_expiry_per_window);
        state.expired_in_window = 0;
        ws.set_expiry(state.clone());
    }
    if p.lease_mode == LeaseMode::Attested {
        // Leases run out on silence reports (`super::silence`), which
        // spend this window's budget; block time alone expires nothing.
        return Ok(());
    }
    let remaining = state.window_budget.saturating_sub(state.expired_in_window) as usize;
    let due = view.due(env.now_ms, remaining.saturating_add(1));
    if due.len() > remaining {
        tracing::warn!(
            height = env.height,
            budget = state.window_budget,
            "mass-expiry bound reached: overdue instances stay until the next window"
        );
    }
    let mut expired = 0u64;
    for (deadline, r) in due.into_iter().take(remaining) {
        let owner = ws
            .instance(&r)?
            .filter(|i| i.lease_expires_at_ms == deadline)
            .map(|i| i.owner);
        let owner = owner.ok_or_else(|| StateError::Corrupt {
            key: format!("{}/{}/{}", r.namespace, r.service, r.instance),
            reason: format!("lease index names deadline {deadline} the record does not hold"),
        })?;
        remove_instance(ws, &r, &owner, true)?;
        expired += 1;
    }
    if expired > 0 {
        tracing::debug!(height = env.height, expired, "leases expired");
        let mut state = ws.expiry()?;
        state.expired_in_window += expired;
        ws.set_expiry(state);
    }
    Ok(())
}

/// The chain-wide constants a block runs under.
pub(crate) struct Chain<'a> {
    pub(crate) chain_id: &'a str,
    pub(crate) genesis_hash: Digest,
    pub(crate) params: &'a Params,
    pub(crate) authority: &'a Authority,
    pub(crate) verifier: &'a dyn SignatureVerifier,
}

/// Execute `txs` (with their encoded sizes) as the block at `height`, `epoch`
/// and `now_ms` over the parent's state (version `height - 1`).
pub(crate) fn execute_block(
    reader: &BranchReader<'_>,
    leases: &LeaseView<'_>,
    chain: &Chain<'_>,
    (height, epoch, now_ms): (u64, u64, u64),
    txs: &[(SignedTransaction, usize)],
) -> Result<BlockOutput, StateError> {
    let mut ws = WorkingSet::new(reader, Some(height - 1));
    let validators = ws.validators()?;
    let mut env = BlockEnv {
        chain_id: chain.chain_id,
        genesis_hash: chain.genesis_hash,
        params: chain.params,
        authority: chain.authority,
        verifier: chain.verifier,
        height,
        epoch,
        now_ms,
        validators,
        next_validators: None,
    };
    expire(&mut ws, &env, leases)?;
    let mut receipts = Vec::with_capacity(txs.len());
    let mut inadmissible = Vec::new();
    let mut first_reason = None;
    for (index, (stx, size)) in txs.iter().enumerate() {
        match apply_tx(&mut ws, &mut env, stx, *size)? {
            Verdict::Applied(outcome) => receipts.push(TxReceipt {
                tx_id: stx.id(),
                height: env.height,
                index: index as u32,
                outcome,
            }),
            Verdict::Inadmissible(why) => {
                inadmissible.push(stx.id());
                first_reason.get_or_insert(why);
            }
        }
    }
    if let Some(reason) = first_reason {
        return Err(StateError::Inadmissible {
            tx_ids: inadmissible,
            reason,
        });
    }
    let (mut writes, lease_delta) = ws.into_writes();
    chain_namespace_changes(reader, env.height, &mut writes)?;
    let (state_root, batch, changed) = put_writes(reader, env.height, writes)?;
    Ok(BlockOutput {
        state_root,
        batch,
        leases: lease_delta,
        receipts: BlockReceipts::new(env.height, receipts),
        next_validators: env.next_validators,
        changed,
    })
}

/// The state of version 0.
pub(crate) fn genesis_state(
    reader: &BranchReader<'_>,
    genesis: &Genesis,
) -> Result<BlockOutput, StateError> {
    let mut ws = WorkingSet::new(reader, None);
    ws.put_raw(
        system_key(system::CHAIN),
        &ChainRecord {
            chain_id: genesis.chain_id.clone(),
            genesis_hash: genesis.hash(),
        },
    );
    ws.put_raw(system_key(system::PARAMS), &genesis.params);
    if genesis.params.lease_mode != LeaseMode::BlockTime {
        ws.put_raw(system_key(system::LEASE_MODE), &genesis.params.lease_mode);
    }
    ws.put_raw(system_key(system::AUTHORITY), &genesis.authority);
    ws.set_validators(genesis.validators.clone());
    let p = &genesis.params;
    ws.set_expiry(ExpiryState {
        live: 0,
        window_start_ms: genesis.genesis_time_ms,
        window_budget: window_budget(0, p.max_expiry_permille, p.min_expiry_per_window),
        expired_in_window: 0,
    });
    ws.directory_mut()?;
    for e in &genesis.enrollments {
        let mut namespaces = e.namespaces.clone();
        namespaces.sort();
        ws.set_identity(
            &e.identity,
            IdentityRecord {
                namespaces,
                role: e.role,
                enrolled_at: 0,
                revoked_at: None,
                owned: 0,
            },
        );
    }
    let (writes, leases) = ws.into_writes();
    let (state_root, batch, changed) = put_writes(reader, 0, writes)?;
    debug_assert!(leases.is_empty());
    Ok(BlockOutput {
        state_root,
        batch,
        leases,
        receipts: BlockReceipts::new(0, Vec::new()),
        next_validators: None,
        changed,
    })
}

/// Size of a transaction's canonical encoding.
pub(crate) fn encoded_len(stx: &SignedTransaction) -> usize {
    // Counted without building the encoding (a count cannot fail).
    borsh::object_length(stx).unwrap_or_else(|_| encode(stx).len())
}
