//! The state of each opened object's current version, shared by its handles.
//!
//! Design notes:
//!
//! - One `ObjectState` per version of a file. Its `file_key` names the
//!   version's blocks in the block cache, so a changed object (a new state,
//!   a new key) never mixes its blocks with the old version's.
//! - The first ETag seen pins the version; a download that meets another
//!   one marks the state stale. The next open of the file then starts a
//!   new state, and its open handles fail with `ESTALE` from then on.
//! - The size comes from the listing, else from the disk cache, else from
//!   storage's first answer; storage's word wins when they differ.
//! - With a disk cache that knows the object (and agrees with the
//!   listing's size), a new state is pinned from there, so cached blocks
//!   are served with neither a POST nor a GET.
//! - `Objects` is the one owner of the states, by inode: the filesystem
//!   operations ask it for the state to open a file with, and for sizes
//!   learned from storage. States are never dropped from it (one small
//!   entry per file ever opened), so a learned size outlives the handles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::api::ObjectId;
use crate::disk_cache::DiskCache;
use crate::error::{Error, Result};

const UNKNOWN_SIZE: u64 = u64::MAX;

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
    fn new(object: ObjectId, file_key: u64, size: Option<u64>, etag: Option<String>) -> Self {
        ObjectState {
            object,
            file_key,
            size: AtomicU64::new(size.unwrap_or(UNKNOWN_SIZE)),
            etag: Mutex::new(etag),
            meta_saved: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
        }
    }

    /// The block cache's key for this version.
    pub fn file_key(&self) -> u64 {
        self.file_key
    }

    pub fn size(&self) -> Option<u64> {
        Some(self.size.load(Ordering::Acquire)).filter(|&s| s != UNKNOWN_SIZE)
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Storage holds another version: this one must not be served again.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Storage's word on the size wins over the listing's.
    pub fn learn_size(&self, total: u64) {
        let old = self.size.swap(total, Ordering::AcqRel);
        if old != UNKNOWN_SIZE && old != total {
            tracing::warn!(object = %self.object, listed = old, stored = total, "storage size differs from the listing; using storage's");
        }
    }

    /// The first ETag seen pins the version; any other one is a change.
    pub fn check_etag(&self, etag: Option<&str>) -> Result<()> {
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

    pub fn etag(&self) -> Option<String> {
        self.etag.lock().expect("etag lock poisoned").clone()
    }

    /// True the first time only: whoever gets it writes the disk cache's
    /// record of this version.
    pub fn take_meta_unsaved(&self) -> bool {
        !self.meta_saved.swap(true, Ordering::AcqRel)
    }

    pub fn handle_opened(&self) {
        self.handles.fetch_add(1, Ordering::AcqRel);
    }

    /// True when it was the last open handle.
    pub fn handle_closed(&self) -> bool {
        self.handles.fetch_sub(1, Ordering::AcqRel) == 1
    }

    pub fn open_handles(&self) -> usize {
        self.handles.load(Ordering::Acquire)
    }
}

/// The state of every object opened so far, by inode.
pub struct Objects {
    states: Mutex<HashMap<u64, Arc<ObjectState>>>,
    next_file_key: AtomicU64,
    disk: Option<Arc<DiskCache>>,
}

impl Objects {
    /// `disk`, when given, pins new states to the versions it holds.
    pub fn new(disk: Option<Arc<DiskCache>>) -> Objects {
        Objects {
            states: Mutex::new(HashMap::new()),
            next_file_key: AtomicU64::new(1),
            disk,
        }
    }

    /// The state to open inode `ino` (object `object`, listed with `size`)
    /// with, and whether the kernel may keep the pages it cached of it
    /// (not when the state replaces a stale one).
    pub fn for_open(
        &self,
        ino: u64,
        object: &ObjectId,
        size: Option<u64>,
    ) -> (Arc<ObjectState>, bool) {
        let mut states = self.states.lock().expect("objects lock poisoned");
        match states.get(&ino) {
            Some(s) if !s.is_stale() => (s.clone(), true),
            previous => {
                // A changed object starts afresh: new cache key, and the
                // kernel drops its pages of the old version.
                let keep = previous.is_none();
                let s = self.new_state(object.clone(), size);
                states.insert(ino, s.clone());
                (s, keep)
            }
        }
    }

    /// The size storage gave for inode `ino`, once it was opened.
    pub fn size(&self, ino: u64) -> Option<u64> {
        self.states
            .lock()
            .expect("objects lock poisoned")
            .get(&ino)
            .and_then(|o| o.size())
    }

    /// A new version of `object`. With a disk cache that knows the object
    /// (and agrees with the listing's size), its version is pinned from
    /// there, so cached blocks can be used without asking storage.
    fn new_state(&self, object: ObjectId, size: Option<u64>) -> Arc<ObjectState> {
        let known = self.disk.as_ref().and_then(|d| {
            let meta = d.meta(&object)?;
            if size.is_some_and(|s| s != meta.size) {
                d.forget(&object);
                return None;
            }
            Some(meta)
        });
        let file_key = self.next_file_key.fetch_add(1, Ordering::Relaxed);
        let size = size.or(known.as_ref().map(|m| m.size));
        Arc::new(ObjectState::new(
            object,
            file_key,
            size,
            known.map(|m| m.etag),
        ))
    }
}
