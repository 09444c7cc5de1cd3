//! Helpers shared by the crate's unit tests.

use crate::{ListQuery, Store};

/// The cap's slack as [`Maintenance::max_entries`](crate::Maintenance::max_entries) documents
/// it, written apart from the code's, so that a test that uses it pins the formula.
pub(crate) fn documented_slack(cap: usize) -> usize {
    if cap < 50 { 1 } else { (cap / 10).max(25) }
}

/// The room protection leaves under a cap, as
/// [`Maintenance::protect`](crate::Maintenance::protect) documents it: half the cap, at most
/// 25.
pub(crate) fn documented_room(cap: usize) -> usize {
    if cap >= 50 { 25 } else { cap / 2 }
}

/// The store's keys, sorted.
pub(crate) fn keys(store: &Store) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(&ListQuery::all())
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    keys.sort();
    keys
}

/// Asserts that `store` reached the files left by `compactions` compactions of another
/// handle as it should: it follows one compaction, and reloads the store after two.
pub(crate) fn assert_reached(store: &Store, compactions: usize) {
    let counters = store.counters();
    let expected = if compactions == 1 { (1, 0) } else { (0, 1) };
    assert_eq!(
        (counters.followed_compactions, counters.reloads),
        expected,
        "{compactions} compactions: {counters:?}"
    );
}
