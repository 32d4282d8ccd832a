//! The filesystem's operations, free of any FUSE type so that they can be
//! tested without a mount.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::api::{ApiClient, ObjectId};
use crate::catalog::{Catalog, FileInfo, Node};
use crate::error::{Error, Result};
use crate::interrupt::Ticket;
use crate::metrics::{DiskCacheStats, Memory, Snapshot};
use crate::object::Objects;
use crate::platform;
use crate::reader::{OpenFile, ReadData, Reader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub mtime: SystemTime,
    pub uid: u32,
    pub gid: u32,
    /// The kernel must not cache the size: not known yet (the API listed
    /// it as null), or storage contradicted the listing.
    pub size_unknown: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DirEntry<'a> {
    pub ino: u64,
    pub kind: Kind,
    pub name: &'a str,
}

/// How the kernel should treat an opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// Bypass the page cache: the kernel did not know the file's size, so
    /// it must not clamp reads to it.
    pub direct_io: bool,
    /// The object is the version whose pages the kernel may have cached.
    pub keep_cache: bool,
}

#[derive(Debug, Clone)]
pub struct FsConfig {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits cleared from every file (0444) and directory (0555).
    pub umask: u16,
    /// Listings older than this are refreshed in the background.
    pub listing_ttl: Duration,
    /// Longest an open or a read may take before it fails with ETIMEDOUT.
    pub read_timeout: Duration,
}

pub struct OcxFs {
    api: Arc<ApiClient>,
    reader: Arc<Reader>,
    config: FsConfig,
    catalog: RwLock<Catalog>,
    listed_at: Mutex<Instant>,
    refreshing: AtomicBool,
    mounted_at: SystemTime,
    /// Per-inode object state, shared by all handles of a file.
    objects: Objects,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
}

/// An open file.
enum Handle {
    /// A One Codex object: its reader state, and what it was when opened
    /// (it stays readable if deleted upstream meanwhile).
    Object {
        file: Arc<OpenFile>,
        ino: u64,
        info: Arc<FileInfo>,
    },
    /// A daemon-generated file (stats): its contents as of the open.
    Generated(Bytes),
}

/// Runtime state, not listing data: may reading the file POST now?
pub const POST_NEEDED_XATTR: &str = "user.ocxfs.post_needed";

