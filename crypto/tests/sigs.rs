use palisade_crypto::{
    hash, verify_batch, Cosignature, Digest, Domain, PublicKey, SecretKey, SigError, Signature,
    Transaction, TxBody, TxError,
};

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed([i; 32])
}

#[test]
fn weak_and_invalid_keys_are_refused() {
    // The identity point (y = 1) has small order: any "signature" R = sB would
    // pass a non-strict check against it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = PublicKey(identity);
    let d = hash(Domain::Transaction, b"x");
    let sig = key(1).sign_digest(&d);
    assert_eq!(weak.verify_digest(&d, &sig), Err(SigError::WeakKey(weak)));
    // About half of all y coordinates have no point on the curve.
    let invalid = (2u8..=255)
        .map(|y| {
            let mut b = [0u8; 32];
            b[0] = y;
            PublicKey(b)
        })
        .find(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.0).is_err())
        .expect("some small y is off the curve");
    assert_eq!(
        invalid.verify_digest(&d, &sig),
        Err(SigError::InvalidKey(invalid))
    );
}

#[test]
fn signatures_bind_key_and_digest() {
    let d = hash(Domain::Transaction, b"x");
    let sig = key(1).sign_digest(&d);
    key(1).public().verify_digest(&d, &sig).unwrap();
    let other = hash(Domain::Transaction, b"y");
    assert_eq!(
        key(1).public().verify_digest(&other, &sig),
        Err(SigError::BadSignature(key(1).public()))
    );
    assert_eq!(
        key(2).public().verify_digest(&d, &sig),
        Err(SigError::BadSignature(key(2).public()))
    );
    // Flipping any byte of the signature breaks it.
    for i in 0..64 {
        let mut s = sig;
        s.0[i] ^= 1;
        assert!(key(1).public().verify_digest(&d, &s).is_err(), "byte {i}");
    }
}

#[test]
fn non_canonical_s_is_refused() {
    // s + L encodes the same scalar non-canonically; verify_strict refuses it.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let d = hash(Domain::Transaction, b"malleable");
    let sig = key(3).sign_digest(&d);
    let mut s = [0u8; 32];
    s.copy_from_slice(&sig.0[32..]);
    let mut carry = 0u16;
    for i in 0..32 {
        let v = s[i] as u16 + L[i] as u16 + carry;
        s[i] = v as u8;
        carry = v >> 8;
    }
    let mut forged = sig;
    forged.0[32..].copy_from_slice(&s);
    assert!(key(3).public().verify_digest(&d, &forged).is_err());
}

fn batch(n: usize) -> Vec<(PublicKey, Digest, Signature)> {
    (0..n)
        .map(|i| {
            let k = key(i as u8 + 1);
            let d = hash(Domain::LedgerInfo, &(i as u64).to_le_bytes());
            (k.public(), d, k.sign_digest(&d))
        })
        .collect()
}

#[test]
fn batch_accepts_valid_and_names_the_bad_one() {
    assert_eq!(verify_batch(&[]), Ok(()));
    for n in [1, 2, 16, 64] {
        assert_eq!(verify_batch(&batch(n)), Ok(()), "n = {n}");
    }
    for bad in [0, 5, 15] {
        let mut items = batch(16);
        items[bad].2 .0[10] ^= 0x40;
        let err = verify_batch(&items).unwrap_err();
        assert_eq!(err.index, bad);
        assert_eq!(err.error, SigError::BadSignature(items[bad].0));
    }
    // A signature moved to another message fails too.
    let mut items = batch(8);
    items.swap(2, 3);
    items[2].0 = items[3].0;
    assert!(verify_batch(&items).is_err());
    // A weak key is refused before any signature is checked.
    let mut items = batch(4);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    items[1].0 = PublicKey(identity);
    assert_eq!(verify_batch(&items).unwrap_err().index, 1);
}

/// The genesis the transactions of these tests are signed for.
const G: Digest = Digest([7; 32]);

fn tx(signer: &SecretKey, chain: &str) -> Transaction {
    Transaction {
        chain_id: chain.into(),
        genesis_hash: G,
        signer: signer.public(),
        sequence: 3,
        body: TxBody::Revoke {
            identity: key(9).public(),
        },
    }
}

#[test]
fn envelope_rejections_are_typed() {
    let signed = tx(&key(1), "dc1").sign(&key(1));
    let (id, signers) = signed.verify("dc1", &G).unwrap();
    assert_eq!(id, signed.id());
    assert_eq!(signers, vec![key(1).public()]);

    assert_eq!(
        signed.verify("dc2", &G),
        Err(TxError::WrongChain {
            got: "dc1".into(),
            expected: "dc2".into()
        })
    );
    // Signed for another genesis of "dc1" (a re-genesis with the same id
    // and keys): refused before any signature is checked.
    let other = Digest([8; 32]);
    assert_eq!(
        signed.verify("dc1", &other),
        Err(TxError::WrongGenesis {
            got: G,
            expected: other
        })
    );
    // Signed by a key other than the stated signer.
    let forged = tx(&key(1), "dc1").sign(&key(2));
    assert_eq!(
        forged.verify("dc1", &G),
        Err(TxError::Signature(SigError::BadSignature(key(1).public())))
    );
    // Any change to the body after signing invalidates it (replay with a new sequence).
    let mut replay = signed.clone();
    replay.tx.sequence += 1;
    assert!(matches!(
        replay.verify("dc1", &G),
        Err(TxError::Signature(_))
    ));

    let mut co = signed.clone();
    co.cosign(&key(2));
    co.cosign(&key(3));
    assert_eq!(co.verify("dc1", &G).unwrap().1.len(), 3);
    let mut dup = signed.clone();
    dup.cosign(&key(2));
    dup.cosign(&key(2));
    assert_eq!(
        dup.verify("dc1", &G),
        Err(TxError::DuplicateCosigner(key(2).public()))
    );
    let mut self_co = signed.clone();
    self_co.cosign(&key(1));
    assert_eq!(
        self_co.verify("dc1", &G),
        Err(TxError::DuplicateCosigner(key(1).public()))
    );
    let mut bad_co = signed;
    bad_co.cosignatures.push(Cosignature {
        signer: key(4).public(),
        signature: key(5).sign_digest(&bad_co.id()),
    });
    assert_eq!(
        bad_co.verify("dc1", &G),
        Err(TxError::Signature(SigError::BadSignature(key(4).public())))
    );
}

#[test]
fn decode_refuses_trailing_bytes_and_oversize() {
    let signed = tx(&key(1), "dc1").sign(&key(1));
    let mut bytes = palisade_crypto::encode(&signed);
    let back: palisade_crypto::SignedTransaction = palisade_crypto::decode(&bytes).unwrap();
    assert_eq!(back, signed);
    bytes.push(0);
    assert!(palisade_crypto::decode::<palisade_crypto::SignedTransaction>(&bytes).is_err());
    assert!(matches!(
        palisade_crypto::decode_capped::<palisade_crypto::SignedTransaction>(&bytes, 10),
        Err(palisade_crypto::DecodeError::TooLarge { cap: 10, .. })
    ));
}
