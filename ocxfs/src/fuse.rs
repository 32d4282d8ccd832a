//! The fuser adapter: translates FUSE requests to `OcxFs` calls.
//!
//! Design notes:
//!
//! - Metadata is answered inline (it is in memory); opens and reads run as
//!   tokio tasks, so a slow download never blocks other requests, and the
//!   kernel can interrupt them (`interrupt`).
//! - Every request runs in a tracing span (`fuse` with the operation, the
//!   request's id and the inode), which the task of an open or a read
//!   carries along: a log line deep in a download says which request it
//!   served.
//! - Failures are typed errors; `fail!` logs one with its causes and
//!   replies with its errno from `Error::errno`, the one map. This file has
//!   no errno of its own.

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
use tracing::{Instrument, Span};

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

/// Reply to a request with the errno of a typed error (`Error::errno`, the
/// one map), after logging the error with its causes.
macro_rules! fail {
    ($reply:expr, $error:expr) => {{
        let error: Error = $error;
        let errno = error.errno();
        tracing::debug!(errno, error = %error.chain(), "request failed");
        $reply.error(Errno::from_i32(errno))
    }};
}

/// Refuse a request that would change something: the mount is read-only.
macro_rules! read_only {
    ($op:literal, $req:expr, $ino:expr, $reply:expr) => {{
        let _span = request_span($op, $req, $ino).entered();
        fail!($reply, Error::ReadOnly)
    }};
}

/// The span of one FUSE request.
fn request_span(op: &'static str, req: &Request, ino: INodeNo) -> Span {
    tracing::debug_span!("fuse", op, req = req.unique().0, ino = ino.0)
}

/// The xattr protocol: size 0 asks for the length; a short buffer is an
/// error.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        fail!(reply, Error::XattrTooLarge(value.len()));
    } else {
        reply.data(value);
    }
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

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _span = request_span("lookup", req, parent).entered();
        self.refresh_if_due();
        let Some(name) = name.to_str() else {
            // Every name ocxfs makes is UTF-8.
            return fail!(reply, Error::NotFound(name.to_string_lossy().into_owned()));
        };
        match self.fs.lookup(parent.0, name) {
            Ok(attr) => reply.entry(&self.ttl(&attr), &file_attr(&attr), Generation(0)),
            Err(e) => fail!(reply, e),
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let _span = request_span("getattr", req, ino).entered();
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&self.ttl(&attr), &file_attr(&attr)),
            Err(e) => fail!(reply, e),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let _span = request_span("readdir", req, ino).entered();
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
            Err(e) => fail!(reply, e),
        }
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let _span = request_span("readdirplus", req, ino).entered();
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
            Err(e) => fail!(reply, e),
        }
    }

    fn interrupt(&self, req: &Request, unique: RequestId) -> Result<(), Errno> {
        let _span = tracing::debug_span!(
            "fuse",
            op = "interrupt",
            req = req.unique().0,
            of = unique.0
        )
        .entered();
        self.interrupts.interrupt(unique.0);
        Ok(())
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let ticket = self.interrupts.begin(req.unique().0, req.pid());
        let span = request_span("open", req, ino);
        let task = async move {
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
                Err(e) => fail!(reply, e),
            }
        };
        self.rt.spawn(task.instrument(span));
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        let ticket = self.interrupts.begin(req.unique().0, req.pid());
        let span = request_span("read", req, ino);
        let task = async move {
            match fs.read(fh.0, offset, size, &ticket).await {
                Ok(data) => reply.data_vectored(&data.0),
                Err(e) => fail!(reply, e),
            }
        };
        self.rt.spawn(task.instrument(span));
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let _span = request_span("release", req, ino).entered();
        match self.fs.release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => fail!(reply, e),
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let _span = request_span("flush", req, ino).entered();
        reply.ok();
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let _span = request_span("getxattr", req, ino).entered();
        match self.fs.xattr(ino.0, name) {
            Ok(value) => reply_xattr(reply, size, value.as_bytes()),
            Err(e) => fail!(reply, e),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let _span = request_span("listxattr", req, ino).entered();
        match self.fs.xattrs(ino.0) {
            Ok(attrs) => {
                let names: Vec<u8> = attrs
                    .iter()
                    .flat_map(|(k, _)| k.bytes().chain([0]))
                    .collect();
                reply_xattr(reply, size, &names)
            }
            Err(e) => fail!(reply, e),
        }
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let _span = request_span("statfs", req, ino).entered();
        // `df`: the account's listed bytes as used space, nothing free (it
        // is read-only); `df -i`: its inodes.
        const FRAGMENT: u32 = 4096;
        let (bytes, inodes) = self.fs.usage();
        reply.statfs(
            bytes.div_ceil(u64::from(FRAGMENT)),
            0,
            0,
            inodes,
            0,
            MAX_READ,
            crate::names::NAME_MAX as u32,
            FRAGMENT,
        );
    }

    // Everything that would change the tree or a file is refused: the
    // mount is read-only (the kernel also refuses most of these itself
    // because the mount carries `ro`).

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        read_only!("write", req, ino, reply);
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
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
        read_only!("setattr", req, ino, reply);
    }

    fn mknod(
        &self,
        req: &Request,
        p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        read_only!("mknod", req, p, reply);
    }

    fn mkdir(&self, req: &Request, p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        read_only!("mkdir", req, p, reply);
    }

    fn unlink(&self, req: &Request, p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        read_only!("unlink", req, p, reply);
    }

    fn rmdir(&self, req: &Request, p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        read_only!("rmdir", req, p, reply);
    }

    fn symlink(
        &self,
        req: &Request,
        p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        read_only!("symlink", req, p, reply);
    }

    fn rename(
        &self,
        req: &Request,
        p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        read_only!("rename", req, p, reply);
    }

    fn link(&self, req: &Request, ino: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        read_only!("link", req, ino, reply);
    }

    fn create(
        &self,
        req: &Request,
        p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: ReplyCreate,
    ) {
        read_only!("create", req, p, reply);
    }
}
