//! A table of valid and invalid transactions, each applied in its own block
//! on the state the rows before it left, with the exact outcome expected. A
//! rejected row must leave the state root unchanged.

use palisade_crypto::{
    encode, Enrollment, Label, PublicKey, Role, SecretKey, SignedTransaction, Transaction, TxBody,
    Validator,
};

use super::*;

type Build = Box<dyn Fn(&mut Chain) -> SignedTransaction>;

/// What a row expects.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// A receipt with this outcome.
    Outcome(TxOutcome),
    /// The block carrying it is refused (the admission rule).
    Refused(TxRejection),
}

fn ok() -> Want {
    Want::Outcome(TxOutcome::Applied)
}
fn no(r: TxRejection) -> Want {
    Want::Outcome(TxOutcome::Rejected(r))
}
fn refused(r: TxRejection) -> Want {
    Want::Refused(r)
}

fn register(k: SecretKey, r: Registration) -> Build {
    Box::new(move |c: &mut Chain| c.tx(&k, TxBody::Register(r.clone())))
}

fn body(k: SecretKey, b: TxBody) -> Build {
    Box::new(move |c: &mut Chain| c.tx(&k, b.clone()))
}

fn authority_act(b: TxBody) -> Build {
    Box::new(move |c: &mut Chain| c.authority_tx(b.clone()))
}

fn deregister(ns: &str, svc: &str, inst: &str) -> TxBody {
    TxBody::Deregister {
        namespace: ns.into(),
        service: svc.into(),
        instance: inst.into(),
    }
}

fn report(inst: &str, passing: bool) -> TxBody {
    TxBody::HealthReport {
        namespace: "shop".into(),
        service: "web".into(),
        instance: inst.into(),
        passing,
    }
}

fn enroll(k: &SecretKey, ns: &[&str]) -> TxBody {
    TxBody::Enroll(Enrollment {
        identity: k.public(),
        namespaces: ns.iter().map(|s| s.to_string()).collect(),
        role: Role::Service,
    })
}

fn with_reg(f: impl Fn(&mut Registration)) -> Registration {
    let mut r = reg("shop", "web", "a1");
    f(&mut r);
    r
}

