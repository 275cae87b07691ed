//! Transaction handlers.
//!
//! Checks run in a fixed order, so every replica names the same reason:
//! 1. encoded size (`max_tx_bytes`), cosignature count (authority acts take at
//!    most one per authority member, other transactions none);
//! 2. chain id and every signature (`SignedTransaction::verify`, i.e.
//!    `verify_strict` with weak keys refused; never batch verification, whose
//!    verdict is not the strict one); then who may sign it at all
//!    ([`authorize`], against the state before the transaction).
//!    **Steps 1 and 2 are the admission rule:** a transaction failing them
//!    is no receipt's matter but makes its block invalid (voters refuse it,
//!    the leader drops it and proposes again), so outsiders, bad signatures
//!    and unauthorized signers never reach the chain; nodes refuse the same
//!    transactions at admission with the same rule, against committed state;
//! 3. sequence (a block breaking it is invalid, like one breaking
//!    admission): `next <= sequence <= next + MAX_SEQUENCE_STEP` for the
//!    signer, then `next = sequence + 1` (replays and reorderings are
//!    refused; bounded gaps are allowed so that a transaction lost before
//!    its block does not wedge the ones its signer already sent; the bound
//!    stops anyone steering the account to the end of the sequence space).
//!    From here on the transaction **consumes its sequence** whether its body
//!    is applied or rejected, so a signer has at most one transaction per
//!    sequence in the chain (issue 13: rejections are not free);
//! 4. body validation, ownership and limits (per handler);
//! 5. mutation.
//!
//! **Atomicity.** Every handler finishes all its checks before its first
//! mutation of the working set; a rejection therefore changes nothing but
//! the signer's sequence (step 3). Only storage failures can interrupt a
//! mutation, and they abort the whole block.
//!
//! **Authority.** Enroll, Revoke and ChangeValidators need the enrollment
//! authority: the signer and every cosigner must be members, and at least
//! `threshold` distinct members must have signed.
//!
//! **Namespaces and ownership.** An identity writes only in namespaces it is
//! enrolled in and only while not revoked. An instance belongs to the identity
//! that first registered it; only that owner or an `Admin` of the namespace may
//! re-register, renew or deregister it (an admin's re-registration keeps the
//! owner and the health verdict).
//!
//! **Revocation** removes, in the same transaction, every instance the identity
//! owns (its owner index lists them in `OWNER_PAGES` pages of
//! `StateKey::OwnerPage`, at most `max_instances_per_identity` in all). A revoked key is presumed compromised: its
//! endpoints may point at hosts the attacker controls, so they must leave
//! discovery at once, provably (the service leaves no longer hold them), not
//! when their leases run out. The identity record stays, marked revoked, so
//! clients can prove the revocation; the authority may enroll the key again.
//!
//! **Health.** An instance's `health` flips only when validators holding at
//! least `validity_power` (f+1) of the current set's power report the opposite
//! verdict: `dissenting_reporters` lists the validators whose latest report
//! disagrees with the current verdict; a report that agrees removes its
//! reporter. No single lying validator can evict or resurrect an instance.

use palisade_crypto::{
    Enrollment, Health, InstanceRecord, PublicKey, Registration, Role, SignedTransaction, TxBody,
    Validator, ValidatorSet, MAX_SEQUENCE_STEP,
};

use super::error::{StateError, TxRejection};
use super::genesis::{Authority, Params};
use super::instances::{put_instance, remove_instance, renew};
use super::receipts::TxOutcome;
use super::records::{IdentityRecord, InstanceRef};
use super::silence;
use super::validate;
use super::working::WorkingSet;
use crate::hotstuff::SignatureVerifier;

/// What a block's transactions run against.
pub(crate) struct BlockEnv<'a> {
    pub(crate) chain_id: &'a str,
    /// What every transaction must name besides the chain id.
    pub(crate) genesis_hash: palisade_crypto::Digest,
    pub(crate) params: &'a Params,
    pub(crate) authority: &'a Authority,
    /// Gives the strict verdict on every signature (a node's cache
    /// remembers only signatures that passed `verify_strict`).
    pub(crate) verifier: &'a dyn SignatureVerifier,
    pub(crate) height: u64,
    pub(crate) epoch: u64,
    pub(crate) now_ms: u64,
    /// The validator set stored at the start of the block (health reporters).
    pub(crate) validators: ValidatorSet,
    /// Set by an applied ChangeValidators.
    pub(crate) next_validators: Option<ValidatorSet>,
}

