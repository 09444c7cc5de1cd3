//! Platform code: the same functions on every platform, one file per platform.
//!
//! Linux (and other Unix) is the tested platform. The fallback keeps the crate compiling
//! elsewhere but makes no durability or permission claims there.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
pub(crate) use other::*;