impl OcxFs {
    /// Build the filesystem from a first listing (fetched by the caller so
    /// that a failure stops the mount before it happens).
    pub fn new(
        api: Arc<ApiClient>,
        reader: Arc<Reader>,
        catalog: Catalog,
        config: FsConfig,
    ) -> OcxFs {
        let objects = Objects::new(reader.disk_cache().cloned());
        OcxFs {
            api,
            reader,
            config,
            catalog: RwLock::new(catalog),
            listed_at: Mutex::new(Instant::now()),
            refreshing: AtomicBool::new(false),
            mounted_at: SystemTime::now(),
            objects,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    pub fn reader(&self) -> &Arc<Reader> {
        &self.reader
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().expect("catalog lock poisoned")
    }

    fn attr_of(&self, catalog: &Catalog, ino: u64) -> Result<Attr> {
        let base = Attr {
            ino,
            kind: Kind::Dir,
            size: 0,
            perm: 0o555 & !self.config.umask,
            nlink: 2,
            mtime: self.mounted_at,
            uid: self.config.uid,
            gid: self.config.gid,
            size_unknown: false,
        };
        let Some(node) = catalog.node(ino) else {
            // Deleted upstream but still open: it keeps its attributes
            // until the last handle closes.
            let handles = self.handles.lock().expect("handles lock poisoned");
            let open = handles.values().find_map(|h| match h {
                Handle::Object { ino: i, info, .. } if *i == ino => Some(info),
                _ => None,
            });
            return match open {
                Some(info) => Ok(self.file_attr(info, base)),
                None => Err(Error::NotFound(format!("inode {ino}"))),
            };
        };
        match node {
            Node::Dir(_) => Ok(base),
            Node::Stats => Ok(Attr {
                kind: Kind::File,
                perm: 0o444 & !self.config.umask,
                nlink: 1,
                mtime: SystemTime::now(),
                size_unknown: true,
                ..base
            }),
            Node::File(info) => Ok(self.file_attr(info, base)),
        }
    }

    fn file_attr(&self, info: &FileInfo, base: Attr) -> Attr {
        // A size learned from storage beats the listing's.
        let learned = self.objects.size(base.ino);
        let size = learned.or(info.size);
        Attr {
            kind: Kind::File,
            size: size.unwrap_or(0),
            perm: 0o444 & !self.config.umask,
            nlink: info.links.max(1),
            mtime: info.created,
            // Storage contradicted the listing: the kernel must not keep
            // the size it was told before.
            size_unknown: size.is_none() || learned.is_some_and(|l| Some(l) != info.size),
            ..base
        }
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        self.attr_of(&self.catalog(), ino)
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        let catalog = self.catalog();
        let ino = catalog
            .lookup(parent, name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?;
        self.attr_of(&catalog, ino)
    }

    /// Entries of a directory from position `offset` on (`.` and `..`
    /// first), handed to `add` with the offset of the entry after each,
    /// until `add` says its buffer is full.
    /// With `plus`, each entry comes with its attributes (READDIRPLUS: the
    /// kernel then needs no LOOKUP per entry, which makes a cold `ls -l`
    /// of thousands of files one round trip per buffer).
    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        mut add: impl FnMut(DirEntry<'_>, Option<Attr>, u64) -> bool,
    ) -> Result<()> {
        let catalog = self.catalog();
        let Some(Node::Dir(dir)) = catalog.node(ino) else {
            return Err(Error::NotFound(format!("directory {ino}")));
        };
        let dots = [(".", ino), ("..", dir.parent)];
        let dots = dots.into_iter().map(|(name, ino)| DirEntry {
            ino,
            kind: Kind::Dir,
            name,
        });
        let children = dir.entries.iter().map(|(name, &child)| {
            let kind = match catalog.node(child) {
                Some(Node::Dir(_)) => Kind::Dir,
                _ => Kind::File,
            };
            DirEntry {
                ino: child,
                kind,
                name,
            }
        });
        for (i, entry) in dots.chain(children).enumerate().skip(offset as usize) {
            let attr = if plus {
                Some(self.attr_of(&catalog, entry.ino)?)
            } else {
                None
            };
            if add(entry, attr, i as u64 + 1) {
                break;
            }
        }
        Ok(())
    }

    /// The extended attributes of a file (`user.onecodex.*`), from the
    /// listing: never a POST. Directories have none.
    pub fn xattrs(&self, ino: u64) -> Result<Vec<(String, String)>> {
        match self.catalog().node(ino) {
            Some(Node::File(info)) => {
                let mut attrs = info.xattrs.clone();
                // Whether reading the file now would POST (`ocxfs prefetch`
                // counts these before it asks), or why it cannot.
                let presign = self.reader.presign();
                let cached = presign.has_url(&info.object);
                attrs.push((
                    POST_NEEDED_XATTR.to_owned(),
                    presign.guard().post_needed(&info.object, cached),
                ));
                Ok(attrs)
            }
            Some(Node::Dir(_) | Node::Stats) => Ok(Vec::new()),
            None => Err(Error::NotFound(format!("inode {ino}"))),
        }
    }

    /// One extended attribute of a file. Only `user.` attributes exist: on
    /// Linux and FreeBSD any other namespace is unsupported rather than
    /// missing; on macOS (no namespaces) every other name is missing, so
    /// Finder's `com.apple.*` queries get "no such attribute".
    pub fn xattr(&self, ino: u64, name: &OsStr) -> Result<String> {
        let lossy = || name.to_string_lossy().into_owned();
        if platform::unsupported_xattr_namespace(name) {
            return Err(Error::XattrNamespace(lossy()));
        }
        self.xattrs(ino)?
            .into_iter()
            .find(|(k, _)| OsStr::new(k) == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::NoXattr(lossy()))
    }

    /// Open for reading: one POST unless a valid URL is cached.
    pub async fn open(&self, ino: u64, flags: i32, ticket: &Ticket) -> Result<Opened> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(Error::ReadOnly);
        }
        if matches!(self.catalog().node(ino), Some(Node::Stats)) {
            let json = serde_json::to_vec_pretty(&self.stats()).expect("stats serialize");
            let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
            self.handles
                .lock()
                .expect("handles lock poisoned")
                .insert(fh, Handle::Generated(Bytes::from(json)));
            return Ok(Opened {
                fh,
                direct_io: true,
                keep_cache: false,
            });
        }
        let info = self.catalog().file(ino).cloned().ok_or_else(|| {
            Error::NotFound(format!(
                "inode {ino} is not a file (or was deleted upstream)"
            ))
        })?;
        let (state, keep_cache) = self.objects.for_open(ino, &info.object, info.size);
        let object = info.object.clone();
        // Storage's size differs from the listing's (the kernel may still
        // hold the latter): direct I/O, so reads go to storage's end.
        let direct_io = info.size.is_none() || state.size() != info.size;
        let page_cached = !direct_io && !platform::bypasses_page_cache(flags);
        let kernel_size = if direct_io { None } else { info.size };
        let file = self
            .bounded(
                self.reader.open(state, page_cached, kernel_size),
                &object,
                ticket,
            )
            .await?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = Handle::Object {
            file: Arc::new(file),
            ino,
            info: info.clone(),
        };
        self.handles
            .lock()
            .expect("handles lock poisoned")
            .insert(fh, handle);
        Ok(Opened {
            fh,
            direct_io,
            keep_cache,
        })
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32, ticket: &Ticket) -> Result<ReadData> {
        // One lookup per read: the handle says what kind of file it is.
        let file = match self.handles.lock().expect("handles lock poisoned").get(&fh) {
            Some(Handle::Object { file, .. }) => file.clone(),
            Some(Handle::Generated(bytes)) => {
                let start = (offset as usize).min(bytes.len());
                let end = (start + size as usize).min(bytes.len());
                return Ok(ReadData(vec![bytes.slice(start..end)]));
            }
            None => return Err(Error::BadHandle(fh)),
        };
        let read = self.reader.read(&file, offset, u64::from(size));
        self.bounded(read, &file.object.object, ticket).await
    }

    /// Bound an open or a read: a process blocked on a dead server gets
    /// ETIMEDOUT after the read timeout, and EINTR when the kernel
    /// interrupts the request (the process got a signal; `interrupt` says
    /// how soon). Downloads that other readers share go on; only this
    /// request's wait ends.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T>>,
        object: &ObjectId,
        ticket: &Ticket,
    ) -> Result<T> {
        let error = tokio::select! {
            result = tokio::time::timeout(self.config.read_timeout, op) => match result {
                Ok(result) => return result,
                Err(_) => Error::Timeout(format!("no answer within {:?}", self.config.read_timeout).into()),
            },
            () = ticket.interrupted() => Error::Interrupted,
        };
        if matches!(error, Error::Interrupted) {
            tracing::info!(%object, "an open or read was interrupted by a signal to its process");
        } else {
            tracing::error!(%object, error = %error.chain(), "giving up on a read");
        }
        self.reader.metrics().count_error(&error);
        Err(error)
    }