enum Fail {
    Reject(TxRejection),
    /// Fails the admission rule (size, cosignatures, signatures, who may
    /// sign): no block may carry it.
    Inadmissible(TxRejection),
    State(StateError),
}

/// What became of one transaction of a block.
pub(crate) enum Verdict {
    /// Applied.
    Applied(TxOutcome),
    /// Breaks the admission rule: the block carrying it is invalid.
    Inadmissible(TxRejection),
}

impl From<TxRejection> for Fail {
    fn from(r: TxRejection) -> Self {
        Fail::Reject(r)
    }
}

impl From<StateError> for Fail {
    fn from(e: StateError) -> Self {
        Fail::State(e)
    }
}

/// Apply one transaction of `size` encoded bytes. `Err` only for failures that
/// are no transaction's fault.
pub(crate) fn apply_tx(
    ws: &mut WorkingSet<'_>,
    env: &mut BlockEnv<'_>,
    stx: &SignedTransaction,
    size: usize,
) -> Result<Verdict, StateError> {
    match apply_inner(ws, env, stx, size) {
        Ok(()) => Ok(Verdict::Applied(TxOutcome::Applied)),
        Err(Fail::Reject(r)) => Ok(Verdict::Applied(TxOutcome::Rejected(r))),
        Err(Fail::Inadmissible(r)) => Ok(Verdict::Inadmissible(r)),
        Err(Fail::State(e)) => Err(e),
    }
}

/// The cosignature count rule: authority acts take at most one cosignature
/// per authority member, other transactions none. Checked before any
/// signature is verified.
pub(crate) fn cosignature_count(
    stx: &SignedTransaction,
    authority: &Authority,
) -> Result<(), TxRejection> {
    let cosigs = stx.cosignatures.len() as u64;
    if is_authority_act(&stx.tx.body) {
        let members = authority.members.len() as u64;
        if cosigs > members {
            return Err(TxRejection::TooManyCosignatures {
                count: cosigs,
                members,
            });
        }
    } else if cosigs > 0 {
        return Err(TxRejection::UnexpectedCosignatures { count: cosigs });
    }
    Ok(())
}

/// Who may sign what, decided by the state before the transaction: authority
/// acts need `threshold` distinct members among `signers` (all members);
/// writes (register, deregister, heartbeat) an identity enrolled, unrevoked,
/// in the namespace; health reports a validator of `validators`. `signers`
/// are the verified signer and cosigners; `identity` the signer's record.
///
/// This is the one authorization rule: the state machine applies it to every
/// transaction of a block, and node admission to committed state
/// ([`super::StateReader::admissible`]).
pub(crate) fn authorize(
    stx: &SignedTransaction,
    signers: &[PublicKey],
    authority: &Authority,
    validators: &ValidatorSet,
    identity: Option<&IdentityRecord>,
) -> Result<(), TxRejection> {
    let signer = &stx.tx.signer;
    match &stx.tx.body {
        TxBody::Enroll(_) | TxBody::Revoke { .. } | TxBody::ChangeValidators { .. } => {
            check_authority(authority, signers)
        }
        TxBody::Register(Registration { namespace, .. })
        | TxBody::Deregister { namespace, .. }
        | TxBody::Heartbeat { namespace, .. } => may_write(identity, signer, namespace),
        TxBody::HealthReport { .. } | TxBody::ExpireSilent { .. } => {
            match validators.power_of(signer) {
                Some(_) => Ok(()),
                None => Err(TxRejection::NotValidator(*signer)),
            }
        }
    }
}

/// Whether the identity `id` of `signer` may write in `namespace`.
fn may_write(
    id: Option<&IdentityRecord>,
    signer: &PublicKey,
    namespace: &str,
) -> Result<(), TxRejection> {
    let id = id.ok_or(TxRejection::NotEnrolled(*signer))?;
    if id.revoked_at.is_some() {
        return Err(TxRejection::Revoked(*signer));
    }
    if !id.may_write(namespace) {
        return Err(TxRejection::NamespaceNotPermitted {
            namespace: namespace.to_string(),
        });
    }
    Ok(())
}

