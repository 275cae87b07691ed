//! Registry state machine (being built).
