mod config;
mod storage;
