//! The shared block cache: downloaded bytes in fixed-size blocks, shared by
//! every handle of every file, bounded by one memory budget that also
//! covers downloads still in flight.
//!
//! A block is either ready (in an LRU), pending (a download job will fill
//! it), or absent. Readers wait on the job of a pending block and take the
//! block from the job itself, so a block evicted the moment it lands is
//! never lost to the reader that waited for it.
//!
//! Read-ahead yields before it makes data be downloaded twice: blocks
//! fetched ahead stay "unread" until a reader takes them, read-ahead claims
//! stop while unread and in-flight blocks fill three quarters of the
//! budget, and eviction takes blocks that were read before unread ones.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// 64 KiB blocks: a random 4 KiB read fetches at most 16 bytes per byte
/// read, while sequential downloads still use large multi-block GETs.
pub const BLOCK_SIZE: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// Identifies one version of one object (see `object::ObjectState`).
    pub file: u64,
    pub index: u64,
}

/// Progress of a download job, published to its waiters.
#[derive(Debug, Clone, Default)]
pub struct JobProgress {
    /// Blocks completed, from the job's first block on.
    pub done: u64,
    pub error: Option<Error>,
}

/// One download of consecutive blocks `[first, first + count)` of a file.
pub struct Job {
    pub file: u64,
    pub blocks: Range<u64>,
    /// Fetched ahead of any reader: its blocks land unread.
    ahead: bool,
    progress: watch::Sender<JobProgress>,
    data: Mutex<Vec<Bytes>>,
}

impl Job {
    /// Wait for block `index` of this job.
    pub async fn block(&self, index: u64) -> Result<Bytes> {
        let pos = index - self.blocks.start;
        let mut rx = self.progress.subscribe();
        let state = rx
            .wait_for(|p| p.done > pos || p.error.is_some())
            .await
            .map_err(|_| Error::Cancelled)?
            .clone();
        if state.done > pos {
            Ok(self.data.lock().expect("job data poisoned")[pos as usize].clone())
        } else {
            Err(state.error.unwrap_or(Error::Cancelled))
        }
    }

    pub fn done(&self) -> u64 {
        self.progress.borrow().done
    }

    pub fn is_finished(&self) -> bool {
        let p = self.progress.borrow();
        p.error.is_some() || p.done == self.blocks.end - self.blocks.start
    }
}

pub enum Slot {
    Ready(Bytes),
    Pending(Arc<Job>),
    Absent,
}

struct Inner {
    /// Ready blocks a reader has taken (or asked for): evicted first.
    read: LruCache<BlockKey, Bytes>,
    /// Ready blocks fetched ahead that no reader has taken yet.
    unread: LruCache<BlockKey, Bytes>,
    /// Bytes of both.
    ready_bytes: u64,
    unread_bytes: u64,
    /// Bytes promised to pending blocks.
    reserved: u64,
    pending: HashMap<BlockKey, Arc<Job>>,
}

impl Inner {
    fn is_ready(&self, key: &BlockKey) -> bool {
        self.read.contains(key) || self.unread.contains(key)
    }

    /// A reader took `key`: it is no longer read-ahead's to keep.
    fn take_unread(&mut self, key: BlockKey) -> Option<Bytes> {
        let b = self.unread.pop(&key)?;
        self.unread_bytes -= b.len() as u64;
        self.read.put(key, b.clone());
        Some(b)
    }

    fn remove(&mut self, key: &BlockKey) {
        if let Some(b) = self.read.pop(key) {
            self.ready_bytes -= b.len() as u64;
        } else if let Some(b) = self.unread.pop(key) {
            self.ready_bytes -= b.len() as u64;
            self.unread_bytes -= b.len() as u64;
        }
    }

    /// Drop `job`'s claim on `key` and its reservation, if it still holds
    /// them (another job may have claimed the block since).
    fn unclaim(&mut self, key: BlockKey, job: &Job) {
        if self
            .pending
            .get(&key)
            .is_some_and(|j| std::ptr::eq(Arc::as_ptr(j), job))
        {
            self.pending.remove(&key);
            self.reserved -= BLOCK_SIZE;
        }
    }
}

/// The outcome of a claim: jobs to run, and where the budget stopped a
/// read-ahead claim (the first block not claimed), if it did.
pub struct Claimed {
    pub jobs: Vec<Arc<Job>>,
    pub budget_stop: Option<u64>,
}

pub struct BlockCache {
    inner: Mutex<Inner>,
    limit: u64,
}

