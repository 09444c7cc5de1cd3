//! Sequenced payloads: every payload the encoder makes parses back to its sequence number, and
//! every single changed byte and every cut is rejected with the error for the part it hit.
//!
//! Why one changed byte is always caught, not just almost always: the magic and the length are
//! compared exactly, and every other byte goes through the FNV-1a checksum, whose every step
//! (xor a byte, multiply by an odd prime modulo 2^64) is a bijection of the running hash. A
//! different byte at one step gives a different hash at that step and so at the end; a changed
//! stored checksum no longer equals the unchanged computed one. Damage to two or more bytes
//! can in principle collide, with odds of about 2^-64, so no property claims more than one.

use proptest::prelude::*;
use sessionkit_tests::payload::{
    MAX_BODY, MIN_BODY, PayloadError, SEQ_HEADER_LEN, parse_sequenced, sequenced_payload,
};

fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(u64::MAX), any::<u64>()]
}

/// Body lengths with the ends of what a power-loss child writes, and the empty body the
/// format also allows.
fn body_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(MIN_BODY),
        Just(MAX_BODY),
        0..512_usize,
        MIN_BODY..=MAX_BODY,
    ]
}

proptest! {
    #[test]
    fn every_payload_parses_back_to_its_sequence_number(seq in seq(), len in body_len()) {
        let payload = sequenced_payload(seq, len);
        prop_assert_eq!(payload.len(), SEQ_HEADER_LEN + len);
        // The header as documented: magic, then sequence number and body length, little-endian.
        prop_assert_eq!(&payload[..8], b"SKTORT01");
        prop_assert_eq!(&payload[8..16], &seq.to_le_bytes()[..]);
        prop_assert_eq!(&payload[16..24], &(len as u64).to_le_bytes()[..]);
        prop_assert_eq!(parse_sequenced(&payload), Ok(seq));
    }

    #[test]
    fn every_single_changed_byte_is_rejected_by_the_part_it_hit(
        seq in seq(),
        len in body_len(),
        at in any::<prop::sample::Index>(),
        flip in 1..=u8::MAX,
    ) {
        let mut payload = sequenced_payload(seq, len);
        let at = at.index(payload.len());
        payload[at] ^= flip;
        let err = parse_sequenced(&payload).expect_err("a changed byte must be caught");
        match at {
            0..8 => prop_assert_eq!(err, PayloadError::BadMagic),
            16..24 => {
                let header = (len as u64) ^ (u64::from(flip) << (8 * (at - 16)));
                prop_assert_eq!(err, PayloadError::LengthMismatch { header, actual: len });
            }
            // The sequence number, the stored checksum and the body are all checksummed.
            _ => prop_assert!(matches!(err, PayloadError::Checksum { .. }), "{:?} at {}", err, at),
        }
    }

    #[test]
    fn every_cut_is_rejected_as_too_short_or_a_length_mismatch(
        seq in seq(),
        len in body_len(),
        cut in any::<prop::sample::Index>(),
    ) {
        let payload = sequenced_payload(seq, len);
        let cut = cut.index(payload.len());
        let err = parse_sequenced(&payload[..cut]).expect_err("a cut payload must be caught");
        if cut < SEQ_HEADER_LEN {
            prop_assert_eq!(err, PayloadError::TooShort { len: cut });
        } else {
            let actual = cut - SEQ_HEADER_LEN;
            prop_assert_eq!(err, PayloadError::LengthMismatch { header: len as u64, actual });
        }
    }

    #[test]
    fn bytes_added_at_the_end_are_rejected_as_a_length_mismatch(
        seq in seq(),
        len in body_len(),
        extra in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut payload = sequenced_payload(seq, len);
        payload.extend_from_slice(&extra);
        prop_assert_eq!(
            parse_sequenced(&payload),
            Err(PayloadError::LengthMismatch { header: len as u64, actual: len + extra.len() })
        );
    }

    #[test]
    fn any_bytes_are_judged_without_panicking(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..128),
            // The right magic, so the later checks are reached too.
            proptest::collection::vec(any::<u8>(), 0..128).prop_map(|rest| {
                let mut bytes = b"SKTORT01".to_vec();
                bytes.extend(rest);
                bytes
            }),
        ],
    ) {
        match parse_sequenced(&bytes) {
            Ok(seq) => prop_assert_eq!(&bytes[8..16], &seq.to_le_bytes()[..]),
            Err(PayloadError::TooShort { len }) => {
                prop_assert_eq!(len, bytes.len());
                prop_assert!(len < 32);
            }
            Err(PayloadError::BadMagic) => prop_assert_ne!(&bytes[..8], b"SKTORT01"),
            Err(PayloadError::LengthMismatch { header, actual }) => {
                prop_assert_eq!(actual, bytes.len() - 32);
                prop_assert_ne!(header, actual as u64);
            }
            Err(PayloadError::Checksum { stored, computed }) => prop_assert_ne!(stored, computed),
        }
    }
}
