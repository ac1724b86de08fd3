//! The price book (being written).