    /// The listed bytes and the inode count, for `statfs` (`df`).
    pub fn usage(&self) -> (u64, u64) {
        self.catalog().usage()
    }

    /// The counters of this mount, as `.ocxfs/stats.json` shows them.
    pub fn stats(&self) -> Snapshot {
        let mut snap = self.reader.metrics().snapshot();
        let (cached, in_flight) = self.reader.cache_usage();
        snap.memory = Memory {
            budget: self.reader.memory_budget(),
            cached_bytes: cached,
            in_flight_bytes: in_flight,
            rss_bytes: platform::resident_bytes(),
        };
        snap.disk_cache = self.reader.disk_cache().map(|d| {
            let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
            DiskCacheStats {
                hits: get(&d.stats.hits),
                misses: get(&d.stats.misses),
                damaged_blocks: get(&d.stats.corrupt),
                write_failures: get(&d.stats.write_failures),
                evictions: get(&d.stats.evictions),
                used_bytes: d.used_bytes(),
                max_bytes: d.max_bytes(),
            }
        });
        let catalog = self.catalog();
        (snap.documents, snap.samples) = catalog.counts();
        snap.listing_skipped = catalog.skipped();
        drop(catalog);
        snap.uptime_seconds = self.mounted_at.elapsed().map_or(0, |d| d.as_secs());
        snap.guard = self.reader.presign().guard().stats();
        snap
    }

    pub fn release(&self, fh: u64) -> Result<()> {
        match self
            .handles
            .lock()
            .expect("handles lock poisoned")
            .remove(&fh)
        {
            Some(_) => Ok(()),
            None => Err(Error::BadHandle(fh)),
        }
    }

    /// Whether the listing is older than its TTL; if so the caller should
    /// run `refresh` in the background (at most one runs at a time).
    pub fn take_refresh_due(&self) -> bool {
        let due = self
            .listed_at
            .lock()
            .expect("listed_at lock poisoned")
            .elapsed()
            >= self.config.listing_ttl;
        due && !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// Fetch the listing again and swap it in. On failure the old listing
    /// stays, and the next attempt waits another TTL.
    pub async fn refresh(&self) {
        match self.api.listing().await {
            Ok(listing) => {
                self.reader.presign().guard().set_terms(&listing);
                let skipped = self
                    .catalog
                    .write()
                    .expect("catalog lock poisoned")
                    .rebuild(&listing);
                tracing::debug!(
                    documents = listing.documents.len(),
                    samples = listing.samples.len(),
                    skipped,
                    "listing refreshed"
                );
            }
            Err(error) => {
                tracing::warn!(error = %error.chain(), "listing refresh failed; keeping the previous listing")
            }
        }
        *self.listed_at.lock().expect("listed_at lock poisoned") = Instant::now();
        self.refreshing.store(false, Ordering::Release);
    }
}
