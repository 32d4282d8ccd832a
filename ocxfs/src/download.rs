//! Download jobs: filling claimed blocks of the block cache from storage.
//!
//! Design notes:
//!
//! - A job is a run of consecutive blocks of one object version, claimed in
//!   the block cache by a read or by read-ahead (`cache::Job`). It runs as
//!   one tokio task, fed block by block from one ranged GET: readers
//!   waiting on a block wake as soon as it lands, not when the GET ends.
//! - With a disk cache, a job first serves the blocks it has on disk (a
//!   version pinned from the disk cache needs neither a POST nor a GET when
//!   every block is there), and every block fetched from storage is written
//!   there in the background. A disk slower than the network loses blocks,
//!   never speed: beyond `MAX_PENDING_DISK_WRITES` a block is not kept.
//! - Transient failures resume where the data stopped, after a delay that
//!   `retry` decides. Every GET after the first carries the pinned ETag
//!   (`If-Match`), so bytes of two versions are never mixed; an ETag that
//!   differs marks the object stale (`object::ObjectState`).
//! - Storage saying the URL expired asks the presign cache for a new one,
//!   twice at most per job (the presign cache shares and bounds the POSTs).
//! - However a job ends (done, failed, aborted, or aborted before it first
//!   ran), its unfilled blocks are freed in the block cache and its waiters
//!   told, so no reader waits on a block that nothing will fill.
//!
//! A job holds only what it needs (the block cache, storage, the presign
//! cache, the disk cache, metrics); it knows nothing of reads or handles.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use crate::cache::{BLOCK_SIZE, BlockCache, Job};
use crate::disk_cache::{DiskCache, Meta};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::object::ObjectState;
use crate::presign::{PresignCache, PresignedUrl};
use crate::retry::RetryPolicy;
use crate::storage::{RangeAnswer, StorageClient};

/// 64 MiB of blocks may wait for the disk; beyond that blocks are not kept.
const MAX_PENDING_DISK_WRITES: usize = 1024;

/// Runs download jobs.
pub struct Downloads {
    cache: Arc<BlockCache>,
    storage: StorageClient,
    presign: Arc<PresignCache>,
    metrics: Arc<Metrics>,
    retry: RetryPolicy,
    disk: Option<Arc<DiskCache>>,
    /// Bounds the blocks waiting to be written to disk (and their memory).
    disk_writes: Arc<Semaphore>,
}

impl Downloads {
    pub fn new(
        cache: Arc<BlockCache>,
        storage: StorageClient,
        presign: Arc<PresignCache>,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
        disk: Option<Arc<DiskCache>>,
    ) -> Downloads {
        Downloads {
            cache,
            storage,
            presign,
            metrics,
            retry,
            disk,
            disk_writes: Arc::new(Semaphore::new(MAX_PENDING_DISK_WRITES)),
        }
    }

    pub fn presign(&self) -> &Arc<PresignCache> {
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

    /// Run `job` for `state` as a task of its own.
    pub fn spawn(self: &Arc<Self>, state: Arc<ObjectState>, job: Arc<Job>) -> AbortHandle {
        // Frees the job's blocks however the task ends: an error, an abort,
        // or an abort before it first ran (the task is then dropped without
        // running, and the guard with it), so no block stays pending with
        // readers waiting on it.
        let guard = JobGuard {
            downloads: self.clone(),
            job,
        };
        tokio::spawn(async move {
            let (downloads, job) = (&guard.downloads, &guard.job);
            if let Err(error) = downloads.run(&state, job).await {
                if let Error::Changed { .. } = error {
                    state.mark_stale();
                    if let Some(disk) = &downloads.disk {
                        disk.forget(&state.object);
                    }
                }
                if !matches!(error, Error::Cancelled) {
                    downloads.metrics.count_error(&error);
                    tracing::error!(object = %state.object, kind = error.kind(), error = %error.chain(), "download failed");
                }
                downloads.cache.fail_job(job, error);
            }
            drop(guard);
        })
        .abort_handle()
    }

    /// Download the job's blocks, resuming after transient failures and
    /// refreshing the URL (twice at most) when storage says it expired.
    async fn run(&self, state: &ObjectState, job: &Job) -> Result<()> {
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
                    tracing::warn!(object = %state.object, error = %e.chain(), attempt = failures, ?delay, "retrying ranged GET");
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
        if state.take_meta_unsaved() {
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
    downloads: Arc<Downloads>,
    job: Arc<Job>,
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        self.downloads.cache.fail_job(&self.job, Error::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::credentials::{Credentials, Secret};
    use crate::api::{ApiClient, ObjectId, ObjectKind};
    use crate::cache::{BlockKey, Claim, Slot};
    use crate::http_client::HttpTrust;
    use crate::object::Objects;

    fn downloads() -> Arc<Downloads> {
        // Nothing is fetched in these tests: the addresses are never used.
        let api = ApiClient::new(
            "http://127.0.0.1:9",
            Credentials::ApiKey(Secret::new("unused")),
            &HttpTrust::default(),
        )
        .unwrap();
        let metrics = Arc::new(Metrics::default());
        let presign = Arc::new(PresignCache::new(
            Arc::new(api),
            Duration::from_secs(5),
            metrics.clone(),
        ));
        let storage = StorageClient::new(Duration::from_secs(5), &HttpTrust::default()).unwrap();
        Arc::new(Downloads::new(
            Arc::new(BlockCache::new(64 * BLOCK_SIZE)),
            storage,
            presign,
            RetryPolicy::default(),
            metrics,
            None,
        ))
    }

    #[tokio::test]
    async fn a_job_aborted_before_it_runs_frees_its_blocks() {
        let downloads = downloads();
        let object = ObjectId {
            kind: ObjectKind::Document,
            id: "0123456789abcdef".into(),
        };
        let (state, _) = Objects::new(None).for_open(1, &object, Some(BLOCK_SIZE * 8));
        let job = downloads
            .cache
            .claim(state.file_key(), 0..4, Claim::ReadAhead)
            .jobs
            .remove(0);
        // The test runtime has one thread: the task cannot start before
        // this test yields, so the abort lands first.
        downloads.spawn(state.clone(), job.clone()).abort();
        tokio::task::yield_now().await;
        let waiter = tokio::time::timeout(Duration::from_secs(5), job.block(0)).await;
        assert!(
            matches!(waiter, Ok(Err(Error::Cancelled))),
            "a reader waiting on the job is told, not left waiting"
        );
        let key = BlockKey {
            file: state.file_key(),
            index: 2,
        };
        assert!(matches!(downloads.cache.slot(key), Slot::Absent));
        assert_eq!(downloads.cache.usage(), (0, 0), "nothing stays reserved");
    }
}
