//! Verified lookups: every forgery is refused with its own error.

use palisade_client::{verify_lookup, verify_namespace, ClientError, Freshness, TrustedChain};
use palisade_crypto::api::{LookupResponse, NamespaceResponse};
use palisade_crypto::{
    BlockInfo, CommitCertificate, Hex, NamespaceRecord, SecretKey, ServiceLookup, ValidatorSet,
};

use crate::support::fixture::{
    block, instance, lookup_response, namespace_response, now_ms, service_key, tamper, Chain,
    World, CHAIN,
};

fn check(
    world: &World,
    response: &LookupResponse,
) -> Result<palisade_client::VerifiedService, ClientError> {
    let trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    verify_lookup(
        &trust,
        "prod",
        "api",
        response,
        now_ms(),
        Some(&Freshness::default()),
    )
}

fn check_as(
    world: &World,
    service: &str,
    response: &LookupResponse,
) -> Result<palisade_client::VerifiedService, ClientError> {
    let trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    verify_lookup(&trust, "prod", service, response, now_ms(), None)
}

fn is_forged_proof(r: Result<palisade_client::VerifiedService, ClientError>) -> bool {
    matches!(r, Err(ClientError::ForgedProof(_)))
}

#[test]
fn honest_answer_verifies_with_every_instance() {
    let world = World::new();
    let v = check(&world, &world.answer("prod", "api", 5)).unwrap();
    assert_eq!(v.height, 5);
    assert_eq!(v.record.as_ref(), Some(&world.api));
    assert_eq!(v.instances().len(), 2);
}

#[test]
fn absent_service_is_a_proven_absence() {
    let world = World::new();
    let trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    let response = world.answer("prod", "nope", 5);
    let v = verify_lookup(&trust, "prod", "nope", &response, now_ms(), None).unwrap();
    assert!(v.record.is_none());
    assert!(v.instances().is_empty());
}

#[test]
fn altered_endpoint_is_refused() {
    let world = World::new();
    let forged = tamper(&world.answer("prod", "api", 5), |r| {
        r.instances[0].endpoints[0].host = "6.6.6.6".into()
    });
    assert!(is_forged_proof(check(&world, &forged)));
}

#[test]
fn dropped_instance_is_refused() {
    let world = World::new();
    let forged = tamper(&world.answer("prod", "api", 5), |r| {
        r.instances.remove(1);
    });
    assert!(is_forged_proof(check(&world, &forged)));
}

#[test]
fn added_instance_is_refused() {
    let world = World::new();
    let forged = tamper(&world.answer("prod", "api", 5), |r| {
        r.instances.push(instance("evil", "6.6.6.6", 80))
    });
    assert!(is_forged_proof(check(&world, &forged)));
}

#[test]
fn claimed_absence_of_a_present_service_is_refused() {
    let world = World::new();
    let honest = world.answer("prod", "api", 5);
    let mut lookup = honest.lookup.decode().unwrap();
    lookup.value = None;
    let forged = LookupResponse {
        lookup: Hex::new(&lookup),
        instances: Vec::new(),
        record: None,
        ..honest
    };
    assert!(is_forged_proof(check(&world, &forged)));
}

#[test]
fn swapped_proof_is_refused() {
    let world = World::new();
    let cert = world.chain.quorum(block(5, world.state.root, now_ms()));
    // Another service's value and proof, presented as prod/api.
    let (value, proof) = world.state.prove(&service_key("prod", "db"));
    let db = world.state.instance_bytes("prod", "db");
    let forged = lookup_response(
        cert.clone(),
        "prod",
        "api",
        value.clone(),
        proof.clone(),
        db.clone(),
    );
    assert!(is_forged_proof(check(&world, &forged)));
    // The api value with the db proof.
    let (api_value, _) = world.state.prove(&service_key("prod", "api"));
    let api = world.state.instance_bytes("prod", "api");
    let forged = lookup_response(cert.clone(), "prod", "api", api_value, proof.clone(), api);
    assert!(is_forged_proof(check(&world, &forged)));
    // An honest answer about another service than the one asked for.
    let other = lookup_response(cert, "prod", "db", value, proof, db);
    assert_eq!(
        check(&world, &other),
        Err(ClientError::WrongService {
            asked: "prod/api".into(),
            got: "prod/db".into()
        })
    );
}

