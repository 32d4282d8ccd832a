//! Counters of what the mount did, for logs, tests and `ocxfs stats`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::Error;

#[derive(Debug, Default)]
pub struct Metrics {
    /// `download_uri` POSTs sent (each may cost money).
    pub posts: AtomicU64,
    pub post_failures: AtomicU64,
    /// Opens and reads served by a cached presigned URL.
    pub url_reuses: AtomicU64,
    /// Ranged GETs sent to storage, retries included.
    pub storage_gets: AtomicU64,
    pub storage_retries: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub bytes_served: AtomicU64,
    pub block_hits: AtomicU64,
    pub block_misses: AtomicU64,
    /// Failures by kind (`Error::kind`), each counted where it is logged.
    errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn count_error(&self, error: &Error) {
        *self
            .errors
            .lock()
            .expect("metrics lock poisoned")
            .entry(error.kind())
            .or_default() += 1;
    }

    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        self.errors.lock().expect("metrics lock poisoned").clone()
    }
}
