//! The `sessionkit` command line tool (being written).
fn main() {}