fn rows() -> Vec<(&'static str, Build, Want)> {
    let (a, b, dave, outsider) = (alice(), bob(), key(24), key(30));
    let auth = authority();
    let v0 = validators()[0].clone();
    let weak = PublicKey({
        let mut k = [0u8; 32];
        k[0] = 1; // the identity point: small order
        k
    });
    let unknown_a9 = TxRejection::UnknownInstance {
        namespace: "shop".into(),
        service: "web".into(),
        instance: "a9".into(),
    };
    let not_owner = TxRejection::NotOwner {
        instance: "a1".into(),
        owner: a.public(),
    };
    vec![
        (
            "register",
            register(a.clone(), reg("shop", "web", "a1")),
            ok(),
        ),
        (
            "re-register by owner",
            register(a.clone(), with_reg(|r| r.version = "1.1".into())),
            ok(),
        ),
        (
            "overwrite by another identity",
            register(b.clone(), reg("shop", "web", "a1")),
            no(not_owner.clone()),
        ),
        (
            "heartbeat by another identity",
            body(b.clone(), heartbeat("shop", "web", "a1")),
            no(not_owner.clone()),
        ),
        (
            "deregister by another identity",
            body(b.clone(), deregister("shop", "web", "a1")),
            no(not_owner),
        ),
        (
            "heartbeat by owner",
            body(a.clone(), heartbeat("shop", "web", "a1")),
            ok(),
        ),
        (
            "namespace escalation",
            register(carol(), reg("shop", "web", "c1")),
            refused(TxRejection::NamespaceNotPermitted {
                namespace: "shop".into(),
            }),
        ),
        (
            "not enrolled",
            register(outsider.clone(), reg("shop", "web", "x1")),
            refused(TxRejection::NotEnrolled(outsider.public())),
        ),
        (
            "wrong chain",
            Box::new({
                let a = a.clone();
                move |_c: &mut Chain| {
                    Transaction {
                        chain_id: "other".into(),
                        genesis_hash: genesis().hash(),
                        signer: a.public(),
                        sequence: 100,
                        body: TxBody::Register(reg("shop", "web", "a2")),
                    }
                    .sign(&a)
                }
            }),
            refused(TxRejection::WrongChain {
                got: "other".into(),
                expected: CHAIN.into(),
            }),
        ),
        (
            "signature by another key",
            Box::new({
                let (a, b) = (a.clone(), b.clone());
                move |_c: &mut Chain| {
                    let mut stx = sign(&a, 100, TxBody::Register(reg("shop", "web", "a2")));
                    stx.signature = b.sign_digest(&stx.id());
                    stx
                }
            }),
            refused(TxRejection::BadSignature(a.public())),
        ),
        (
            "replay",
            Box::new({
                let a = a.clone();
                move |_c: &mut Chain| sign(&a, 0, TxBody::Register(reg("shop", "web", "a1")))
            }),
            refused(TxRejection::StaleSequence { got: 0, next: 3 }),
        ),
        (
            "sequence u64::MAX",
            Box::new({
                let a = a.clone();
                move |_c: &mut Chain| sign(&a, u64::MAX, heartbeat("shop", "web", "a1"))
            }),
            refused(TxRejection::SequenceExhausted),
        ),
        (
            "uppercase service name",
            register(a.clone(), with_reg(|r| r.service = "Web".into())),
            no(TxRejection::InvalidName {
                field: "service".into(),
                reason: "must start with a lowercase letter or digit".into(),
            }),
        ),
        (
            "name too long",
            register(a.clone(), with_reg(|r| r.instance = "i".repeat(64))),
            no(TxRejection::InvalidName {
                field: "instance".into(),
                reason: "length 64 outside 1..=63".into(),
            }),
        ),
        (
            "ttl zero",
            register(a.clone(), with_reg(|r| r.ttl_secs = 0)),
            no(TxRejection::InvalidTtl { got: 0, max: 600 }),
        ),
        (
            "ttl above max",
            register(a.clone(), with_reg(|r| r.ttl_secs = 601)),
            no(TxRejection::InvalidTtl { got: 601, max: 600 }),
        ),
        (
            "no endpoints",
            register(a.clone(), with_reg(|r| r.endpoints.clear())),
            no(TxRejection::InvalidEndpoint {
                index: 0,
                reason: "0 endpoints, want 1..=8".into(),
            }),
        ),
        (
            "port zero",
            register(a.clone(), with_reg(|r| r.endpoints[0].port = 0)),
            no(TxRejection::InvalidEndpoint {
                index: 0,
                reason: "port 0".into(),
            }),
        ),
        (
            "duplicate label",
            register(
                a.clone(),
                with_reg(|r| {
                    r.labels.push(Label {
                        key: "zone".into(),
                        value: "b".into(),
                    })
                }),
            ),
            no(TxRejection::InvalidLabel {
                key: "zone".into(),
                reason: "duplicate key".into(),
            }),
        ),
        (
            "oversized transaction",
            register(a.clone(), with_reg(|r| r.version = "v".repeat(20_000))),
            refused(TxRejection::TooLarge {
                size: 20_233,
                max: 16_384,
            }),
        ),
        (
            "cosignature on a registration",
            Box::new({
                let (a, b) = (a.clone(), b.clone());
                move |c: &mut Chain| {
                    let mut stx = c.tx(&a, TxBody::Register(reg("shop", "web", "a2")));
                    stx.cosign(&b);
                    stx
                }
            }),
            refused(TxRejection::UnexpectedCosignatures { count: 1 }),
        ),
        (
            "enroll by a non-member",
            body(a.clone(), enroll(&dave, &["shop"])),
            refused(TxRejection::NotAuthority(a.public())),
        ),
        (
            "enroll below threshold",
            body(auth[0].clone(), enroll(&dave, &["shop"])),
            refused(TxRejection::BelowThreshold { got: 1, needed: 2 }),
        ),
        (
            "enroll cosigned by a non-member",
            Box::new({
                let (m, a) = (auth[0].clone(), a.clone());
                let d = dave.clone();
                move |c: &mut Chain| {
                    let mut stx = c.tx(&m, enroll(&d, &["shop"]));
                    stx.cosign(&a);
                    stx
                }
            }),
            refused(TxRejection::NotAuthority(a.public())),
        ),
        (
            "enroll with a duplicate cosigner",
            Box::new({
                let (m0, m1) = (auth[0].clone(), auth[1].clone());
                let d = dave.clone();
                move |c: &mut Chain| {
                    let mut stx = c.tx(&m0, enroll(&d, &["shop"]));
                    stx.cosign(&m1);
                    stx.cosign(&m1);
                    stx
                }
            }),
            refused(TxRejection::DuplicateCosigner(auth[1].public())),
        ),
        (
            "enroll with too many cosignatures",
            Box::new({
                let au = auth.clone();
                let d = dave.clone();
                move |c: &mut Chain| {
                    let mut stx = c.tx(&au[0], enroll(&d, &["shop"]));
                    for k in [&au[1], &au[2], &au[1], &au[2]] {
                        stx.cosign(k);
                    }
                    stx
                }
            }),
            refused(TxRejection::TooManyCosignatures {
                count: 4,
                members: 3,
            }),
        ),
        (
            "enroll a weak key",
            authority_act(TxBody::Enroll(Enrollment {
                identity: weak,
                namespaces: vec!["shop".into()],
                role: Role::Service,
            })),
            no(TxRejection::WeakKey(weak)),
        ),
        (
            "enroll a namespace twice",
            authority_act(enroll(&dave, &["shop", "shop"])),
            no(TxRejection::InvalidEnrollment(
                "namespace \"shop\" listed twice".into(),
            )),
        ),
        ("enroll", authority_act(enroll(&dave, &["shop"])), ok()),
        (
            "dave registers",
            register(dave.clone(), reg("shop", "web", "d1")),
            ok(),
        ),
        (
            "health report by a non-validator",
            body(a.clone(), report("a1", false)),
            refused(TxRejection::NotValidator(a.public())),
        ),
        (
            "health report on an unknown instance",
            body(v0.clone(), report("a9", false)),
            no(unknown_a9.clone()),
        ),
        ("health report", body(v0.clone(), report("a1", false)), ok()),
        (
            "admin deregisters another's instance",
            body(admin(), deregister("shop", "web", "a1")),
            ok(),
        ),
        (
            "heartbeat after deregistration",
            body(a.clone(), heartbeat("shop", "web", "a1")),
            no(TxRejection::UnknownInstance {
                namespace: "shop".into(),
                service: "web".into(),
                instance: "a1".into(),
            }),
        ),
        (
            "revoke an unknown identity",
            authority_act(TxBody::Revoke {
                identity: outsider.public(),
            }),
            no(TxRejection::UnknownIdentity(outsider.public())),
        ),
        (
            "revoke",
            authority_act(TxBody::Revoke {
                identity: dave.public(),
            }),
            ok(),
        ),
        (
            "revoke twice",
            authority_act(TxBody::Revoke {
                identity: dave.public(),
            }),
            no(TxRejection::Revoked(dave.public())),
        ),
        (
            "revoked identity registers",
            register(dave.clone(), reg("shop", "web", "d2")),
            refused(TxRejection::Revoked(dave.public())),
        ),
        (
            "empty validator set",
            authority_act(TxBody::ChangeValidators { validators: vec![] }),
            no(TxRejection::InvalidValidatorSet(
                "invalid validator set: no validators".into(),
            )),
        ),
        (
            "change validators",
            authority_act(TxBody::ChangeValidators {
                validators: vec![
                    Validator {
                        key: key(5).public(),
                        power: 2,
                    },
                    Validator {
                        key: v0.public(),
                        power: 1,
                    },
                ],
            }),
            ok(),
        ),
        (
            "second change before the epoch ends",
            authority_act(TxBody::ChangeValidators {
                validators: vec![Validator {
                    key: key(6).public(),
                    power: 1,
                }],
            }),
            no(TxRejection::EpochChangePending { pending: 1 }),
        ),
    ]
}

