//! Serving reads: per-object state, download jobs that fill the block
//! cache from ranged GETs (with retries and URL refresh), and assembling
//! each FUSE read from blocks.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::api::ObjectId;
use crate::cache::{BLOCK_SIZE, BlockCache, BlockKey, Claim, Job, Slot};
use crate::disk_cache::{DiskCache, Meta};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::prefetch::Prefetch;
use crate::presign::{PresignCache, PresignedUrl};
use crate::storage::{RangeAnswer, StorageClient};

/// Read-ahead is fetched in parts of this size by concurrent GETs: large
/// enough that request overhead is small, small enough that several run
/// at once and a cancelled part wastes little.
const PART_SIZE: u64 = 8 * 1024 * 1024;
const UNKNOWN_SIZE: u64 = u64::MAX;
/// 64 MiB of blocks may wait for the disk; beyond that blocks are not kept.
const MAX_PENDING_DISK_WRITES: usize = 1024;

/// Retries of one ranged GET on transient failures (5xx, 429, resets,
/// short bodies, stalls): exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        let jitter = cap.mul_f64(rand::rng().random::<f64>());
        // Retry-After is the server's explicit word: honour it, but do not
        // hang a reader for minutes.
        retry_after.map_or(jitter, |r| r.min(Duration::from_secs(30)).max(jitter))
    }
}

/// The bytes of one read, as slices of cached blocks: nothing is copied
/// until the reply is written.
#[derive(Debug, Default)]
pub struct ReadData(pub Vec<Bytes>);

