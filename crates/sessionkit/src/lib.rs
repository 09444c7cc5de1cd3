//! Facade (being written).
