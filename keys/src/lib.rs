//! palisade-keys: not built yet.
