//! palisade-audits: not built yet.
