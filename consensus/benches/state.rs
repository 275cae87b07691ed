//! Benches of the registry state machine (filled by the state work).
fn main() {}