impl ReadData {
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One version of one object, shared by all its open handles.
pub struct ObjectState {
    pub object: ObjectId,
    /// Cache key of this version: a changed object gets a new state and
    /// so never mixes blocks with the old one.
    file_key: u64,
    size: AtomicU64,
    etag: Mutex<Option<String>>,
    /// The disk cache has this version's ETag and size.
    meta_saved: AtomicBool,
    stale: AtomicBool,
    /// Open handles of this version.
    handles: AtomicUsize,
}

impl ObjectState {
    pub fn size(&self) -> Option<u64> {
        Some(self.size.load(Ordering::Acquire)).filter(|&s| s != UNKNOWN_SIZE)
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Storage's word on the size wins over the listing's.
    fn learn_size(&self, total: u64) {
        let old = self.size.swap(total, Ordering::AcqRel);
        if old != UNKNOWN_SIZE && old != total {
            tracing::warn!(object = %self.object, listed = old, stored = total, "storage size differs from the listing; using storage's");
        }
    }

    /// The first ETag seen pins the version; any other one is a change.
    fn check_etag(&self, etag: Option<&str>) -> Result<()> {
        let Some(etag) = etag else { return Ok(()) };
        let mut pinned = self.etag.lock().expect("etag lock poisoned");
        match pinned.as_deref() {
            None => {
                *pinned = Some(etag.to_owned());
                Ok(())
            }
            Some(p) if p == etag => Ok(()),
            Some(p) => Err(Error::Changed {
                expected: p.to_owned(),
                found: etag.to_owned(),
            }),
        }
    }

    fn etag(&self) -> Option<String> {
        self.etag.lock().expect("etag lock poisoned").clone()
    }
}

/// An open handle: its read-ahead state and the read-ahead jobs it started.
pub struct OpenFile {
    pub object: Arc<ObjectState>,
    /// Reads through this handle fill the kernel's page cache (no O_DIRECT,
    /// no direct_io), so what it has read sequentially need not be kept.
    page_cached: bool,
    prefetch: Mutex<Prefetch>,
    readahead: Mutex<Vec<(Arc<Job>, AbortHandle)>>,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        self.object.handles.fetch_sub(1, Ordering::AcqRel);
        for (_, abort) in self
            .readahead
            .get_mut()
            .expect("readahead lock poisoned")
            .drain(..)
        {
            abort.abort();
        }
    }
}

pub struct Reader {
    cache: BlockCache,
    storage: StorageClient,
    presign: Arc<PresignCache>,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
    next_file_key: AtomicU64,
    disk: Option<Arc<DiskCache>>,
    /// Bounds the blocks waiting to be written to disk (and their memory).
    disk_writes: Arc<Semaphore>,
}

impl Reader {
    pub fn new(
        storage: StorageClient,
        presign: Arc<PresignCache>,
        memory_budget: u64,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Reader {
        Reader {
            cache: BlockCache::new(memory_budget),
            storage,
            presign,
            metrics,
            retry,
            next_file_key: AtomicU64::new(1),
            disk: None,
            disk_writes: Arc::new(Semaphore::new(MAX_PENDING_DISK_WRITES)),
        }
    }

    /// Keep blocks in `disk` too.
    pub fn with_disk_cache(mut self, disk: Arc<DiskCache>) -> Reader {
        self.disk = Some(disk);
        self
    }

    pub fn presign(&self) -> &PresignCache {
        &self.presign
    }

    pub fn disk_cache(&self) -> Option<&Arc<DiskCache>> {
        self.disk.as_ref()
    }

    /// Wait (up to `limit`) for blocks still being written to disk, so that
    /// an unmount keeps what was read.
    pub async fn flush_disk_writes(&self, limit: Duration) {
        let all = self
            .disk_writes
            .acquire_many(MAX_PENDING_DISK_WRITES as u32);
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("some blocks were not written to the disk cache before exit");
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn memory_budget(&self) -> u64 {
        self.cache.limit()
    }

    pub fn cache_usage(&self) -> (u64, u64) {
        self.cache.usage()
    }

    /// State for a version of `object`. With a disk cache that knows the
    /// object (and agrees with the listing's size), its version is pinned
    /// from there, so cached blocks can be used without asking storage.
    pub fn new_object(&self, object: ObjectId, size: Option<u64>) -> Arc<ObjectState> {
        let known = self.disk.as_ref().and_then(|d| {
            let meta = d.meta(&object)?;
            if size.is_some_and(|s| s != meta.size) {
                d.forget(&object);
                return None;
            }
            Some(meta)
        });
        Arc::new(ObjectState {
            file_key: self.next_file_key.fetch_add(1, Ordering::Relaxed),
            size: AtomicU64::new(
                size.or(known.as_ref().map(|m| m.size))
                    .unwrap_or(UNKNOWN_SIZE),
            ),
            etag: Mutex::new(known.map(|m| m.etag)),
            meta_saved: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
            object,
        })
    }

    /// Make `object` readable: a presigned URL (one POST unless one is
    /// cached, or the disk cache already knows the object: then the POST
    /// waits until a block must come from storage) and, when the listing
    /// did not say, the size from storage.
    pub async fn open(
        self: &Arc<Self>,
        object: Arc<ObjectState>,
        page_cached: bool,
    ) -> Result<OpenFile> {
        let on_disk = self.disk.is_some() && object.etag().is_some() && object.size().is_some();
        if !on_disk {
            self.presign.get(&object.object).await?;
        }
        if object.size().is_none() {
            // The first block tells the size (Content-Range) and is kept.
            self.block(&object, 0).await?;
        }
        object.handles.fetch_add(1, Ordering::AcqRel);
        Ok(OpenFile {
            object,
            page_cached,
            prefetch: Mutex::new(Prefetch::default()),
            readahead: Mutex::new(Vec::new()),
        })
    }

    /// Bytes `[offset, offset + len)` of the file, short only at its end.
    pub async fn read(
        self: &Arc<Self>,
        file: &OpenFile,
        offset: u64,
        len: u64,
    ) -> Result<ReadData> {
        let state = &file.object;
        tracing::trace!(object = %state.object, offset, len, "read");
        if state.is_stale() {
            return Err(Error::Changed {
                expected: state.etag().unwrap_or_default(),
                found: "a newer version".into(),
            });
        }
        let size = state
            .size()
            .ok_or_else(|| Error::InvalidResponse("size unknown after open".into()))?;
        if offset >= size || len == 0 {
            return Ok(ReadData::default());
        }
        let end = (offset + len).min(size);
        let blocks = offset / BLOCK_SIZE..end.div_ceil(BLOCK_SIZE);
        let plan = file
            .prefetch
            .lock()
            .expect("prefetch lock poisoned")
            .on_read(offset, end - offset, size);
        if plan.cancel {
            tracing::debug!(object = %state.object, offset, "far seek: cancelling read-ahead");
            self.cancel_readahead(file);
        }
        for job in self
            .cache
            .claim(state.file_key, blocks.clone(), Claim::Demand)
            .jobs
        {
            tracing::trace!(object = %state.object, blocks = ?job.blocks, "demand fetch");
            self.spawn_job(state.clone(), job);
        }
        if let Some(ahead) = plan.ahead {
            self.start_readahead(file, ahead);
        }
        // Wait for the last block first: downloads complete in order, so the
        // earlier blocks are then ready too, and the read wakes up once per
        // download rather than once per block.
        let mut fetched = Vec::with_capacity((blocks.end - blocks.start) as usize);
        for index in blocks.clone().rev() {
            fetched.push(self.block(state, index).await?);
        }
        let mut parts = Vec::with_capacity(fetched.len());
        for (index, block) in blocks.zip(fetched.into_iter().rev()) {
            let block_start = index * BLOCK_SIZE;
            let from = offset.max(block_start) - block_start;
            let to = (end - block_start).min(block.len() as u64);
            if from >= to {
                return Err(Error::InvalidResponse(format!(
                    "block {index} is shorter than the object"
                )));
            }
            parts.push(block.slice(from as usize..to as usize));
        }
        // Only while this is the file's one open handle: another reader's
        // read-ahead, behind this one, would fetch dropped blocks again.
        if plan.streaming && file.page_cached && state.handles.load(Ordering::Acquire) == 1 {
            // The blocks this read covered whole are now in the page cache;
            // a block shared with a neighbouring read stays for that read.
            let whole_end = if end == size {
                end.div_ceil(BLOCK_SIZE)
            } else {
                end / BLOCK_SIZE
            };
            self.cache
                .release(state.file_key, offset.div_ceil(BLOCK_SIZE)..whole_end);
        }
        let data = ReadData(parts);
        Metrics::add(&self.metrics.bytes_served, data.len() as u64);
        Ok(data)
    }

    /// One block, from the cache, from the job fetching it, or fetched now.
    async fn block(self: &Arc<Self>, state: &Arc<ObjectState>, index: u64) -> Result<Bytes> {
        let key = BlockKey {
            file: state.file_key,
            index,
        };
        // A hit is a block ready in memory; waiting for its download is a miss.
        let mut slot = self.cache.slot(key);
        let hit = matches!(slot, Slot::Ready(_));
        Metrics::add(
            if hit {
                &self.metrics.block_hits
            } else {
                &self.metrics.block_misses
            },
            1,
        );
        // A block whose download another handle cancelled is claimed again;
        // the bound only guards against a livelock.
        for _ in 0..16 {
            match slot {
                Slot::Ready(b) => return Ok(b),
                Slot::Pending(job) => match job.block(index).await {
                    Err(Error::Cancelled) => {}
                    other => return other,
                },
                Slot::Absent => {
                    for job in self
                        .cache
                        .claim(state.file_key, index..index + 1, Claim::Demand)
                        .jobs
                    {
                        self.spawn_job(state.clone(), job);
                    }
                }
            }
            slot = self.cache.slot(key);
        }
        Err(Error::Cancelled)
    }

    fn start_readahead(self: &Arc<Self>, file: &OpenFile, range: Range<u64>) {
        let state = &file.object;
        let mut jobs = Vec::new();
        let mut part_start = range.start;
        while part_start < range.end {
            let part_end = (part_start + PART_SIZE).min(range.end);
            let blocks = part_start / BLOCK_SIZE..part_end.div_ceil(BLOCK_SIZE);
            let claimed = self.cache.claim(state.file_key, blocks, Claim::ReadAhead);
            jobs.extend(claimed.jobs);
            if let Some(stop) = claimed.budget_stop {
                // Memory is short: ask again on a later read instead of growing.
                let until = (stop * BLOCK_SIZE).max(part_start);
                file.prefetch
                    .lock()
                    .expect("prefetch lock poisoned")
                    .granted_until(until);
                break;
            }
            part_start = part_end;
        }
        let mut mine = file.readahead.lock().expect("readahead lock poisoned");
        mine.retain(|(job, _)| !job.is_finished());
        for job in jobs {
            tracing::trace!(object = %state.object, blocks = ?job.blocks, "read-ahead fetch");
            let abort = self.spawn_job(state.clone(), job.clone());
            mine.push((job, abort));
        }
    }

    fn cancel_readahead(&self, file: &OpenFile) {
        let jobs: Vec<_> = file
            .readahead
            .lock()
            .expect("readahead lock poisoned")
            .drain(..)
            .collect();
        for (job, abort) in jobs {
            abort.abort();
            self.cache.fail_job(&job, Error::Cancelled);
        }
    }

    fn spawn_job(self: &Arc<Self>, state: Arc<ObjectState>, job: Arc<Job>) -> AbortHandle {
        // Frees the job's blocks however the task ends: an error, an abort,
        // or an abort before it first ran (the task is then dropped without
        // running, and the guard with it), so no block stays pending with
        // readers waiting on it.
        let guard = JobGuard {
            reader: self.clone(),
            job,
        };
        tokio::spawn(async move {
            let (reader, job) = (&guard.reader, &guard.job);
            if let Err(error) = reader.run_job(&state, job).await {
                if let Error::Changed { .. } = error {
                    state.stale.store(true, Ordering::Release);
                    if let Some(disk) = &reader.disk {
                        disk.forget(&state.object);
                    }
                }
                if !matches!(error, Error::Cancelled) {
                    reader.metrics.count_error(&error);
                    tracing::error!(object = %state.object, kind = error.kind(), %error, "download failed");
                }
                reader.cache.fail_job(job, error);
            }
            drop(guard);
        })
        .abort_handle()
    }

    /// Download the job's blocks, resuming after transient failures and
    /// refreshing the URL (twice at most) when storage says it expired.
    async fn run_job(&self, state: &ObjectState, job: &Job) -> Result<()> {
        if self.serve_from_disk(state, job).await {
            return Ok(());
        }
        let mut url = self.presign.get(&state.object).await?;
        let mut failures = 0;
        let mut refreshes = 0;
        loop {
            let first = job.blocks.start + job.done();
            if first >= job.blocks.end {
                return Ok(());
            }
            match self.fetch(state, job, &url, first).await {
                Ok(()) => {}
                // Twice at most: the presign cache bounds the POSTs anyway.
                Err(Error::UrlExpired) if refreshes < 2 => {
                    refreshes += 1;
                    tracing::info!(object = %state.object, "presigned URL expired; asking for a new one");
                    url = self.presign.refresh(&state.object, &url).await?;
                }
                Err(e) if e.is_transient() && failures + 1 < self.retry.attempts => {
                    failures += 1;
                    Metrics::add(&self.metrics.storage_retries, 1);
                    let retry_after = match &e {
                        Error::RateLimited { retry_after } => *retry_after,
                        _ => None,
                    };
                    let delay = self.retry.delay(failures, retry_after);
                    tracing::warn!(object = %state.object, error = %e, attempt = failures, ?delay, "retrying ranged GET");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One ranged GET from block `first` to the job's end, feeding blocks
    /// into the cache as they complete.
    async fn fetch(
        &self,
        state: &ObjectState,
        job: &Job,
        url: &PresignedUrl,
        first: u64,
    ) -> Result<()> {
        let start = first * BLOCK_SIZE;
        let end = state.size().map_or(job.blocks.end * BLOCK_SIZE, |s| {
            s.min(job.blocks.end * BLOCK_SIZE)
        });
        Metrics::add(&self.metrics.storage_gets, 1);
        if start >= end {
            return self.finish_past_end(job);
        }
        let etag = state.etag();
        let mut body = match self
            .storage
            .get_range(url.url(), start, end, etag.as_deref())
            .await?
        {
            RangeAnswer::Body(body) => body,
            RangeAnswer::PastEnd { total } => {
                match total {
                    Some(total) => state.learn_size(total),
                    None if state.size().is_none() => {
                        return Err(Error::InvalidResponse(
                            "storage would not tell the object's size".into(),
                        ));
                    }
                    None => {}
                }
                return self.finish_past_end(job);
            }
        };
        state.check_etag(body.etag.as_deref())?;
        if state.size() != Some(body.total) {
            state.learn_size(body.total);
        }
        let total = body.total;
        let mut index = first;
        let block_len = |index: u64| (total - index * BLOCK_SIZE).min(BLOCK_SIZE) as usize;
        let mut buf = BytesMut::with_capacity(block_len(index));
        while let Some(mut chunk) = body.chunk().await? {
            Metrics::add(&self.metrics.bytes_fetched, chunk.len() as u64);
            while !chunk.is_empty() {
                let take = (block_len(index) - buf.len()).min(chunk.len());
                buf.extend_from_slice(&chunk.split_to(take));
                if buf.len() == block_len(index) {
                    let block = buf.split().freeze();
                    self.keep_on_disk(state, index, &block);
                    self.cache.complete_block(job, block);
                    index += 1;
                    if index * BLOCK_SIZE < total {
                        buf.reserve(block_len(index));
                    }
                }
            }
        }
        if index < job.blocks.end && index * BLOCK_SIZE >= total {
            return self.finish_past_end(job);
        }
        Ok(())
    }

    /// Serve the job's leading blocks from the disk cache; true when it
    /// had them all.
    async fn serve_from_disk(&self, state: &ObjectState, job: &Job) -> bool {
        let (Some(disk), Some(etag), Some(size)) = (&self.disk, state.etag(), state.size()) else {
            return false;
        };
        loop {
            let index = job.blocks.start + job.done();
            if index >= job.blocks.end || index * BLOCK_SIZE >= size {
                return index >= job.blocks.end;
            }
            let (disk, object, etag2) = (disk.clone(), state.object.clone(), etag.clone());
            let block = tokio::task::spawn_blocking(move || disk.get(&object, &etag2, index))
                .await
                .ok()
                .flatten();
            let expected = (size - index * BLOCK_SIZE).min(BLOCK_SIZE) as usize;
            match block {
                Some(b) if b.len() == expected => self.cache.complete_block(job, b),
                _ => return false,
            }
        }
    }

    /// Write a block fetched from storage to the disk cache, in the
    /// background. When too many writes are pending (a disk slower than
    /// the network) the block is not kept: caching never slows a read.
    fn keep_on_disk(&self, state: &ObjectState, index: u64, block: &Bytes) {
        // Checked first: `etag()` locks and clones, once per block.
        let Some(disk) = &self.disk else { return };
        let Some(etag) = state.etag() else { return };
        let Ok(permit) = self.disk_writes.clone().try_acquire_owned() else {
            return;
        };
        if !state.meta_saved.swap(true, Ordering::AcqRel) {
            if let Some(size) = state.size() {
                disk.put_meta(
                    &state.object,
                    &Meta {
                        etag: etag.clone(),
                        size,
                    },
                );
            }
        }
        let (disk, object, block) = (disk.clone(), state.object.clone(), block.clone());
        tokio::task::spawn_blocking(move || {
            disk.put(&object, &etag, index, &block);
            drop(permit);
        });
    }

    /// Blocks at or past the end of the object are empty.
    fn finish_past_end(&self, job: &Job) -> Result<()> {
        while job.blocks.start + job.done() < job.blocks.end {
            self.cache.complete_block(job, Bytes::new());
        }
        Ok(())
    }
}

struct JobGuard {
    reader: Arc<Reader>,
    job: Arc<Job>,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.reader.cache.fail_job(&self.job, Error::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::credentials::{Credentials, Secret};
    use crate::api::{ApiClient, ObjectKind};

    fn reader() -> Arc<Reader> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Nothing is fetched in these tests: the addresses are never used.
        let api = ApiClient::new(
            "http://127.0.0.1:9",
            Credentials::ApiKey(Secret::new("unused")),
        )
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let presign = Arc::new(PresignCache::new(
            Arc::new(api),
            Duration::from_secs(5),
            metrics.clone(),
        ));
        let storage = StorageClient::new(Duration::from_secs(5)).unwrap();
        Arc::new(Reader::new(
            storage,
            presign,
            64 * BLOCK_SIZE,
            RetryPolicy::default(),
            metrics,
        ))
    }

    #[tokio::test]
    async fn a_job_aborted_before_it_runs_frees_its_blocks() {
        let reader = reader();
        let state = reader.new_object(
            ObjectId {
                kind: ObjectKind::Document,
                id: "0123456789abcdef".into(),
            },
            Some(BLOCK_SIZE * 8),
        );
        let job = reader
            .cache
            .claim(state.file_key, 0..4, Claim::ReadAhead)
            .jobs
            .remove(0);
        // The test runtime has one thread: the task cannot start before
        // this test yields, so the abort lands first.
        reader.spawn_job(state.clone(), job.clone()).abort();
        tokio::task::yield_now().await;
        let waiter = tokio::time::timeout(Duration::from_secs(5), job.block(0)).await;
        assert!(
            matches!(waiter, Ok(Err(Error::Cancelled))),
            "a reader waiting on the job is told, not left waiting"
        );
        let key = BlockKey {
            file: state.file_key,
            index: 2,
        };
        assert!(matches!(reader.cache.slot(key), Slot::Absent));
        assert_eq!(reader.cache.usage(), (0, 0), "nothing stays reserved");
    }
}
