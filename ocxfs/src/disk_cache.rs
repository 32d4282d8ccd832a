//! The optional disk block cache (`--cache-dir`): blocks kept on disk
//! across remounts, keyed by (object, ETag, block), each checked by a CRC
//! when read back, evicted least-recently-used to stay under
//! `--max-cache-size`. A failed write (a full disk) never fails a read: the
//! block is simply not cached. Files are 0600 in a 0700 directory.
//!
//! ```text
//! DIR/v1/<kind>-<id>/meta.json          {"etag": "...", "size": N}
//! DIR/v1/<kind>-<id>/<etag hash>/<block>  header + data
//! ```
//! `meta.json` lets a remount open and read a cached file with neither a
//! POST nor a GET.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use fnv::FnvHasher;
use lru::LruCache;
use serde::{Deserialize, Serialize};

use crate::api::ObjectId;
use crate::private_file;

/// `OCXB`, version 1: magic, length and CRC32 of the data.
const MAGIC: &[u8; 4] = b"OCXB";
const VERSION: u8 = 1;
const HEADER: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Default)]
pub struct DiskStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub corrupt: AtomicU64,
    pub write_failures: AtomicU64,
    pub evictions: AtomicU64,
}

pub struct DiskCache {
    root: PathBuf,
    max_bytes: u64,
    /// Block files by path, with their size, least recently used first.
    index: Mutex<(LruCache<PathBuf, u64>, u64)>,
    pub stats: DiskStats,
}

