mod config;
mod state_store;
mod storage;
