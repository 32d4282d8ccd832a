//! ocxfs: a One Codex account as a read-only filesystem.

pub mod api;
pub mod cache;
pub mod catalog;
pub mod connect_failure;
pub mod demo;
pub mod disk_cache;
pub mod download;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod http_client;
pub mod interrupt;
pub mod metrics;
pub mod mount;
pub mod names;
pub mod object;
pub mod prefetch_cmd;
pub mod presign;
pub mod private_file;
pub mod readahead;
pub mod reader;
pub mod retry;
pub mod size;
pub mod stats;
pub mod storage;
pub mod url_store;
