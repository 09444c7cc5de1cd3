//! Integration tests of sessionkit-write-lock (one test binary; topics are modules).

mod lookup;
mod record;
