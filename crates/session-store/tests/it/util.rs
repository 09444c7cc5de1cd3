//! Test fixtures, and the workspace's scratch directories, re-exported.

use std::path::{Path, PathBuf};

pub(crate) use sessionkit_test_support::Scratch;

/// The fixtures directory.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