#[test]
fn stale_certificate_is_refused_and_future_one_too() {
    let world = World::new();
    let old = world.answer_at("prod", "api", 5, now_ms() - 600_000, &[0, 1, 2]);
    assert!(matches!(
        check(&world, &old),
        Err(ClientError::Stale { max_age_ms: 60_000, age_ms }) if age_ms >= 600_000
    ));
    let future = world.answer_at("prod", "api", 5, now_ms() + 600_000, &[0, 1, 2]);
    assert!(matches!(
        check(&world, &future),
        Err(ClientError::FromTheFuture { .. })
    ));
}

#[test]
fn certificate_from_another_chain_is_refused() {
    let world = World::new();
    // Same validator keys, another chain id: a replay across datacenters.
    let other = Chain::new("other-chain", 0, 4, 1);
    let cert = other.quorum(block(5, world.state.root, now_ms()));
    let (value, proof) = world.state.prove(&service_key("prod", "api"));
    let forged = lookup_response(
        cert,
        "prod",
        "api",
        value,
        proof,
        world.state.instance_bytes("prod", "api"),
    );
    assert_eq!(
        check(&world, &forged),
        Err(ClientError::WrongChain {
            got: "other-chain".into(),
            expected: CHAIN.into()
        })
    );
}

/// Issue-13 review: a chain is named by (chain id, genesis hash). The keys
/// of an old chain, signing for a re-genesised chain that kept the chain
/// id, are refused by a client trusting the new network file; the same
/// answer under the trusted genesis verifies.
#[test]
fn certificate_of_another_genesis_with_the_same_chain_id_and_keys_is_refused() {
    let world = World::new();
    let network = world.chain.network(&["http://127.0.0.1:1".into()]);
    let trust = TrustedChain::from_network(&network).unwrap();
    let mut old = Chain::new(CHAIN, 0, 4, 1);
    old.genesis_hash = palisade_crypto::Digest([66; 32]);
    let (value, proof) = world.state.prove(&service_key("prod", "api"));
    let answer = |chain: &Chain| {
        lookup_response(
            chain.quorum(block(5, world.state.root, now_ms())),
            "prod",
            "api",
            value.clone(),
            proof.clone(),
            world.state.instance_bytes("prod", "api"),
        )
    };
    assert_eq!(
        verify_lookup(&trust, "prod", "api", &answer(&old), now_ms(), None),
        Err(ClientError::WrongGenesis {
            got: old.genesis_hash,
            expected: network.genesis_hash
        })
    );
    assert!(verify_lookup(&trust, "prod", "api", &answer(&world.chain), now_ms(), None).is_ok());
    // Nor can the old chain's keys move the new chain's epochs.
    let mut followed = trust.clone();
    let next = Chain::new(CHAIN, 1, 4, 50);
    assert!(matches!(
        followed.follow(&[epoch_end(&old, &next.set, 8)]),
        Err(ClientError::WrongGenesis { .. })
    ));
    assert_eq!(followed.latest_epoch(), 0);
}

#[test]
fn too_few_signers_are_refused() {
    let world = World::new();
    let forged = world.answer_at("prod", "api", 5, now_ms(), &[0, 1]);
    assert_eq!(
        check(&world, &forged),
        Err(ClientError::InsufficientQuorum {
            got: 2,
            needed: 3,
            total: 4
        })
    );
}

#[test]
fn duplicate_signer_is_refused() {
    let world = World::new();
    let forged = world.answer_at("prod", "api", 5, now_ms(), &[0, 1, 1]);
    assert_eq!(
        check(&world, &forged),
        Err(ClientError::DuplicateSigner(world.chain.keys[1].public()))
    );
}

fn resign(world: &World, edit: impl FnOnce(&mut CommitCertificate)) -> LookupResponse {
    let mut cert = world.chain.quorum(block(5, world.state.root, now_ms()));
    edit(&mut cert);
    let (value, proof) = world.state.prove(&service_key("prod", "api"));
    lookup_response(
        cert,
        "prod",
        "api",
        value,
        proof,
        world.state.instance_bytes("prod", "api"),
    )
}

#[test]
fn unknown_signer_is_refused() {
    let world = World::new();
    let outsider = SecretKey::from_seed([99; 32]);
    let forged = resign(&world, |cert| {
        let digest = cert.ledger_info.digest();
        cert.signatures[2] = (outsider.public(), outsider.sign_digest(&digest));
    });
    assert_eq!(
        check(&world, &forged),
        Err(ClientError::UnknownSigner(outsider.public()))
    );
}

