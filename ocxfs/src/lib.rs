//! ocxfs: a One Codex account as a read-only filesystem.

pub mod api;
pub mod cache;
pub mod catalog;
pub mod demo;
pub mod disk_cache;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod interrupt;
pub mod metrics;
pub mod mount;
pub mod names;
pub mod prefetch;
pub mod presign;
pub mod private_file;
pub mod reader;
pub mod stats;
pub mod storage;
pub mod url_store;
pub mod warmup;
