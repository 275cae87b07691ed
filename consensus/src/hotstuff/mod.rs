//! 2-chain HotStuff core (being built).
