//! `palisade-node run --config FILE`.
fn main() {}
