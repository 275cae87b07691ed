//! Canonical borsh encodings with a size cap checked before decoding.

use std::marker::PhantomData;

use borsh::{BorshDeserialize, BorshSerialize};

use crate::DecodeError;

/// Default cap on any decoded message (4 MiB). Callers with tighter bounds use
/// [`decode_capped`].
pub const MAX_DECODE_BYTES: usize = 4 << 20;

/// The canonical encoding of `value`.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into a Vec cannot fail")
}

/// Decode exactly one `T` from `bytes` (no trailing bytes), capped at [`MAX_DECODE_BYTES`].
pub fn decode<T: BorshDeserialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_capped(bytes, MAX_DECODE_BYTES)
}

/// Decode exactly one `T` from `bytes`, refusing input longer than `cap` before
/// looking at it.
pub fn decode_capped<T: BorshDeserialize>(bytes: &[u8], cap: usize) -> Result<T, DecodeError> {
    if bytes.len() > cap {
        return Err(DecodeError::TooLarge {
            got: bytes.len(),
            cap,
        });
    }
    borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// A borsh value carried in JSON as a hex string of its canonical encoding.
///
/// JSON APIs use it for everything a client verifies (certificates, proofs,
/// records), so the verified bytes are exactly the bytes that were hashed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Hex<T> {
    bytes: Vec<u8>,
    _t: PhantomData<T>,
}

impl<T: BorshSerialize + BorshDeserialize> Hex<T> {
    /// Wrap a value.
    pub fn new(value: &T) -> Self {
        Hex {
            bytes: encode(value),
            _t: PhantomData,
        }
    }
    /// Decode the value.
    pub fn decode(&self) -> Result<T, DecodeError> {
        decode(&self.bytes)
    }
    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// Wrap already-encoded bytes (not checked until [`Hex::decode`]).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Hex {
            bytes,
            _t: PhantomData,
        }
    }
}

/// In a binary (borsh) message a `Hex<T>` is its bytes as a borsh `Vec<u8>`
/// (length-prefixed): the same verified bytes, half the size of hex.
impl<T> BorshSerialize for Hex<T> {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.bytes, writer)
    }
}

impl<T> BorshDeserialize for Hex<T> {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        Ok(Hex {
            bytes: Vec::<u8>::deserialize_reader(reader)?,
            _t: PhantomData,
        })
    }
}

impl<T> serde::Serialize for Hex<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(&self.bytes))
    }
}

/// Lower-case hex of `bytes`, written into one buffer (`hex::encode`
/// collects the string a `char` at a time: encoding the hex fields of lookup
/// answers was about a sixth of a node's CPU while it served a 100k fleet).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut out).expect("the buffer is twice the input");
    String::from_utf8(out).expect("hex digits are ASCII")
}

impl<'de, T> serde::Deserialize<'de> for Hex<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        let bytes = hex::decode(s).map_err(serde::de::Error::custom)?;
        Ok(Hex {
            bytes,
            _t: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_fields_encode_as_lower_case_hex_and_round_trip() {
        for len in [0usize, 1, 2, 31, 32, 33, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(to_hex(&bytes), hex::encode(&bytes));
            let json = serde_json::to_string(&Hex::<Vec<u8>>::from_bytes(bytes.clone())).unwrap();
            assert_eq!(json, format!("\"{}\"", hex::encode(&bytes)));
            let back: Hex<Vec<u8>> = serde_json::from_str(&json).unwrap();
            assert_eq!(back.bytes(), &bytes[..]);
        }
    }
}