fn is_authority_act(body: &TxBody) -> bool {
    matches!(
        body,
        TxBody::Enroll(_) | TxBody::Revoke { .. } | TxBody::ChangeValidators { .. }
    )
}

fn apply_inner(
    ws: &mut WorkingSet<'_>,
    env: &mut BlockEnv<'_>,
    stx: &SignedTransaction,
    size: usize,
) -> Result<(), Fail> {
    let inadmissible = Fail::Inadmissible;
    if size > env.params.max_tx_bytes as usize {
        return Err(inadmissible(TxRejection::TooLarge {
            size: size as u64,
            max: env.params.max_tx_bytes as u64,
        }));
    }
    cosignature_count(stx, env.authority).map_err(inadmissible)?;
    let verifier = env.verifier;
    let (_, signers) = stx
        .verify_with(env.chain_id, &env.genesis_hash, |k, d, s| {
            verifier.verify(k, d, s)
        })
        .map_err(|e| inadmissible(e.into()))?;
    let signer = stx.tx.signer;
    let identity = ws.identity(&signer)?;
    authorize(stx, &signers, env.authority, &env.validators, identity).map_err(inadmissible)?;
    let sequence = stx.tx.sequence;
    // Every sequence rule makes the block invalid rather than earning a
    // rejected receipt: a transaction in the chain always consumes its
    // sequence (below), so one that could not consume it may not be there,
    // or a signer could fill blocks with such rejections for free.
    if sequence == u64::MAX {
        return Err(inadmissible(TxRejection::SequenceExhausted));
    }
    let next = ws.next_sequence(&signer)?;
    // A sequence already used (a replay, or a second copy of one
    // transaction in one block) makes the block invalid, like a bad
    // signature: as a rejected receipt it would give one transaction id two
    // certified outcomes (applied, then "stale"), and a client shown the
    // second would believe an applied act was refused. Decided on the state
    // the block has built so far, so every replica decides the same.
    if sequence < next {
        return Err(inadmissible(TxRejection::StaleSequence {
            got: sequence,
            next,
        }));
    }
    let max = next.saturating_add(MAX_SEQUENCE_STEP);
    if sequence > max {
        return Err(inadmissible(TxRejection::SequenceTooFar {
            got: sequence,
            next,
            max,
        }));
    }
    // A signature-valid, correctly sequenced transaction consumes its
    // sequence whatever its body's verdict: a rejection still takes a slot
    // in the chain, so one signer puts at most one transaction per sequence
    // into it and cannot fill blocks with rejections of one sequence forever.
    // Handlers check everything before their first mutation, so a rejected
    // body changed nothing before this.
    let verdict = apply_body(ws, env, &signer, &stx.tx.body);
    if matches!(verdict, Ok(()) | Err(Fail::Reject(_))) {
        ws.set_next_sequence(&signer, sequence + 1);
    }
    verdict
}

/// Step 4 and 5: the body's own checks, then its mutation.
fn apply_body(
    ws: &mut WorkingSet<'_>,
    env: &mut BlockEnv<'_>,
    signer: &PublicKey,
    body: &TxBody,
) -> Result<(), Fail> {
    match body {
        TxBody::Enroll(e) => enroll(ws, env, e)?,
        TxBody::Revoke { identity } => revoke(ws, env, identity)?,
        TxBody::Register(reg) => register(ws, env, signer, reg)?,
        TxBody::Deregister {
            namespace,
            service,
            instance,
        } => {
            let r = instance_ref(namespace, service, instance);
            let rec = owned_instance(ws, signer, &r)?;
            remove_instance(ws, &r, &rec.owner, true)?;
        }
        TxBody::Heartbeat {
            namespace,
            service,
            instance,
        } => {
            let r = instance_ref(namespace, service, instance);
            owned_instance(ws, signer, &r)?;
            let deadline = renew(ws, env, &r)?;
            ws.set_lease(r, Some(deadline));
        }
        TxBody::HealthReport {
            namespace,
            service,
            instance,
            passing,
        } => {
            let r = instance_ref(namespace, service, instance);
            health_report(ws, env, signer, &r, *passing)?;
        }
        TxBody::ChangeValidators { validators } => change_validators(ws, env, validators)?,
        TxBody::ExpireSilent { reports } => {
            let tally = silence::check_reports(env, reports)?;
            silence::expire_reported(ws, env, tally)?;
        }
    }
    Ok(())
}