/// Whether a claim may exceed the budget: a reader's own blocks must be
/// fetched whatever the budget; read-ahead is what backs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Demand,
    ReadAhead,
}

impl BlockCache {
    pub fn new(limit: u64) -> BlockCache {
        BlockCache {
            inner: Mutex::new(Inner {
                read: LruCache::unbounded(),
                unread: LruCache::unbounded(),
                ready_bytes: 0,
                unread_bytes: 0,
                reserved: 0,
                pending: HashMap::new(),
            }),
            limit,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("block cache poisoned")
    }

    /// Where block `key` is; a ready block counts as taken by a reader.
    pub fn slot(&self, key: BlockKey) -> Slot {
        let mut inner = self.lock();
        if let Some(b) = inner.read.get(&key) {
            return Slot::Ready(b.clone());
        }
        if let Some(b) = inner.take_unread(key) {
            return Slot::Ready(b);
        }
        match inner.pending.get(&key) {
            Some(job) => Slot::Pending(job.clone()),
            None => Slot::Absent,
        }
    }

    /// A reader took block `key` from the job that fetched it.
    pub fn taken(&self, key: BlockKey) {
        self.lock().take_unread(key);
    }

    /// No reader is left for `file`'s unread blocks: evict them first.
    pub fn abandon_unread(&self, file: u64) {
        let mut inner = self.lock();
        let keys: Vec<BlockKey> = inner
            .unread
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| k.file == file)
            .collect();
        for key in keys {
            inner.take_unread(key);
            // Least recently used: the next to go.
            inner.read.demote(&key);
        }
    }

    /// Register jobs for the absent blocks of `blocks`, one per run of
    /// consecutive absent blocks, and reserve their memory. Read-ahead
    /// claims stop where the budget would be exceeded: in-flight and
    /// unread blocks together may use at most three quarters of it, so
    /// that read-ahead never pushes out blocks it fetched for a reader who
    /// has not read them yet.
    pub fn claim(&self, file: u64, blocks: Range<u64>, kind: Claim) -> Claimed {
        let mut inner = self.lock();
        let mut jobs = Vec::new();
        let mut run: Option<Range<u64>> = None;
        let readahead_cap = self.limit / 4 * 3;
        let mut index = blocks.start;
        while index < blocks.end {
            let key = BlockKey { file, index };
            let absent = !inner.is_ready(&key) && !inner.pending.contains_key(&key);
            let over_budget = kind == Claim::ReadAhead
                && inner.reserved
                    + inner.unread_bytes
                    + run.as_ref().map_or(1, |r| r.end - r.start + 1) * BLOCK_SIZE
                    > readahead_cap;
            if absent && !over_budget {
                run = Some(run.map_or(index..index + 1, |r| r.start..index + 1));
            } else if let Some(r) = run.take() {
                jobs.push(Self::register(&mut inner, file, r, kind));
            }
            if over_budget {
                return Claimed {
                    jobs,
                    budget_stop: Some(index),
                };
            }
            index += 1;
        }
        if let Some(r) = run {
            jobs.push(Self::register(&mut inner, file, r, kind));
        }
        Claimed {
            jobs,
            budget_stop: None,
        }
    }

    fn register(inner: &mut Inner, file: u64, blocks: Range<u64>, kind: Claim) -> Arc<Job> {
        let count = blocks.end - blocks.start;
        let job = Arc::new(Job {
            file,
            blocks: blocks.clone(),
            ahead: kind == Claim::ReadAhead,
            progress: watch::channel(JobProgress::default()).0,
            data: Mutex::new(Vec::with_capacity(count as usize)),
        });
        for index in blocks {
            inner.pending.insert(BlockKey { file, index }, job.clone());
        }
        inner.reserved += count * BLOCK_SIZE;
        job
    }

    /// The job's next block arrived: make it ready and wake its waiters.
    pub fn complete_block(&self, job: &Job, data: Bytes) {
        let index = job.blocks.start + job.done();
        let key = BlockKey {
            file: job.file,
            index,
        };
        job.data
            .lock()
            .expect("job data poisoned")
            .push(data.clone());
        {
            let mut inner = self.lock();
            // A cancelled job may still deliver a block: its reservation was
            // already released by `fail_job`.
            inner.unclaim(key, job);
            inner.remove(&key);
            inner.ready_bytes += data.len() as u64;
            if job.ahead {
                inner.unread_bytes += data.len() as u64;
                inner.unread.put(key, data);
            } else {
                inner.read.put(key, data);
            }
            self.evict(&mut inner);
        }
        job.progress.send_modify(|p| p.done += 1);
    }

