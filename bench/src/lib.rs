//! Placeholder while the benchmark is written.
