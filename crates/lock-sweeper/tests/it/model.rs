//! The sweep's decision against a model of the crate docs' outcome table: for any mix of
//! OpenClaw records (owner alive, dead, a zombie, its pid reused, or not to be looked up; fresh
//! or old), records without a pid (fresh or past the grace) and other programs' `.lock` files
//! (fresh or old), exactly the ones the table calls removable are removed, and a dry run removes
//! nothing and reports the same entries stale as a real sweep.
//!
//! Owners come from a fake lookup, so no process is started. Ages are none or a day, against
//! the 30 s grace a sweep gives a file without a record, so only a hung sweep could change an
//! outcome.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sessionkit_lock_sweeper::{
    Liveness, OwnerLookup, ProcessProbe, SweepEntry, SweepReport, Sweeper,
};

use crate::util::{Scratch, names, openclaw, set_modified_ago};

/// The start time every planted record names.
const START: u64 = 4242;
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Alive,
    Zombie,
    Dead,
    /// Alive, but started at another time than the record says.
    Recycled,
    /// The lookup fails (no permission, say).
    Unknown,
}

#[derive(Clone, Copy, Debug)]
enum Sidecar {
    OpenClaw {
        owner: Owner,
        old: bool,
    },
    /// `{}` or an empty file: no record to judge, only an age.
    NoRecord {
        empty: bool,
        old: bool,
    },
    /// Another program's file with a `.lock` name.
    Foreign {
        old: bool,
    },
}

/// The crate docs' table: which sidecars a sweep removes.
fn removable(sidecar: Sidecar) -> bool {
    match sidecar {
        Sidecar::OpenClaw { owner, .. } => {
            matches!(owner, Owner::Dead | Owner::Zombie | Owner::Recycled)
        }
        Sidecar::NoRecord { old, .. } => old,
        Sidecar::Foreign { .. } => false,
    }
}

/// Which sidecars the report calls stale. The judge goes by age for any file without a
/// record, so an old file of another program is stale to it, though the sweep never touches it
/// (`SweepEntry::is_stale` and `totals.stale` say so).
fn reported_stale(sidecar: Sidecar) -> bool {
    removable(sidecar) || matches!(sidecar, Sidecar::Foreign { old: true })
}

#[derive(Debug)]
struct FakeOwners(HashMap<u32, Owner>);

impl OwnerLookup for FakeOwners {
    fn probe(&self, pid: u32) -> io::Result<ProcessProbe> {
        match self.0.get(&pid) {
            Some(Owner::Alive) => Ok(ProcessProbe::new(Liveness::Alive, Some(START))),
            Some(Owner::Recycled) => Ok(ProcessProbe::new(Liveness::Alive, Some(START + 1))),
            Some(Owner::Zombie) => Ok(ProcessProbe::new(Liveness::Zombie, Some(START))),
            Some(Owner::Dead) | None => Ok(ProcessProbe::new(Liveness::Dead, None)),
            Some(Owner::Unknown) => Err(io::Error::new(io::ErrorKind::PermissionDenied, "fake")),
        }
    }

    fn cmdline(&self, _pid: u32) -> io::Result<Option<Vec<String>>> {
        Ok(None)
    }
}

fn sidecar() -> impl Strategy<Value = Sidecar> {
    let owner = prop::sample::select(vec![
        Owner::Alive,
        Owner::Zombie,
        Owner::Dead,
        Owner::Recycled,
        Owner::Unknown,
    ]);
    prop_oneof![
        3 => (owner, any::<bool>()).prop_map(|(owner, old)| Sidecar::OpenClaw { owner, old }),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(empty, old)| Sidecar::NoRecord { empty, old }),
        1 => any::<bool>().prop_map(|old| Sidecar::Foreign { old }),
    ]
}

/// Plants `sidecars` in `dir` as `NN.jsonl.lock`, each OpenClaw record with its own pid (far
/// above Linux's pid limit, so never this process's), and returns the fake lookup of them.
fn plant(dir: &Path, sidecars: &[Sidecar]) -> FakeOwners {
    let mut owners = HashMap::new();
    for (i, &sidecar) in sidecars.iter().enumerate() {
        let path = dir.join(format!("{i:02}.jsonl.lock"));
        let pid = 5_000_000 + i as u32;
        match sidecar {
            Sidecar::OpenClaw { owner, old } => {
                owners.insert(pid, owner);
                openclaw(&path, pid, START, if old { DAY } else { Duration::ZERO });
            }
            Sidecar::NoRecord { empty, old } => {
                fs::write(&path, if empty { "" } else { "{}" }).unwrap();
                if old {
                    set_modified_ago(&path, DAY);
                }
            }
            Sidecar::Foreign { old } => {
                fs::write(&path, "not a lock record\n").unwrap();
                if old {
                    set_modified_ago(&path, DAY);
                }
            }
        }
    }
    FakeOwners(owners)
}

fn sweep(dir: &Path, owners: FakeOwners, dry_run: bool) -> SweepReport {
    let mut builder = Sweeper::builder();
    builder.lookup(Arc::new(owners)).dry_run(dry_run);
    builder.build().unwrap().sweep(&[dir]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_sweep_removes_exactly_what_the_table_calls_removable(
        sidecars in proptest::collection::vec(sidecar(), 0..10),
        dry_run in any::<bool>(),
    ) {
        let scratch = Scratch::new("model");
        let dir = scratch.dir("d");
        let owners = plant(&dir, &sidecars);
        let pick = |keep: fn(Sidecar) -> bool| -> BTreeSet<String> {
            sidecars
                .iter()
                .enumerate()
                .filter(|&(_, &s)| keep(s))
                .map(|(i, _)| format!("{i:02}.jsonl.lock"))
                .collect()
        };
        let expected = pick(removable);
        let expected_stale = pick(reported_stale);

        let report = sweep(&dir, owners, dry_run);
        prop_assert_eq!(names(&report).len(), sidecars.len());
        let named = |keep: fn(&SweepEntry) -> bool| -> BTreeSet<String> {
            report
                .entries
                .iter()
                .filter(|e| keep(e))
                .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        let stale = named(SweepEntry::is_stale);
        prop_assert_eq!(&stale, &expected_stale, "{:?}", sidecars);
        // What a dry run says it would remove is what a real sweep removes.
        prop_assert_eq!(&named(SweepEntry::is_removable), &expected, "{:?}", sidecars);
        let removed = named(|e| e.removed);
        let left: BTreeSet<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        if dry_run {
            prop_assert!(removed.is_empty(), "{:?}", removed);
            prop_assert_eq!(left.len(), sidecars.len());
        } else {
            prop_assert_eq!(&removed, &expected, "{:?}", sidecars);
            prop_assert!(left.is_disjoint(&expected), "{:?}", left);
            prop_assert_eq!(left.len() + expected.len(), sidecars.len());
        }
        prop_assert_eq!(report.totals.removed as usize, removed.len());
        prop_assert_eq!(report.totals.stale as usize, expected_stale.len());
    }
}