#[test]
fn forged_signature_is_refused() {
    let world = World::new();
    let forged = resign(&world, |cert| {
        // Validator 2's signature over something else.
        let other = world.chain.keys[2].sign_digest(&palisade_crypto::Digest([1; 32]));
        cert.signatures[2].1 = other;
    });
    assert!(matches!(
        check(&world, &forged),
        Err(ClientError::ForgedSignature(_))
    ));
}

#[test]
fn certified_root_swapped_under_the_signatures_is_refused() {
    let world = World::new();
    // The node changes the state root after the validators signed.
    let forged = resign(&world, |cert| {
        cert.ledger_info.commit.as_mut().unwrap().state_root = palisade_crypto::Digest([8; 32]);
    });
    assert!(matches!(
        check(&world, &forged),
        Err(ClientError::ForgedSignature(_))
    ));
}

fn epoch_end(chain: &Chain, next: &ValidatorSet, height: u64) -> CommitCertificate {
    let mut b: BlockInfo = block(height, palisade_crypto::Digest([1; 32]), now_ms());
    b.next_validators = Some(next.clone());
    chain.quorum(b)
}

#[test]
fn epoch_changes_are_followed_only_when_certified_by_the_trusted_set() {
    let world = World::new();
    let epoch1 = Chain::new(CHAIN, 1, 4, 50);
    let cert1 = epoch1.quorum(block(9, world.state.root, now_ms()));
    let (value, proof) = world.state.prove(&service_key("prod", "api"));
    let answer = lookup_response(
        cert1,
        "prod",
        "api",
        value,
        proof,
        world.state.instance_bytes("prod", "api"),
    );

    let mut trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    assert_eq!(
        verify_lookup(&trust, "prod", "api", &answer, now_ms(), None),
        Err(ClientError::UnknownEpoch { got: 1, trusted: 0 })
    );
    // An epoch change signed by the new validators themselves is refused.
    let self_signed = epoch_end(&Chain::new(CHAIN, 0, 4, 50), &epoch1.set, 8);
    assert!(matches!(
        trust.follow(&[self_signed]),
        Err(ClientError::UnknownSigner(_))
    ));
    assert_eq!(trust.latest_epoch(), 0);
    // The genuine one is followed, after which epoch 1 answers verify.
    trust
        .follow(&[epoch_end(&world.chain, &epoch1.set, 8)])
        .unwrap();
    assert_eq!(trust.latest_epoch(), 1);
    let v = verify_lookup(&trust, "prod", "api", &answer, now_ms(), None).unwrap();
    assert_eq!((v.height, v.epoch), (9, 1));
}

#[test]
fn record_for_another_key_under_a_valid_proof_cannot_exist() {
    // Guard of the lookup subject: the ServiceLookup must name what was asked.
    let world = World::new();
    let honest = world.answer("prod", "api", 5);
    let mut lookup: ServiceLookup = honest.lookup.decode().unwrap();
    lookup.namespace = "staging".into();
    let forged = LookupResponse {
        lookup: Hex::new(&lookup),
        ..honest
    };
    assert!(matches!(
        check(&world, &forged),
        Err(ClientError::WrongService { .. })
    ));
}

#[test]
fn namespace_listing_verifies_and_a_hidden_service_is_refused() {
    let world = World::new();
    let trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    let honest = namespace_response(&world, "prod", 6);
    let v = verify_namespace(&trust, "prod", &honest, now_ms(), None).unwrap();
    assert_eq!(
        (v.height, v.services.clone()),
        (6, vec!["api".to_string(), "db".to_string()])
    );

    let hidden = NamespaceResponse {
        value: Some(Hex::new(&NamespaceRecord {
            namespace: "prod".into(),
            services: vec!["api".into()],
        })),
        ..honest.clone()
    };
    assert!(matches!(
        verify_namespace(&trust, "prod", &hidden, now_ms(), None),
        Err(ClientError::ForgedProof(_))
    ));
    let absent = namespace_response(&world, "staging", 6);
    let v = verify_namespace(&trust, "staging", &absent, now_ms(), None).unwrap();
    assert!(v.services.is_empty());
    assert!(matches!(
        verify_namespace(&trust, "staging", &honest, now_ms(), None),
        Err(ClientError::WrongService { .. })
    ));
}

mod mutations {
    use proptest::prelude::*;

    use super::*;

