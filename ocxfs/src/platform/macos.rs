//! macOS: macFUSE, Finder's conventions, ~/Library.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;

use fuser::MountOption;

pub use super::bsd::{
    FUSE_THREADS, NO_ATTRIBUTE, detach, is_mount_point, notify_service, raise_kernel_read_ahead,
    unmount,
};

/// macFUSE options that make a read-only network volume behave in Finder:
/// a volume name instead of "macFUSE Volume 0", and no `._` AppleDouble
/// files (which Finder would try to write for its metadata).
pub fn mount_options() -> Vec<MountOption> {
    vec![
        MountOption::CUSTOM("volname=ocxfs".into()),
        MountOption::CUSTOM("noappledouble".into()),
    ]
}

/// The errors a macFUSE mount whose daemon died answers with: ENXIO
/// ("Device not configured"), or ENOTCONN.
pub fn is_dead_mount_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENOTCONN))
}

/// Whether process `pid` is exiting (proc_pidinfo's PROC_FLAG_INEXIT): a
/// killed process's pending read may end at once.
pub fn being_killed(pid: u32) -> bool {
    /// `PROC_FLAG_INEXIT` in <sys/proc_info.h>.
    const PROC_FLAG_INEXIT: u32 = 4;
    let Ok(pid) = libc::c_int::try_from(pid) else {
        return false;
    };
    // SAFETY: proc_bsdinfo is plain data; all zeroes is a valid value.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_bsdinfo>() as libc::c_int;
    // SAFETY: the buffer is a proc_bsdinfo of `size` bytes.
    let n =
        unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, (&raw mut info).cast(), size) };
    n == size && info.pbi_flags & PROC_FLAG_INEXIT != 0
}

/// O_DIRECT does not exist on macOS; its equivalent, F_NOCACHE, is set
/// with fcntl after the open and never reaches the filesystem.
pub fn bypasses_page_cache(_flags: i32) -> bool {
    false
}

/// macOS attribute names have no namespaces: every name is looked up, and
/// one ocxfs does not have (Finder's `com.apple.*` queries) is "no such
/// attribute", not "unsupported", so Finder does not fall back to `._`
/// files.
pub fn unsupported_xattr_namespace(_name: &OsStr) -> bool {
    false
}

/// `~/Library/Logs/ocxfs`, where Console.app looks.
pub fn log_dir() -> Option<PathBuf> {
    let base = directories::BaseDirs::new()?;
    Some(base.home_dir().join("Library/Logs/ocxfs"))
}
