//! Integration tests of sessionkit-lock-sweeper (one test binary; topics are modules).

#[cfg(feature = "tokio")]
mod asyncs;
mod checklist;
mod memo;
mod model;
mod outcomes;
mod owners;
mod pidns;
mod safety;
mod threads;
mod util;