    /// One honest answer, shared by every case.
    fn fixture() -> &'static (
        TrustedChain,
        LookupResponse,
        palisade_client::VerifiedService,
    ) {
        static FIXTURE: std::sync::OnceLock<(
            TrustedChain,
            LookupResponse,
            palisade_client::VerifiedService,
        )> = std::sync::OnceLock::new();
        FIXTURE.get_or_init(|| {
            let world = World::new();
            let trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
            let honest = world.answer("prod", "api", 5);
            let expected = verify_lookup(&trust, "prod", "api", &honest, now_ms(), None).unwrap();
            (trust, honest, expected)
        })
    }

    /// Flip one byte of an encoded part of an honest answer.
    fn flip(bytes: &[u8], at: usize, xor: u8) -> Vec<u8> {
        let mut b = bytes.to_vec();
        let i = at % b.len();
        b[i] ^= xor;
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// No single-byte change of the certificate or of the proven lookup
        /// yields a different verified answer: it is refused, or (for bytes
        /// no check covers, such as a signature's unused encoding freedom,
        /// which `verify_strict` forbids anyway) it verifies to the same one.
        #[test]
        fn any_flipped_byte_is_refused_or_harmless(at in any::<usize>(), xor in 1u8..=255, in_cert in any::<bool>()) {
            let (trust, honest, expected) = fixture();
            let mut forged = honest.clone();
            if in_cert {
                forged.certificate = Hex::from_bytes(flip(honest.certificate.bytes(), at, xor));
            } else {
                forged.lookup = Hex::from_bytes(flip(honest.lookup.bytes(), at, xor));
            }
            match verify_lookup(trust, "prod", "api", &forged, now_ms(), None) {
                Ok(v) => prop_assert_eq!(&v, expected),
                Err(e) => prop_assert!(e.is_verification_failure(), "{e:?}"),
            }
        }
    }
}

#[test]
fn epoch_changes_skip_the_past_and_refuse_gaps() {
    let world = World::new();
    let epoch1 = Chain::new(CHAIN, 1, 4, 50);
    let epoch2 = Chain::new(CHAIN, 2, 4, 70);
    let to1 = epoch_end(&world.chain, &epoch1.set, 8);
    let to2 = epoch_end(&epoch1, &epoch2.set, 20);
    let mut trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    // A gap: the change out of epoch 1 before the one into it.
    assert!(matches!(
        trust.follow(std::slice::from_ref(&to2)),
        Err(ClientError::BadEpochChange(_))
    ));
    trust.follow(&[to1.clone(), to2.clone()]).unwrap();
    assert_eq!(trust.latest_epoch(), 2);
    // Replaying followed changes is harmless.
    trust.follow(&[to1, to2]).unwrap();
    assert_eq!((trust.latest_epoch(), trust.changes().len()), (2, 2));
    // A change that skips an epoch number is refused.
    let epoch4 = Chain::new(CHAIN, 4, 4, 90);
    let skip = epoch_end(&epoch2, &epoch4.set, 30);
    assert!(matches!(
        trust.follow(&[skip]),
        Err(ClientError::BadEpochChange(_))
    ));
    // Another chain's epoch change is refused.
    let foreign = epoch_end(&Chain::new("other-chain", 2, 4, 70), &epoch4.set, 30);
    assert!(matches!(
        trust.follow(&[foreign]),
        Err(ClientError::WrongChain { .. })
    ));
}

/// Issue-13 review: retired keys can sign a second, different end of their
/// epoch (naming a set they control). Two certified ends of one epoch are a
/// fork: the trust chain refuses every certificate from then on.
#[test]
fn two_different_ends_of_one_epoch_stop_the_trust_chain() {
    let world = World::new();
    let real = Chain::new(CHAIN, 1, 4, 50);
    let forged = Chain::new(CHAIN, 1, 4, 90);
    let mut trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    let end = epoch_end(&world.chain, &real.set, 8);
    trust.follow(std::slice::from_ref(&end)).unwrap();
    // The same end again, signed by another quorum, is no fork.
    let again = world
        .chain
        .certify(end.ledger_info.commit.clone().unwrap(), &[1, 2, 3]);
    trust.follow(&[again]).unwrap();
    assert_eq!(
        trust.follow(&[epoch_end(&world.chain, &forged.set, 8)]),
        Err(ClientError::ConflictingEpochChange { epoch: 0 })
    );
    let answer = world.answer("prod", "api", 5);
    assert_eq!(
        verify_lookup(&trust, "prod", "api", &answer, now_ms(), None),
        Err(ClientError::ConflictingEpochChange { epoch: 0 })
    );
}

