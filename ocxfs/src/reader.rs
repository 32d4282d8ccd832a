//! Read assembly: each read of an open handle, answered from cached blocks.
//!
//! Design notes:
//!
//! - A read is cut into 64 KiB blocks of the block cache (`cache`). Blocks
//!   that are neither ready nor pending are claimed there, one download
//!   job per run of absent blocks (`download`), and the read then waits
//!   for its blocks, the last one first: jobs fill blocks in order, so the
//!   read wakes once per job rather than once per block.
//! - The reply is made of slices of the cached blocks: nothing is copied
//!   until FUSE writes it out.
//! - Each handle keeps its own read-ahead decisions (`readahead`). The
//!   window it asks for is fetched as parallel 8 MiB jobs, claimed within
//!   the memory budget (a budget that stops a claim is asked again on a
//!   later read); a far seek aborts the jobs no longer needed.
//! - A sequential reader that is the file's only handle drops the blocks
//!   it has read as soon as the read is answered: the kernel's page cache
//!   serves any re-read, and the block cache stays free for random
//!   readers. `O_DIRECT` handles keep theirs.
//! - A block whose download another handle cancelled is claimed again.

use std::ops::Range;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::AbortHandle;

use crate::cache::{BLOCK_SIZE, BlockCache, BlockKey, Claim, Job, Slot};
use crate::disk_cache::DiskCache;
use crate::download::Downloads;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::object::ObjectState;
use crate::presign::PresignCache;
use crate::readahead::ReadAhead;
use crate::retry::RetryPolicy;
use crate::storage::StorageClient;

/// Read-ahead is fetched in parts of this size by concurrent GETs: large
/// enough that request overhead is small, small enough that several run
/// at once and a cancelled part wastes little.
const PART_SIZE: u64 = 8 * 1024 * 1024;

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

/// An open handle: its read-ahead state and the read-ahead jobs it started.
pub struct OpenFile {
    pub object: Arc<ObjectState>,
    /// Reads through this handle fill the kernel's page cache (no O_DIRECT,
    /// no direct_io), so what it has read sequentially need not be kept.
    page_cached: bool,
    /// The size the kernel believes, when it stops reads there (not with
    /// direct_io): storage holding more makes reads fail, never end early.
    kernel_size: Option<u64>,
    readahead_plan: Mutex<ReadAhead>,
    /// Running read-ahead jobs: a finished job (and the blocks it holds)
    /// is freed when its download ends, not when the handle closes.
    readahead: Mutex<Vec<(Weak<Job>, AbortHandle)>>,
    cache: Arc<BlockCache>,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if self.object.handle_closed() {
            // No reader is left for what was fetched ahead.
            self.cache.abandon_unread(self.object.file_key());
        }
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
    cache: Arc<BlockCache>,
    downloads: Arc<Downloads>,
    metrics: Arc<Metrics>,
}

impl Reader {
    /// A reader whose blocks share `memory_budget` bytes, kept in `disk`
    /// too when given.
    pub fn new(
        storage: StorageClient,
        presign: Arc<PresignCache>,
        memory_budget: u64,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
        disk: Option<Arc<DiskCache>>,
    ) -> Reader {
        let cache = Arc::new(BlockCache::new(memory_budget));
        let downloads = Downloads::new(
            cache.clone(),
            storage,
            presign,
            retry,
            metrics.clone(),
            disk,
        );
        Reader {
            cache,
            downloads: Arc::new(downloads),
            metrics,
        }
    }

    pub fn presign(&self) -> &PresignCache {
        self.downloads.presign()
    }

    pub fn disk_cache(&self) -> Option<&Arc<DiskCache>> {
        self.downloads.disk_cache()
    }

