//! palisade-node integration tests (one binary): storage suite over every
//! backend, config, API error cases, an in-process 4-node cluster.

mod it;