    /// The job stopped early: free its remaining blocks so that later
    /// readers fetch them again, and hand the error to current waiters.
    pub fn fail_job(&self, job: &Job, error: Error) {
        if job.is_finished() {
            return;
        }
        {
            let mut inner = self.lock();
            for index in job.blocks.start + job.done()..job.blocks.end {
                let key = BlockKey {
                    file: job.file,
                    index,
                };
                inner.unclaim(key, job);
            }
        }
        job.progress.send_modify(|p| p.error = Some(error));
    }

    /// Drop the ready blocks `blocks` of `file`: a sequential reader has
    /// handed them to the kernel's page cache, which answers any re-read.
    /// Their memory is freed now instead of pushing out blocks that random
    /// readers will want again.
    pub fn release(&self, file: u64, blocks: Range<u64>) {
        let mut inner = self.lock();
        for index in blocks {
            inner.remove(&BlockKey { file, index });
        }
    }

    /// Blocks already read go first; unread ones only when demand leaves
    /// no other way to stay within the limit.
    fn evict(&self, inner: &mut Inner) {
        while inner.ready_bytes + inner.reserved > self.limit {
            if let Some((_, b)) = inner.read.pop_lru() {
                inner.ready_bytes -= b.len() as u64;
            } else if let Some((_, b)) = inner.unread.pop_lru() {
                inner.ready_bytes -= b.len() as u64;
                inner.unread_bytes -= b.len() as u64;
            } else {
                break;
            }
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// (ready bytes, reserved bytes), for stats and tests.
    pub fn usage(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.ready_bytes, inner.reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u8) -> Bytes {
        Bytes::from(vec![n; BLOCK_SIZE as usize])
    }

    /// The job's first `count` blocks arrive.
    fn fill(c: &BlockCache, job: &Job, count: u8) {
        for n in 0..count {
            c.complete_block(job, block(n));
        }
    }

    #[tokio::test]
    async fn claims_only_absent_runs_and_waiters_get_their_block() {
        let c = BlockCache::new(64 * BLOCK_SIZE);
        let jobs = c.claim(1, 0..4, Claim::Demand).jobs;
        assert_eq!(jobs.len(), 1);
        let job = jobs[0].clone();
        assert!(
            c.claim(1, 0..4, Claim::Demand).jobs.is_empty(),
            "pending blocks are not claimed twice"
        );
        let waiter = {
            let job = job.clone();
            tokio::spawn(async move { job.block(2).await.unwrap() })
        };
        fill(&c, &job, 4);
        assert_eq!(waiter.await.unwrap()[0], 2);
        assert!(matches!(
            c.slot(BlockKey { file: 1, index: 3 }),
            Slot::Ready(_)
        ));
        let jobs = c.claim(1, 2..8, Claim::Demand).jobs;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].blocks, 4..8);
        assert_eq!(c.usage(), (4 * BLOCK_SIZE, 4 * BLOCK_SIZE));
    }

    #[tokio::test]
    async fn failed_jobs_release_their_blocks_and_tell_waiters() {
        let c = BlockCache::new(64 * BLOCK_SIZE);
        let job = c.claim(7, 0..3, Claim::Demand).jobs.remove(0);
        c.complete_block(&job, block(0));
        c.fail_job(
            &job,
            Error::Truncated {
                got: 1,
                expected: 2,
            },
        );
        assert!(matches!(job.block(1).await, Err(Error::Truncated { .. })));
        assert_eq!(job.block(0).await.unwrap()[0], 0);
        assert!(matches!(
            c.slot(BlockKey { file: 7, index: 1 }),
            Slot::Absent
        ));
        assert_eq!(c.usage(), (BLOCK_SIZE, 0));
    }

    #[test]
    fn readahead_backs_off_when_the_budget_is_short_but_demand_does_not() {
        let c = BlockCache::new(8 * BLOCK_SIZE);
        let ra = c.claim(1, 0..100, Claim::ReadAhead);
        let claimed: u64 = ra.jobs.iter().map(|j| j.blocks.end - j.blocks.start).sum();
        assert_eq!(claimed, 6, "three quarters of an 8-block budget");
        assert_eq!(ra.budget_stop, Some(6));
        let refused = c.claim(1, 50..60, Claim::ReadAhead);
        assert!(refused.jobs.is_empty());
        assert_eq!(refused.budget_stop, Some(50));
        let demand = c.claim(1, 50..60, Claim::Demand);
        assert_eq!(demand.jobs[0].blocks, 50..60);
        assert_eq!(demand.budget_stop, None);
    }