fn instance_ref(namespace: &str, service: &str, instance: &str) -> InstanceRef {
    InstanceRef {
        namespace: namespace.to_string(),
        service: service.to_string(),
        instance: instance.to_string(),
    }
}

fn check_authority(authority: &Authority, signers: &[PublicKey]) -> Result<(), TxRejection> {
    if let Some(outsider) = signers.iter().find(|k| !authority.members.contains(k)) {
        return Err(TxRejection::NotAuthority(*outsider));
    }
    if (signers.len() as u64) < authority.threshold as u64 {
        return Err(TxRejection::BelowThreshold {
            got: signers.len() as u64,
            needed: authority.threshold as u64,
        });
    }
    Ok(())
}

/// What a writer's identity says: its role and how many instances it owns.
struct Writer {
    role: Role,
    owned: usize,
}

/// The signer's role and owned-instance count, if it may write in
/// `namespace`.
fn writer(ws: &mut WorkingSet<'_>, signer: &PublicKey, namespace: &str) -> Result<Writer, Fail> {
    let id = ws.identity(signer)?;
    may_write(id, signer, namespace)?;
    let id = id.expect("may_write refuses a missing identity");
    Ok(Writer {
        role: id.role,
        owned: id.owned as usize,
    })
}

fn find_instance(
    ws: &mut WorkingSet<'_>,
    r: &InstanceRef,
) -> Result<Option<InstanceRecord>, StateError> {
    Ok(ws.instance(r)?.cloned())
}

fn unknown(r: &InstanceRef) -> TxRejection {
    TxRejection::UnknownInstance {
        namespace: r.namespace.clone(),
        service: r.service.clone(),
        instance: r.instance.clone(),
    }
}

/// The instance, if the signer may change it (owner, or admin of the namespace).
fn owned_instance(
    ws: &mut WorkingSet<'_>,
    signer: &PublicKey,
    r: &InstanceRef,
) -> Result<InstanceRecord, Fail> {
    let id = writer(ws, signer, &r.namespace)?;
    let rec = find_instance(ws, r)?.ok_or_else(|| unknown(r))?;
    if rec.owner != *signer && id.role != Role::Admin {
        return Err(TxRejection::NotOwner {
            instance: r.instance.clone(),
            owner: rec.owner,
        }
        .into());
    }
    Ok(rec)
}

fn enroll(ws: &mut WorkingSet<'_>, env: &BlockEnv<'_>, e: &Enrollment) -> Result<(), Fail> {
    validate::enrollment(e, env.params)?;
    let mut namespaces = e.namespaces.clone();
    namespaces.sort();
    // A re-enrollment keeps what the identity owns (its owner index pages
    // are untouched).
    let owned = ws.identity(&e.identity)?.map_or(0, |old| old.owned);
    ws.set_identity(
        &e.identity,
        IdentityRecord {
            namespaces,
            role: e.role,
            enrolled_at: env.height,
            revoked_at: None,
            owned,
        },
    );
    Ok(())
}

fn revoke(ws: &mut WorkingSet<'_>, env: &BlockEnv<'_>, identity: &PublicKey) -> Result<(), Fail> {
    let id = ws
        .identity(identity)?
        .ok_or(TxRejection::UnknownIdentity(*identity))?
        .clone();
    if id.revoked_at.is_some() {
        return Err(TxRejection::Revoked(*identity).into());
    }
    for r in ws.take_owned(identity)? {
        remove_instance(ws, &r, identity, false)?;
    }
    ws.set_identity(
        identity,
        IdentityRecord {
            revoked_at: Some(env.height),
            owned: 0,
            ..id
        },
    );
    Ok(())
}