#[test]
fn a_retired_epoch_is_refused_for_heights_past_its_end() {
    let world = World::new();
    let epoch1 = Chain::new(CHAIN, 1, 4, 50);
    let mut trust = TrustedChain::new(CHAIN, world.chain.set.clone()).unwrap();
    trust
        .follow(&[epoch_end(&world.chain, &epoch1.set, 8)])
        .unwrap();
    // Epoch 0 ended at height 8: its certificates verify up to there ...
    let old = world.answer("prod", "api", 8);
    assert_eq!(
        verify_lookup(&trust, "prod", "api", &old, now_ms(), None)
            .unwrap()
            .height,
        8
    );
    // ... and not for a later height, however well signed.
    let late = world.answer("prod", "api", 9);
    assert_eq!(
        verify_lookup(&trust, "prod", "api", &late, now_ms(), None),
        Err(ClientError::RetiredEpoch {
            epoch: 0,
            height: 9,
            ended_at: 8
        })
    );
}

/// Per-instance leaves: each record is checked against the hash its
/// service's index lists, so one altered endpoint under an honest index
/// proof is caught.
#[test]
fn altered_instance_record_under_an_honest_index_is_refused() {
    let world = World::new();
    let honest = world.answer("prod", "api", 5);
    assert_eq!(
        check(&world, &honest).unwrap().record.as_ref(),
        Some(&world.api)
    );
    let forged = tamper(&honest, |r| r.instances[0].endpoints[0].port = 6666);
    assert!(is_forged_proof(check(&world, &forged)));
    let reordered = tamper(&honest, |r| r.instances.swap(0, 1));
    assert!(is_forged_proof(check(&world, &reordered)));
    // A record of another service's instance, in place of one of this one's.
    let db = world.state.instance_bytes("prod", "db");
    let mut swapped = honest.clone();
    swapped.instances[1] = Hex::from_bytes(db[0].clone());
    assert!(is_forged_proof(check(&world, &swapped)));
}

#[test]
fn instance_records_beside_a_proven_absence_are_refused() {
    let world = World::new();
    let mut forged = world.answer("prod", "nope", 5);
    assert!(check_as(&world, "nope", &forged).unwrap().record.is_none());
    forged.instances = world.answer("prod", "api", 5).instances;
    assert!(is_forged_proof(check_as(&world, "nope", &forged)));
}

/// A local node answering every remote-watch poll at once with an old but
/// validly certified state of the remote datacenter must not hold the watch:
/// the client asks the other nodes and delivers the newer state they import.
#[test]
fn a_local_node_serving_an_old_remote_state_does_not_hold_a_remote_watch() {
    use crate::support::server::{MockNode, Reply};
    use palisade_client::{ClientConfig, RemoteDatacenter};
    use palisade_crypto::dc::{LinkStatus, RemoteLookupResponse};

    let world = World::new();
    // B after a change: api-3 joined (same chain, same validators).
    let mut changed = World::new();
    changed.state.put_record(&crate::support::fixture::record(
        "prod",
        "api",
        vec![
            instance("api-1", "10.0.0.1", 8080),
            instance("api-3", "10.0.0.3", 8080),
        ],
    ));
    let remote = |world: &World, height: u64| RemoteLookupResponse {
        link: LinkStatus {
            datacenter: "dc1".into(),
            chain_id: world.chain.chain_id.clone(),
            state: "live".into(),
            imported_height: height,
            imported_timestamp_ms: now_ms(),
            remote_height: height,
            since_progress_ms: 0,
            frozen_reason: None,
        },
        lookup: world.answer("prod", "api", height),
    };
    let old = remote(&world, 5);
    let new = remote(&changed, 9);
    let liar = MockNode::start(move |_| Reply::ok(&old));
    let honest = MockNode::start(move |_| Reply::ok(&new));
    // The local datacenter: another chain whose nodes serve B's records.
    let local = Chain::new("local-chain", 0, 4, 40);
    let client = super::network::client(
        &local,
        &[liar.url.clone(), honest.url.clone()],
        ClientConfig::default(),
    );
    let b = RemoteDatacenter::new(&world.chain.network(&[])).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Not a scoped thread: when the watch is held, the test must fail,
    // not wait for it.
    std::thread::spawn(move || {
        for a in client.watch_remote(&b, "prod", "api", 0).flatten() {
            if tx.send(a.service.height).is_err() {
                return;
            }
        }
    });
    let wait = std::time::Duration::from_secs(15);
    let first = rx.recv_timeout(wait).expect("the first state");
    let next = if first >= 9 {
        first
    } else {
        rx.recv_timeout(wait)
            .expect("the watch was held by the node answering an old state")
    };
    assert_eq!(next, 9);
    drop((liar, honest));
}
