mod api;
mod cluster;
mod config;
mod http;
mod probes;
mod recovery;
mod state_store;
mod storage;
