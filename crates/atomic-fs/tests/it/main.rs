//! Integration tests of sessionkit-atomic-fs (one test binary; topics are modules).

mod util;
