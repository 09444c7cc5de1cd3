//! Placeholder while the torture harness is written.