impl DiskCache {
    /// Open the cache in `dir`, indexing what earlier mounts left (oldest
    /// modification first), and trimming it to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<DiskCache> {
        let root = dir.join("v1");
        private_file::create_dir(&root)?;
        let mut found: Vec<(std::time::SystemTime, PathBuf, u64)> = Vec::new();
        for object in std::fs::read_dir(&root)?.flatten() {
            for version in std::fs::read_dir(object.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                for block in std::fs::read_dir(version.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if let Ok(meta) = block.metadata() {
                        if meta.is_file() {
                            found.push((
                                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                                block.path(),
                                meta.len(),
                            ));
                        }
                    }
                }
            }
        }
        found.sort();
        let mut lru = LruCache::unbounded();
        let mut total = 0;
        for (_, path, len) in found {
            total += len;
            lru.put(path, len);
        }
        let cache = DiskCache {
            root,
            max_bytes,
            index: Mutex::new((lru, total)),
            stats: DiskStats::default(),
        };
        cache.evict();
        Ok(cache)
    }

    fn object_dir(&self, object: &ObjectId) -> PathBuf {
        let kind = match object.kind {
            crate::api::ObjectKind::Document => "documents",
            crate::api::ObjectKind::Sample => "samples",
        };
        self.root.join(format!("{kind}-{}", object.id))
    }

    fn block_path(&self, object: &ObjectId, etag: &str, index: u64) -> PathBuf {
        // FNV-1a: a short, stable directory name per version.
        let mut version = FnvHasher::default();
        version.write(etag.as_bytes());
        self.object_dir(object)
            .join(format!("{:016x}", version.finish()))
            .join(index.to_string())
    }

    pub fn meta(&self, object: &ObjectId) -> Option<Meta> {
        let bytes = std::fs::read(self.object_dir(object).join("meta.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put_meta(&self, object: &ObjectId, meta: &Meta) {
        let dir = self.object_dir(object);
        let json = serde_json::to_vec(meta).expect("meta serializes");
        if let Err(e) = private_file::create_dir(&dir)
            .and_then(|()| private_file::write_atomic(&dir.join("meta.json"), &[&json]))
        {
            self.stats.write_failures.fetch_add(1, Relaxed);
            tracing::debug!(%object, "disk cache: cannot write meta: {e}");
        }
    }

    /// The object changed upstream: drop everything kept of it.
    pub fn forget(&self, object: &ObjectId) {
        let dir = self.object_dir(object);
        let mut index = self.index.lock().expect("disk index poisoned");
        let gone: Vec<PathBuf> = index
            .0
            .iter()
            .filter(|(p, _)| p.starts_with(&dir))
            .map(|(p, _)| p.clone())
            .collect();
        for p in gone {
            if let Some(len) = index.0.pop(&p) {
                index.1 -= len;
            }
        }
        drop(index);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A block, if it is on disk and intact. A damaged block is deleted.
    pub fn get(&self, object: &ObjectId, etag: &str, index: u64) -> Option<Bytes> {
        let path = self.block_path(object, etag, index);
        let Ok(raw) = std::fs::read(&path) else {
            self.stats.misses.fetch_add(1, Relaxed);
            return None;
        };
        let intact = raw.len() >= HEADER
            && &raw[..4] == MAGIC
            && raw[4] == VERSION
            && u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")) as usize
                == raw.len() - HEADER
            && u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes"))
                == crc32fast::hash(&raw[HEADER..]);
        if !intact {
            self.stats.corrupt.fetch_add(1, Relaxed);
            tracing::warn!(%object, index, "disk cache: damaged block discarded; fetching it again");
            self.remove(&path);
            return None;
        }
        self.stats.hits.fetch_add(1, Relaxed);
        self.index.lock().expect("disk index poisoned").0.get(&path);
        let mut raw = Bytes::from(raw);
        Some(raw.split_off(HEADER))
    }

    /// Keep a block. Failures are counted and otherwise ignored.
    pub fn put(&self, object: &ObjectId, etag: &str, index: u64, data: &[u8]) {
        let path = self.block_path(object, etag, index);
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
        let written = path
            .parent()
            .map_or(Ok(()), private_file::create_dir)
            .and_then(|()| private_file::write_atomic(&path, &[&header, data]));
        match written {
            Ok(()) => {
                let len = (HEADER + data.len()) as u64;
                let mut index = self.index.lock().expect("disk index poisoned");
                if let Some(old) = index.0.put(path, len) {
                    index.1 -= old;
                }
                index.1 += len;
                drop(index);
                self.evict();
            }
            Err(e) => {
                self.stats.write_failures.fetch_add(1, Relaxed);
                tracing::debug!(%object, index, "disk cache: cannot write a block: {e}");
            }
        }
    }

    fn remove(&self, path: &Path) {
        let mut index = self.index.lock().expect("disk index poisoned");
        if let Some(len) = index.0.pop(path) {
            index.1 -= len;
        }
        let _ = std::fs::remove_file(path);
    }

    /// Delete least recently used blocks until the cache fits.
    fn evict(&self) {
        let mut index = self.index.lock().expect("disk index poisoned");
        while index.1 > self.max_bytes {
            let Some((path, len)) = index.0.pop_lru() else {
                break;
            };
            index.1 -= len;
            let _ = std::fs::remove_file(&path);
            self.stats.evictions.fetch_add(1, Relaxed);
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.index.lock().expect("disk index poisoned").1
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ObjectKind;
    use std::os::unix::fs::PermissionsExt;

    fn object(id: &str) -> ObjectId {
        ObjectId {
            kind: ObjectKind::Document,
            id: id.into(),
        }
    }

    #[test]
    fn block_paths_stay_where_earlier_versions_wrote_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1 << 20).unwrap();
        // FNV-1a 64 of the ETag, as the specification computes it.
        let path = c.block_path(&object("a"), "\"etag-1\"", 7);
        let version = path.parent().and_then(Path::file_name);
        assert_eq!(version, Some("178c216410bdabf0".as_ref()), "{path:?}");
    }

    #[test]
    fn blocks_round_trip_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1 << 20).unwrap();
        c.put(&object("a"), "\"e1\"", 3, b"hello");
        c.put_meta(
            &object("a"),
            &Meta {
                etag: "\"e1\"".into(),
                size: 5,
            },
        );
        assert_eq!(c.get(&object("a"), "\"e1\"", 3).unwrap(), &b"hello"[..]);
        assert!(
            c.get(&object("a"), "\"e2\"", 3).is_none(),
            "another version is another key"
        );
        let again = DiskCache::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(again.get(&object("a"), "\"e1\"", 3).unwrap(), &b"hello"[..]);
        assert_eq!(again.meta(&object("a")).unwrap().size, 5);
        assert_eq!(again.used_bytes(), (HEADER + 5) as u64);
        let file = again.block_path(&object("a"), "\"e1\"", 3);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(file.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        again.forget(&object("a"));
        assert!(again.get(&object("a"), "\"e1\"", 3).is_none());
        assert!(again.meta(&object("a")).is_none());
        assert_eq!(again.used_bytes(), 0);
    }

    #[test]
    fn damaged_blocks_are_detected_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1 << 20).unwrap();
        c.put(&object("a"), "e", 0, &[7u8; 1000]);
        let path = c.block_path(&object("a"), "e", 0);
        let mut raw = std::fs::read(&path).unwrap();
        raw[HEADER + 500] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert!(c.get(&object("a"), "e", 0).is_none());
        assert!(!path.exists());
        assert_eq!(c.stats.corrupt.load(Relaxed), 1);
        c.put(&object("a"), "e", 1, &[1u8; 100]);
        std::fs::write(c.block_path(&object("a"), "e", 1), b"OCX").unwrap();
        assert!(c.get(&object("a"), "e", 1).is_none(), "truncated");
    }

    #[test]
    fn stays_under_its_size_evicting_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let block = (HEADER + 1000) as u64;
        let c = DiskCache::open(dir.path(), 3 * block).unwrap();
        for i in 0..3 {
            c.put(&object("a"), "e", i, &[i as u8; 1000]);
        }
        assert!(c.get(&object("a"), "e", 0).is_some());
        c.put(&object("a"), "e", 3, &[3; 1000]);
        assert!(c.used_bytes() <= 3 * block);
        assert!(
            c.get(&object("a"), "e", 1).is_none(),
            "least recently used went first"
        );
        assert!(c.get(&object("a"), "e", 0).is_some());
        // Reopening with a smaller limit trims at once.
        drop(c);
        let small = DiskCache::open(dir.path(), block).unwrap();
        assert!(small.used_bytes() <= block);
    }

    #[test]
    fn a_failed_write_is_only_counted() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 1 << 20).unwrap();
        // A file where a directory should be: every write under it fails.
        std::fs::write(c.object_dir(&object("x")), b"in the way").unwrap();
        c.put(&object("x"), "e", 0, b"data");
        c.put_meta(
            &object("x"),
            &Meta {
                etag: "e".into(),
                size: 4,
            },
        );
        assert_eq!(c.stats.write_failures.load(Relaxed), 2);
        assert!(c.get(&object("x"), "e", 0).is_none());
    }
}