    /// Wait (up to `limit`) for blocks still being written to disk, so that
    /// an unmount keeps what was read.
    pub async fn flush_disk_writes(&self, limit: Duration) {
        self.downloads.flush_disk_writes(limit).await
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

    /// Make `object` readable: a presigned URL (one POST unless one is
    /// cached, or the disk cache already knows the object: then the POST
    /// waits until a block must come from storage) and, when the listing
    /// did not say, the size from storage. `kernel_size`: the size the
    /// kernel stops reads at, if it does.
    pub async fn open(
        &self,
        object: Arc<ObjectState>,
        page_cached: bool,
        kernel_size: Option<u64>,
    ) -> Result<OpenFile> {
        let on_disk = self.downloads.disk_cache().is_some()
            && object.etag().is_some()
            && object.size().is_some();
        if !on_disk {
            self.downloads.presign().get(&object.object).await?;
        }
        if object.size().is_none() {
            // The first block tells the size (Content-Range) and is kept.
            self.block(&object, 0).await?;
        }
        object.handle_opened();
        Ok(OpenFile {
            object,
            page_cached,
            kernel_size,
            readahead_plan: Mutex::new(ReadAhead::default()),
            readahead: Mutex::new(Vec::new()),
            cache: self.cache.clone(),
        })
    }

    /// Bytes `[offset, offset + len)` of the file, short only at its end.
    pub async fn read(&self, file: &OpenFile, offset: u64, len: u64) -> Result<ReadData> {
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
            .readahead_plan
            .lock()
            .expect("read-ahead lock poisoned")
            .on_read(offset, end - offset, size);
        if plan.cancel {
            tracing::debug!(object = %state.object, offset, "far seek: cancelling read-ahead");
            self.cancel_readahead(file);
        }
        for job in self
            .cache
            .claim(state.file_key(), blocks.clone(), Claim::Demand)
            .jobs
        {
            tracing::trace!(object = %state.object, blocks = ?job.blocks, "demand fetch");
            self.downloads.spawn(state.clone(), job);
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
        if let (Some(told), Some(stored)) = (file.kernel_size, state.size()) {
            if stored > told {
                return Err(Error::InvalidResponse(format!(
                    "storage holds {stored} bytes where the listing said {told}: \
                     the file would end early (open it again to read it all)"
                )));
            }
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
        if plan.streaming && file.page_cached && state.open_handles() == 1 {
            // The blocks this read covered whole are now in the page cache;
            // a block shared with a neighbouring read stays for that read.
            let whole_end = if end == size {
                end.div_ceil(BLOCK_SIZE)
            } else {
                end / BLOCK_SIZE
            };
            self.cache
                .release(state.file_key(), offset.div_ceil(BLOCK_SIZE)..whole_end);
        }
        let data = ReadData(parts);
        Metrics::add(&self.metrics.bytes_served, data.len() as u64);
        Ok(data)
    }

    /// One block, from the cache, from the job fetching it, or fetched now.
    async fn block(&self, state: &Arc<ObjectState>, index: u64) -> Result<Bytes> {
        let key = BlockKey {
            file: state.file_key(),
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
                    Ok(block) => {
                        self.cache.taken(key);
                        return Ok(block);
                    }
                    err => return err,
                },
                Slot::Absent => {
                    for job in self
                        .cache
                        .claim(state.file_key(), index..index + 1, Claim::Demand)
                        .jobs
                    {
                        self.downloads.spawn(state.clone(), job);
                    }
                }
            }
            slot = self.cache.slot(key);
        }
        Err(Error::Cancelled)
    }

    fn start_readahead(&self, file: &OpenFile, range: Range<u64>) {
        let state = &file.object;
        let mut jobs = Vec::new();
        let mut part_start = range.start;
        while part_start < range.end {
            let part_end = (part_start + PART_SIZE).min(range.end);
            let blocks = part_start / BLOCK_SIZE..part_end.div_ceil(BLOCK_SIZE);
            let claimed = self.cache.claim(state.file_key(), blocks, Claim::ReadAhead);
            jobs.extend(claimed.jobs);
            if let Some(stop) = claimed.budget_stop {
                // Memory is short: ask again on a later read instead of growing.
                let until = (stop * BLOCK_SIZE).max(part_start);
                file.readahead_plan
                    .lock()
                    .expect("read-ahead lock poisoned")
                    .granted_until(until);
                break;
            }
            part_start = part_end;
        }
        let mut mine = file.readahead.lock().expect("readahead lock poisoned");
        mine.retain(|(job, _)| job.strong_count() > 0);
        for job in jobs {
            tracing::trace!(object = %state.object, blocks = ?job.blocks, "read-ahead fetch");
            let abort = self.downloads.spawn(state.clone(), job.clone());
            mine.push((Arc::downgrade(&job), abort));
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
            if let Some(job) = job.upgrade() {
                self.cache.fail_job(&job, Error::Cancelled);
            }
        }
    }
}
