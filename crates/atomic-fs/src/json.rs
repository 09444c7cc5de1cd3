//! Reading a whole JSON file into any `Deserialize` type.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Ctx, Error, Operation, Result, Step};

/// Reads `path` and parses it as one JSON document.
///
/// # Errors
///
/// The three failures are kept apart: [`Error::NotFound`] if the file does not exist,
/// [`Error::Corrupt`] (with line and column) if it is not valid JSON or not of the shape `T`
/// expects, and [`Error::Io`] for any other read failure.
///
/// ```
/// use std::collections::BTreeMap;
/// # fn main() -> Result<(), sessionkit_atomic_fs::Error> {
/// # let path = std::env::temp_dir().join(format!("sk-doc-json-{}.json", std::process::id()));
/// sessionkit_atomic_fs::write_json(&path, &BTreeMap::from([("a", 1)]))?;
/// let back: BTreeMap<String, u32> = sessionkit_atomic_fs::read_json(&path)?;
/// assert_eq!(back["a"], 1);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok(())
/// # }
/// ```
pub fn read_json<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    let path = path.as_ref();
    let ctx = Ctx::new(Operation::Read, path);
    let bytes = std::fs::read(path).map_err(|e| ctx.read_io(Step::Read, e))?;
    parse_json(path, &bytes, 0)
}

/// Parses one JSON document that starts at byte `offset` of `path`.
pub(crate) fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8], offset: u64) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        path: path.to_path_buf(),
        line: source.line(),
        column: source.column(),
        offset,
        source,
    })
}
