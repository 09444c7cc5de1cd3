//! Platform code: the same functions on every platform, one file per platform.
//!
//! Both are hints for the background threads (compaction, maintenance): nothing depends on
//! them for correctness, so where a platform lacks them they do nothing.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub(crate) use other::*;
