//! Integration tests of sessionkit-write-lock (one test binary; topics are modules).

mod acquire;
mod lookup;
mod record;
mod stale;
mod util;
