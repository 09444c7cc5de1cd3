//! Integration tests of sessionkit-atomic-fs (one test binary; topics are modules).

mod faults;
mod json;
mod jsonl;
mod kernel;
mod orphans;
mod props;
mod replace;
#[cfg(feature = "tokio")]
mod tokio;
mod util;
mod write_behind;
