//! Integration tests of sessionkit-write-lock (one test binary; topics are modules).

mod acquire;
#[cfg(feature = "tokio")]
mod asyncs;
mod config;
mod events;
mod fence;
mod lifecycle;
mod lookup;
mod pidns;
mod record;
#[cfg(feature = "tokio")]
mod signals;
mod stale;
mod suspend;
mod util;
mod watchdog;
