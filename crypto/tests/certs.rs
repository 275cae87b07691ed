use palisade_crypto::{
    BlockInfo, CertError, CommitCertificate, Digest, LedgerInfo, SecretKey, SigError, Validator,
    ValidatorSet,
};

fn keys(n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_seed([i as u8 + 1; 32]))
        .collect()
}

fn set(keys: &[SecretKey], powers: &[u64], epoch: u64) -> ValidatorSet {
    ValidatorSet {
        epoch,
        validators: keys
            .iter()
            .zip(powers)
            .map(|(k, p)| Validator {
                key: k.public(),
                power: *p,
            })
            .collect(),
    }
}

fn ledger(epoch: u64, next: Option<ValidatorSet>) -> LedgerInfo {
    LedgerInfo {
        chain_id: "dc1".into(),
        genesis_hash: Digest([7; 32]),
        epoch,
        commit: Some(BlockInfo {
            round: 9,
            height: 7,
            block_id: Digest([7; 32]),
            state_root: Digest([8; 32]),
            tx_root: Digest([9; 32]),
            timestamp_ms: 1_700_000_000_000,
            next_validators: next,
            parent_info: Digest([6; 32]),
        }),
        consensus_data_hash: Digest([5; 32]),
    }
}

fn cert(li: LedgerInfo, signers: &[&SecretKey]) -> CommitCertificate {
    let d = li.digest();
    CommitCertificate {
        ledger_info: li,
        signatures: signers
            .iter()
            .map(|k| (k.public(), k.sign_digest(&d)))
            .collect(),
    }
}

/// Every subset of signers is accepted exactly when its power is more than
/// two thirds of the total, for totals divisible by 3 and not.
#[test]
fn quorum_boundary_is_exact_for_every_subset() {
    let cases: &[&[u64]] = &[
        &[1, 1, 1],
        &[1, 1, 1, 1],
        &[1, 1, 1, 1, 1, 1],
        &[1, 1, 1, 1, 1, 1, 1],
        &[3, 3, 3, 3],
        &[5, 2, 2],
        &[10, 1, 1, 1],
        &[2, 2, 1, 1],
        &[7, 6, 5, 4, 3],
    ];
    let ks = keys(7);
    for powers in cases {
        let vs = set(&ks[..powers.len()], powers, 0);
        let total: u64 = powers.iter().sum();
        for mask in 0u32..(1 << powers.len()) {
            let signers: Vec<&SecretKey> = (0..powers.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| &ks[i])
                .collect();
            let power: u64 = (0..powers.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| powers[i])
                .sum();
            let result = cert(ledger(0, None), &signers).verify(&vs, "dc1");
            if 3 * power > 2 * total {
                assert!(result.is_ok(), "{powers:?} mask {mask:b}: {result:?}");
            } else {
                assert_eq!(
                    result,
                    Err(CertError::InsufficientPower {
                        got: power,
                        needed: vs.quorum_power(),
                        total
                    }),
                    "{powers:?} mask {mask:b}"
                );
            }
        }
    }
}

#[test]
fn quorum_power_values() {
    let ks = keys(7);
    for (powers, needed, validity) in [
        (&[1u64, 1, 1][..], 3, 2),
        (&[1, 1, 1, 1][..], 3, 2),
        (&[1, 1, 1, 1, 1, 1][..], 5, 3),
        (&[1, 1, 1, 1, 1, 1, 1][..], 5, 3),
        (&[3, 3, 3, 3][..], 9, 5),
    ] {
        let vs = set(&ks[..powers.len()], powers, 0);
        assert_eq!(vs.quorum_power(), needed, "{powers:?}");
        assert_eq!(vs.validity_power(), validity, "{powers:?}");
    }
}

