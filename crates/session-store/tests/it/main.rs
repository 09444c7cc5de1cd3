//! Integration tests of sessionkit-session-store (one test binary; topics are modules).

// Entries, patches and the `updatedAt` rule, with RFC 7396's own examples.
mod entry;
// The OpenClaw fixture: load, save, load again; corrupt snapshots; quarantine.
mod fixture;
// The journal format: exact lines, torn tails, corruption.
mod journal;
// Maintenance: the cap, pruning, transcripts, archives, orphans, the disk budget.
mod maintain;
// Memory use of a loaded registry, counted by an allocator.
mod memory;
// Properties: merge patch against a reference, journal round trips and truncations, replay
// idempotence.
mod props;
// The in-memory state: apply, listing, indexes, replay of duplicates.
mod state;
// The store: reads and writes, reopening, group commit, compaction, recovery.
mod store;
// Generators of raw JSON text, entries, patches and records.
mod strategies;
mod util;