    #[test]
    fn released_blocks_free_their_memory_and_others_stay() {
        let c = BlockCache::new(64 * BLOCK_SIZE);
        let job = c.claim(2, 0..4, Claim::Demand).jobs.remove(0);
        fill(&c, &job, 4);
        c.release(2, 1..3);
        c.release(2, 10..12);
        assert_eq!(c.usage(), (2 * BLOCK_SIZE, 0));
        for (index, ready) in [(0, true), (1, false), (2, false), (3, true)] {
            let slot = c.slot(BlockKey { file: 2, index });
            assert_eq!(matches!(slot, Slot::Ready(_)), ready, "block {index}");
        }
    }

    #[test]
    fn ready_blocks_are_evicted_least_recently_used_within_the_limit() {
        let c = BlockCache::new(4 * BLOCK_SIZE);
        for i in 0..4 {
            let job = c.claim(1, i..i + 1, Claim::Demand).jobs.remove(0);
            c.complete_block(&job, block(i as u8));
        }
        assert!(matches!(
            c.slot(BlockKey { file: 1, index: 0 }),
            Slot::Ready(_)
        ));
        let job = c.claim(1, 10..11, Claim::Demand).jobs.remove(0);
        c.complete_block(&job, block(10));
        assert!(
            matches!(c.slot(BlockKey { file: 1, index: 1 }), Slot::Absent),
            "LRU block evicted"
        );
        assert!(
            matches!(c.slot(BlockKey { file: 1, index: 0 }), Slot::Ready(_)),
            "recently used kept"
        );
        assert!(c.usage().0 <= 4 * BLOCK_SIZE);
    }

    #[test]
    fn unread_read_ahead_is_kept_and_stops_more_read_ahead() {
        let c = BlockCache::new(8 * BLOCK_SIZE);
        let ahead = c.claim(1, 0..100, Claim::ReadAhead).jobs.remove(0);
        fill(&c, &ahead, 6);
        assert_eq!(c.usage(), (6 * BLOCK_SIZE, 0));
        let more = c.claim(1, 6..100, Claim::ReadAhead);
        assert!(
            more.jobs.is_empty(),
            "unread blocks count against read-ahead"
        );
        assert_eq!(more.budget_stop, Some(6));
        // Demand at the budget evicts what was read, not what was not.
        let demand = c.claim(2, 0..2, Claim::Demand).jobs.remove(0);
        fill(&c, &demand, 2);
        let demand = c.claim(2, 2..3, Claim::Demand).jobs.remove(0);
        c.complete_block(&demand, block(2));
        assert!(matches!(
            c.slot(BlockKey { file: 2, index: 0 }),
            Slot::Absent
        ));
        for index in 0..6 {
            let slot = c.slot(BlockKey { file: 1, index });
            assert!(matches!(slot, Slot::Ready(_)), "unread block {index} kept");
        }
        assert_eq!(c.usage(), (8 * BLOCK_SIZE, 0));
        // Taken by a reader, they no longer hold read-ahead back.
        assert_eq!(c.claim(1, 6..8, Claim::ReadAhead).jobs[0].blocks, 6..8);
    }

    #[test]
    fn abandoned_unread_blocks_go_first() {
        let c = BlockCache::new(8 * BLOCK_SIZE);
        let ahead = c.claim(1, 0..6, Claim::ReadAhead).jobs.remove(0);
        fill(&c, &ahead, 6);
        let demand = c.claim(2, 0..2, Claim::Demand).jobs.remove(0);
        fill(&c, &demand, 2);
        c.abandon_unread(1);
        assert_eq!(
            c.claim(3, 0..1, Claim::ReadAhead).jobs[0].blocks,
            0..1,
            "no reader is left for them: read-ahead may go on"
        );
        let demand = c.claim(2, 2..3, Claim::Demand).jobs.remove(0);
        c.complete_block(&demand, block(2));
        assert!(matches!(
            c.slot(BlockKey { file: 2, index: 0 }),
            Slot::Ready(_)
        ));
        assert!(matches!(
            c.slot(BlockKey { file: 1, index: 0 }),
            Slot::Absent
        ));
    }
}