#[test]
fn certificate_rejections_are_typed() {
    let ks = keys(5);
    let vs = set(&ks[..4], &[1, 1, 1, 1], 3);
    let good = cert(ledger(3, None), &[&ks[0], &ks[1], &ks[2]]);
    let verified = good.verify(&vs, "dc1").unwrap();
    assert_eq!(verified.block().height, 7);
    assert_eq!(verified.epoch(), 3);

    assert_eq!(
        good.verify(&vs, "dc2"),
        Err(CertError::WrongChain {
            got: "dc1".into(),
            expected: "dc2".into()
        })
    );
    let old = cert(ledger(2, None), &[&ks[0], &ks[1], &ks[2]]);
    assert_eq!(
        old.verify(&vs, "dc1"),
        Err(CertError::WrongEpoch {
            got: 2,
            expected: 3
        })
    );
    // Duplicate signer: two copies of one valid signature must not count twice.
    let dup = cert(ledger(3, None), &[&ks[0], &ks[1], &ks[1]]);
    assert_eq!(
        dup.verify(&vs, "dc1"),
        Err(CertError::DuplicateSigner(ks[1].public()))
    );
    // Outsider.
    let outsider = cert(ledger(3, None), &[&ks[0], &ks[1], &ks[4]]);
    assert_eq!(
        outsider.verify(&vs, "dc1"),
        Err(CertError::UnknownSigner(ks[4].public()))
    );
    // A bad signature among enough good ones is still refused.
    let mut bad = cert(ledger(3, None), &[&ks[0], &ks[1], &ks[2], &ks[3]]);
    bad.signatures[3].1 .0[0] ^= 1;
    assert_eq!(
        bad.verify(&vs, "dc1"),
        Err(CertError::Signature(SigError::BadSignature(ks[3].public())))
    );
    // Signatures over a different ledger info (altered state root).
    let mut altered = good.clone();
    altered.ledger_info.commit.as_mut().unwrap().state_root = Digest([1; 32]);
    assert!(matches!(
        altered.verify(&vs, "dc1"),
        Err(CertError::Signature(SigError::BadSignature(_)))
    ));
    // A QC that commits nothing is not a commit certificate.
    let mut li = ledger(3, None);
    li.commit = None;
    assert_eq!(
        cert(li, &[&ks[0], &ks[1], &ks[2]]).verify(&vs, "dc1"),
        Err(CertError::NotACommit)
    );
}

#[test]
fn epoch_changes_are_followed_only_forward() {
    let ks = keys(7);
    let e0 = set(&ks[..4], &[1, 1, 1, 1], 0);
    let e1 = set(&ks[3..7], &[1, 1, 1, 1], 1);
    let change = cert(ledger(0, Some(e1.clone())), &[&ks[0], &ks[1], &ks[2]]);
    assert_eq!(change.next_epoch(&e0, "dc1"), Ok(e1.clone()));
    // The retired set cannot certify epoch 1 blocks.
    let stale = cert(ledger(1, None), &[&ks[0], &ks[1], &ks[2]]);
    assert!(matches!(
        stale.verify(&e1, "dc1"),
        Err(CertError::UnknownSigner(_))
    ));
    // A certificate that does not end the epoch is no epoch change.
    let plain = cert(ledger(0, None), &[&ks[0], &ks[1], &ks[2]]);
    assert!(matches!(
        plain.next_epoch(&e0, "dc1"),
        Err(CertError::BadEpochChange { .. })
    ));
    // Skipping an epoch is refused.
    let mut e5 = e1.clone();
    e5.epoch = 5;
    let skip = cert(ledger(0, Some(e5)), &[&ks[0], &ks[1], &ks[2]]);
    assert_eq!(
        skip.next_epoch(&e0, "dc1"),
        Err(CertError::BadEpochChange {
            got: 5,
            expected: 1
        })
    );
}

#[test]
fn malformed_sets_are_refused() {
    let ks = keys(2);
    assert!(set(&ks, &[], 0).validate().is_err());
    assert!(set(&ks, &[1, 0], 0).validate().is_err());
    assert!(set(&ks, &[u64::MAX / 2, u64::MAX / 2], 0)
        .validate()
        .is_err());
    let mut dup = set(&ks, &[1, 1], 0);
    dup.validators[1].key = dup.validators[0].key;
    assert!(dup.validate().is_err());
    assert!(set(&ks, &[1, 1], 0).validate().is_ok());
}
