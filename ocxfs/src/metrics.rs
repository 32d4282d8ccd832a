//! Counters of what the mount did (read by logs, tests, `ocxfs stats`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::Error;
use crate::post_guard::GuardStats;

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
    /// The most recent failure counted, as the user reads it.
    last_error: Mutex<Option<String>>,
    /// POSTs by object (`documents/<id>`, `samples/<id>`).
    posts_by_object: Mutex<BTreeMap<String, u64>>,
}

/// What `.ocxfs/stats.json` holds and `ocxfs stats` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub posts: u64,
    pub post_failures: u64,
    pub posts_by_object: BTreeMap<String, u64>,
    pub url_reuses: u64,
    pub storage_gets: u64,
    pub storage_retries: u64,
    pub bytes_fetched: u64,
    pub bytes_served: u64,
    pub block_hits: u64,
    pub block_misses: u64,
    pub errors: BTreeMap<String, u64>,
    /// The most recent failure counted in `errors`, in words.
    #[serde(default)]
    pub last_error: Option<String>,
    pub memory: Memory,
    /// Present when `--cache-dir` is set.
    pub disk_cache: Option<DiskCacheStats>,
    pub documents: usize,
    pub samples: usize,
    /// Listing entries left out of the tree (malformed, invalid or duplicate).
    #[serde(default)]
    pub listing_skipped: usize,
    pub uptime_seconds: u64,
    /// The POST budget and the shared cache, when set.
    #[serde(flatten)]
    pub guard: GuardStats,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskCacheStats {
    pub hits: u64,
    pub misses: u64,
    pub damaged_blocks: u64,
    pub write_failures: u64,
    pub evictions: u64,
    pub used_bytes: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub budget: u64,
    pub cached_bytes: u64,
    pub in_flight_bytes: u64,
    /// The daemon's resident set size.
    pub rss_bytes: u64,
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
        *self.last_error.lock().expect("metrics lock poisoned") = Some(error.chain().to_string());
    }

    pub fn count_post(&self, object: &str) {
        Self::add(&self.posts, 1);
        *self
            .posts_by_object
            .lock()
            .expect("metrics lock poisoned")
            .entry(object.to_owned())
            .or_default() += 1;
    }

    /// The counters; the caller fills in what they do not know (memory,
    /// object counts, uptime).
    pub fn snapshot(&self) -> Snapshot {
        let get = Self::get;
        Snapshot {
            posts: get(&self.posts),
            post_failures: get(&self.post_failures),
            posts_by_object: self
                .posts_by_object
                .lock()
                .expect("metrics lock poisoned")
                .clone(),
            url_reuses: get(&self.url_reuses),
            storage_gets: get(&self.storage_gets),
            storage_retries: get(&self.storage_retries),
            bytes_fetched: get(&self.bytes_fetched),
            bytes_served: get(&self.bytes_served),
            block_hits: get(&self.block_hits),
            block_misses: get(&self.block_misses),
            errors: self
                .errors
                .lock()
                .expect("metrics lock poisoned")
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            last_error: self
                .last_error
                .lock()
                .expect("metrics lock poisoned")
                .clone(),
            ..Snapshot::default()
        }
    }
}