fn register(
    ws: &mut WorkingSet<'_>,
    env: &BlockEnv<'_>,
    signer: &PublicKey,
    reg: &Registration,
) -> Result<(), Fail> {
    let id = writer(ws, signer, &reg.namespace)?;
    validate::registration(reg, env.params)?;
    let r = instance_ref(&reg.namespace, &reg.service, &reg.instance);
    let existing = find_instance(ws, &r)?;
    if let Some(old) = &existing {
        if old.owner != *signer && id.role != Role::Admin {
            return Err(TxRejection::NotOwner {
                instance: r.instance.clone(),
                owner: old.owner,
            }
            .into());
        }
    } else {
        let p = env.params;
        let count = ws
            .service(&r.namespace, &r.service)?
            .map_or(0, |s| s.instances.len());
        if count >= p.max_instances_per_service as usize {
            return Err(TxRejection::ServiceFull {
                max: p.max_instances_per_service as u64,
            }
            .into());
        }
        if count == 0 {
            let services = ws.namespace(&r.namespace)?.map_or(0, |n| n.services.len());
            if services >= p.max_services_per_namespace as usize {
                return Err(TxRejection::NamespaceFull {
                    max: p.max_services_per_namespace as u64,
                }
                .into());
            }
            if services == 0 {
                let namespaces = ws.directory_len()?;
                if namespaces >= p.max_namespaces as usize {
                    return Err(TxRejection::RegistryFull {
                        max: p.max_namespaces as u64,
                    }
                    .into());
                }
            }
        }
        if id.owned >= p.max_instances_per_identity as usize {
            return Err(TxRejection::IdentityFull {
                max: p.max_instances_per_identity as u64,
            }
            .into());
        }
    }
    // Checks done; mutate.
    let mut labels = reg.labels.clone();
    labels.sort();
    let deadline = env.now_ms.saturating_add(reg.ttl_secs as u64 * 1000);
    let (owner, health, dissenting) = match existing {
        Some(old) => (old.owner, old.health, old.dissenting_reporters),
        None => (*signer, Health::Passing, Vec::new()),
    };
    let record = InstanceRecord {
        instance: reg.instance.clone(),
        owner,
        endpoints: reg.endpoints.clone(),
        labels,
        version: reg.version.clone(),
        ttl_secs: reg.ttl_secs,
        registered_at_ms: env.now_ms,
        lease_expires_at_ms: deadline,
        health,
        dissenting_reporters: dissenting,
        probe: reg.probe.clone(),
    };
    let size = palisade_crypto::encode(&record).len() as u64;
    let max = env.params.max_instance_record_bytes();
    if size > max {
        return Err(TxRejection::RecordTooLarge {
            record: "instance record".into(),
            size,
            max,
        }
        .into());
    }
    put_instance(ws, &r, record)?;
    ws.set_lease(r, Some(deadline));
    Ok(())
}

fn health_report(
    ws: &mut WorkingSet<'_>,
    env: &BlockEnv<'_>,
    signer: &PublicKey,
    r: &InstanceRef,
    passing: bool,
) -> Result<(), Fail> {
    let Some(mut inst) = find_instance(ws, r)? else {
        return Err(unknown(r).into());
    };
    let set = &env.validators;
    let reported = if passing {
        Health::Passing
    } else {
        Health::Failing
    };
    let dissent = &mut inst.dissenting_reporters;
    dissent.retain(|k| set.power_of(k).is_some());
    if reported == inst.health {
        dissent.retain(|k| k != signer);
    } else if let Err(pos) = dissent.binary_search(signer) {
        dissent.insert(pos, *signer);
    }
    let power: u64 = dissent.iter().filter_map(|k| set.power_of(k)).sum();
    if power >= set.validity_power() {
        inst.health = reported;
        inst.dissenting_reporters.clear();
    }
    ws.put_instance_leaf(r, inst)?;
    Ok(())
}

fn change_validators(
    ws: &mut WorkingSet<'_>,
    env: &mut BlockEnv<'_>,
    validators: &[Validator],
) -> Result<(), Fail> {
    let stored = ws.validators()?;
    if let Some(next) = &env.next_validators {
        return Err(TxRejection::EpochChangePending {
            pending: next.epoch,
        }
        .into());
    }
    if stored.epoch > env.epoch {
        return Err(TxRejection::EpochChangePending {
            pending: stored.epoch,
        }
        .into());
    }
    let next = ValidatorSet {
        epoch: stored.epoch + 1,
        validators: validators.to_vec(),
    };
    validate::validator_set(&next, env.params)?;
    ws.set_validators(next.clone());
    env.next_validators = Some(next);
    Ok(())
}
