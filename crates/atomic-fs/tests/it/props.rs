//! Property tests: round trips, last-write-wins, and readers that never panic on any bytes.

use std::fs;

use proptest::prelude::*;
use sessionkit_atomic_fs::{
    AtomicWriter, Durability, read_json, read_jsonl, read_records, split_records,
};

use crate::util::Scratch;

fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![Just(Durability::AtomicOnly), Just(Durability::Durable)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..20_000), d in durability()) {
        let dir = Scratch::new("prop-rt");
        let path = dir.join("f");
        AtomicWriter::new().durability(d).write(&path, &bytes).unwrap();
        prop_assert_eq!(fs::read(&path).unwrap(), bytes);
        prop_assert_eq!(dir.names(), vec!["f".to_string()]);
    }

    #[test]
    fn any_sequence_of_writes_leaves_exactly_the_last(
        writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..12),
    ) {
        let dir = Scratch::new("prop-seq");
        let path = dir.join("f");
        let mut writer = AtomicWriter::new();
        writer.durability(Durability::AtomicOnly);
        for w in &writes {
            writer.write(&path, w).unwrap();
        }
        prop_assert_eq!(&fs::read(&path).unwrap(), writes.last().unwrap());
        prop_assert_eq!(dir.names(), vec!["f".to_string()]);
    }

    #[test]
    fn json_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = Scratch::new("prop-json");
        let path = dir.join("f.json");
        fs::write(&path, &bytes).unwrap();
        match read_json::<serde_json::Value>(&path) {
            Ok(v) => prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(), v),
            Err(e) => prop_assert!(e.is_corrupt(), "{e:?}"),
        }
    }

    #[test]
    fn jsonl_reader_never_panics_and_accounts_for_every_byte(bytes in proptest::collection::vec(
        prop_oneof![any::<u8>(), Just(b'\n'), Just(b'{'), Just(b'}')], 0..512)) {
        let dir = Scratch::new("prop-jsonl");
        let path = dir.join("f.jsonl");
        fs::write(&path, &bytes).unwrap();
        let records = read_records(&path).unwrap();
        // Whole records plus their newlines, then the torn tail, rebuild the file exactly.
        let mut rebuilt = Vec::new();
        for r in &records.records {
            prop_assert_eq!(r.offset as usize, rebuilt.len());
            rebuilt.extend_from_slice(&r.bytes);
            rebuilt.push(b'\n');
        }
        prop_assert_eq!(records.end as usize, rebuilt.len());
        if let Some(t) = records.torn_tail {
            prop_assert_eq!(t.offset as usize, rebuilt.len());
            prop_assert!(t.len > 0);
            rebuilt.extend_from_slice(&bytes[t.offset as usize..]);
        }
        prop_assert_eq!(&rebuilt, &bytes);
        match read_jsonl::<serde_json::Value>(&path) {
            Ok(read) => prop_assert_eq!(read.values.len(), records.records.len()),
            Err(e) => prop_assert!(e.is_corrupt(), "{e:?}"),
        }
    }

    #[test]
    fn split_is_consistent_at_any_base(bytes in proptest::collection::vec(
        prop_oneof![any::<u8>(), Just(b'\n')], 0..256), base in 0u64..1_000_000) {
        let at_zero = split_records(&bytes, 0);
        let shifted = split_records(&bytes, base);
        prop_assert_eq!(at_zero.records.len(), shifted.records.len());
        prop_assert_eq!(at_zero.end + base, shifted.end);
        for (a, b) in at_zero.records.iter().zip(&shifted.records) {
            prop_assert_eq!(a.offset + base, b.offset);
            prop_assert!(!a.bytes.contains(&b'\n'));
        }
    }

    #[test]
    fn repair_keeps_exactly_the_whole_records(bytes in proptest::collection::vec(
        prop_oneof![any::<u8>(), Just(b'\n')], 0..4096)) {
        let dir = Scratch::new("prop-repair");
        let path = dir.join("f.jsonl");
        fs::write(&path, &bytes).unwrap();
        let before = read_records(&path).unwrap();
        let repair = sessionkit_atomic_fs::repair_torn_tail(&path, Durability::AtomicOnly).unwrap();
        let after = fs::read(&path).unwrap();
        prop_assert_eq!(after.len() as u64, before.end);
        prop_assert_eq!(repair.removed, before.torn_tail.map_or(0, |t| t.len));
        prop_assert_eq!(&after[..], &bytes[..before.end as usize]);
    }
}
