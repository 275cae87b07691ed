//! palisade-node: not built yet.
