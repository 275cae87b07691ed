//! palisade-client: not built yet.
