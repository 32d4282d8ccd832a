//! The fuser adapter: translates FUSE requests to `OcxFs` calls. Metadata
//! is answered inline (it is in memory); opens and reads run as tokio
//! tasks, so a slow download never blocks other requests, and the kernel
//! can interrupt them (`interrupt`).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, RequestId, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;

use crate::error::Error;
use crate::fs::{Attr, Kind, OcxFs};
use crate::interrupt::Interrupts;

/// Reads of up to 1 MiB per FUSE request (the kernel's `max_pages` limit).
const MAX_READ: u32 = 1024 * 1024;
/// Up to this many reads (the kernel's read-ahead among them) are sent to
/// ocxfs at once, so parallel readers do not queue behind each other.
const MAX_BACKGROUND: u16 = 64;

pub struct FuseAdapter {
    fs: Arc<OcxFs>,
    rt: Handle,
    interrupts: Arc<Interrupts>,
}

impl FuseAdapter {
    pub fn new(fs: Arc<OcxFs>, rt: Handle) -> FuseAdapter {
        FuseAdapter {
            fs,
            rt,
            interrupts: Arc::default(),
        }
    }

    /// Metadata may be cached by the kernel as long as the listing is.
    fn ttl(&self, attr: &Attr) -> Duration {
        if attr.size_unknown {
            Duration::ZERO
        } else {
            self.fs.config().listing_ttl.min(Duration::from_secs(60))
        }
    }

    fn refresh_if_due(&self) {
        if self.fs.take_refresh_due() {
            let fs = self.fs.clone();
            self.rt.spawn(async move { fs.refresh().await });
        }
    }
}

/// The xattr protocol: size 0 asks for the length; a short buffer is ERANGE.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

fn errno(e: &Error) -> Errno {
    Errno::from_i32(e.errno())
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: match a.kind {
            Kind::Dir => FileType::Directory,
            Kind::File => FileType::RegularFile,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        // Tools size their buffers from st_blksize: ask for large reads.
        blksize: MAX_READ,
        flags: 0,
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(MAX_READ);
        let _ = config.set_max_background(MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
        // READDIRPLUS (adaptively: the kernel uses it when the entries are
        // then looked up), and lookups in one directory in parallel.
        let _ = config.add_capabilities(
            InitFlags::FUSE_DO_READDIRPLUS
                | InitFlags::FUSE_READDIRPLUS_AUTO
                | InitFlags::FUSE_PARALLEL_DIROPS,
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.refresh_if_due();
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.fs.lookup(parent.0, name) {
            Ok(attr) => reply.entry(&self.ttl(&attr), &file_attr(&attr), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&self.ttl(&attr), &file_attr(&attr)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.refresh_if_due();
        let result = self.fs.readdir(ino.0, offset, false, |entry, _, next| {
            let kind = match entry.kind {
                Kind::Dir => FileType::Directory,
                Kind::File => FileType::RegularFile,
            };
            reply.add(INodeNo(entry.ino), next, kind, entry.name)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.refresh_if_due();
        let result = self.fs.readdir(ino.0, offset, true, |entry, attr, next| {
            let attr = attr.expect("readdirplus gives attributes");
            reply.add(
                INodeNo(entry.ino),
                next,
                entry.name,
                &self.ttl(&attr),
                &file_attr(&attr),
                Generation(0),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn interrupt(&self, _req: &Request, unique: RequestId) -> Result<(), Errno> {
        self.interrupts.interrupt(unique.0);
        Ok(())
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let ticket = self.interrupts.begin(req.unique().0, req.pid());
        self.rt.spawn(async move {
            match fs.open(ino.0, flags.0, &ticket).await {
                Ok(opened) => {
                    let mut f = FopenFlags::empty();
                    if opened.direct_io {
                        f |= FopenFlags::FOPEN_DIRECT_IO;
                    }
                    // Objects never change for an id: keep the page cache
                    // across opens so a re-read is served by the kernel.
                    if opened.keep_cache {
                        f |= FopenFlags::FOPEN_KEEP_CACHE;
                    }
                    reply.opened(FileHandle(opened.fh), f);
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        let ticket = self.interrupts.begin(req.unique().0, req.pid());
        self.rt.spawn(async move {
            match fs.read(fh.0, offset, size, &ticket).await {
                Ok(data) => reply.data_vectored(&data.0),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        // Only `user.` attributes exist here. Saying so (ENOTSUP, not
        // ENODATA) for security.* and system.* lets `ls -l` stop asking
        // about SELinux labels and ACLs for the whole mount, which would
        // otherwise cost two round trips per file.
        if !name.as_encoded_bytes().starts_with(b"user.") {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let value = self.fs.xattrs(ino.0).map(|attrs| {
            attrs
                .into_iter()
                .find(|(k, _)| OsStr::new(k) == name)
                .map(|(_, v)| v.into_bytes())
        });
        match value {
            Ok(Some(v)) => reply_xattr(reply, size, &v),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.xattrs(ino.0) {
            Ok(attrs) => {
                let names: Vec<u8> = attrs
                    .iter()
                    .flat_map(|(k, _)| k.bytes().chain([0]))
                    .collect();
                reply_xattr(reply, size, &names)
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(
            0,
            0,
            0,
            0,
            0,
            MAX_READ,
            crate::names::NAME_MAX as u32,
            MAX_READ,
        );
    }

    // Everything that would change the tree or a file is refused: the
    // mount is read-only (the kernel also refuses most of these itself
    // because the mount carries `ro`).

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }
}
