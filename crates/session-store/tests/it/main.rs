//! Integration tests of sessionkit-session-store (one test binary; topics are modules).

// The async API (feature `tokio`).
#[cfg(feature = "tokio")]
mod asyncs;
// Corrupt inputs at the store's level: truncations and flipped bytes.
mod corrupt;
// Entries, patches and the `updatedAt` rule, with RFC 7396's own examples.
mod entry;
// A hung holder of the journal's lock; a compaction that keeps failing; a full disk.
mod failures;
// The OpenClaw fixture: load, save, load again; corrupt snapshots; quarantine.
mod fixture;
// The journal format: exact lines, torn tails, corruption.
mod journal;
// Maintenance: the cap, pruning, transcripts, archives, orphans, the disk budget.
mod maintain;
// Memory use of a loaded registry, counted by an allocator.
mod memory;
// The store against a model: updates, two handles, compactions, crashes and torn tails.
mod model;
// Several processes writing one store through compactions (this binary re-run as children).
mod procs;
// Properties: merge patch against a reference, journal round trips and truncations, replay
// idempotence.
mod props;
// The in-memory state: apply, listing, indexes, replay of duplicates.
mod state;
// The store: reads and writes, reopening, group commit, compaction, recovery.
mod store;
// Transcripts: fenced appends, torn tails, suspend and resume.
mod transcript;
// Generators of raw JSON text, entries, patches and records.
mod strategies;
mod util;
