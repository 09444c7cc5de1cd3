//! Crash and power-loss torture harnesses for sessionkit, shared by the `sessionkit-torture`
//! binary and the integration tests.
//!
//! - [`kill9`]: SIGKILL a writer process at random moments and check the target is always
//!   byte-exactly an old or a new version, with no temp file left after cleanup (plan R5).
//! - [`power`]: kill a durable writer on an ext4 loop image, copy the image, replay the journal
//!   and check that no acknowledged write was lost or corrupted (plan R6, §B.2).
//! - [`lockcheck`]: the Jepsen-style lock-set checker for the write lock: processes increment a
//!   counter under the lock while SIGKILL and SIGSTOP nemeses strike; no lost update, no
//!   overlap, strictly increasing generations, and the naive-steal mutant caught (plan R7).
//! - [`child`]: the writer process both harnesses spawn (the binary's `child-writer` role).
//! - [`lock_child`]: the lock-set worker (the binary's `child-locker` role).
//! - [`payload`]: recognisable payloads and their checkers.
//! - [`flags`]: the `--flag value` command lines of the binary's roles.
//! - [`store`]: kill -9 torture of a durable session-store writer: every acknowledged update
//!   is there on reopen, through compactions and torn tails.
//! - [`store_power`]: power-loss images of the same writer on ext4 (no acknowledged update
//!   lost), and the no-fsync mutant they must catch.
//! - [`store_child`]: the session-store writer process (the binary's `store-child` role) and
//!   its deterministic workload.
//!
//! Every run derives its randomness from one printed seed ([`rng`]), so a failure can be
//! replayed with `--seed`.

pub mod child;
pub mod cli;
pub mod flags;
pub mod kill9;
pub mod lock_child;
pub mod lockcheck;
pub mod payload;
pub mod power;
pub mod process;
pub mod rng;
pub mod scratch;
pub mod store;
pub mod store_child;
pub mod store_power;