#[test]
fn every_row_gets_its_exact_outcome() {
    let mut chain = Chain::new();
    for (name, build, expected) in rows() {
        let stx = build(&mut chain);
        let before = chain.root();
        let registry_before = chain.services_and_identities();
        let expected = match expected {
            Want::Refused(reason) => {
                let got = chain.try_block(1_000, std::slice::from_ref(&stx));
                assert_eq!(
                    got.map(|_| ()),
                    Err(ExecutionError::Inadmissible {
                        tx_ids: vec![stx.id()],
                        reason: reason.to_string()
                    }),
                    "row {name:?}"
                );
                assert_eq!(chain.root(), before, "refused row {name:?} changed state");
                continue;
            }
            Want::Outcome(outcome) => outcome,
        };
        let got = chain.one(stx.clone());
        assert_eq!(got, expected, "row {name:?}");
        if let Some(reason) = rejected(&got) {
            // A rejection changes nothing but its signer's sequence, which
            // it consumes.
            assert_eq!(
                chain.services_and_identities(),
                registry_before,
                "rejected row {name:?} ({reason}) changed state"
            );
            assert_eq!(
                chain.reader().next_sequence(&stx.tx.signer).unwrap(),
                stx.tx.sequence + 1,
                "rejected row {name:?} did not consume its sequence"
            );
        } else {
            assert_ne!(chain.root(), before, "applied row {name:?} changed nothing");
        }
    }
    // The instance d1 left discovery with dave's revocation.
    assert_eq!(chain.instances("shop", "web"), Vec::<String>::new());
}

#[test]
fn oversized_row_size_is_the_encoded_size() {
    let stx = sign(
        &alice(),
        9,
        TxBody::Register(with_reg(|r| r.version = "v".repeat(20_000))),
    );
    assert_eq!(encode(&stx).len(), 20_233);
}
