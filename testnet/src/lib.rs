//! palisade-testnet: not built yet.
