mod api;
mod cluster;
mod config;
mod http;
mod state_store;
mod storage;
