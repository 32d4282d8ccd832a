//! What macOS shares with FreeBSD: the mount list from getfsstat, unmount(2),
//! one FUSE session thread.

use std::ffi::CStr;
use std::io;
use std::path::Path;

use super::ServiceState;

/// fuser reads requests on one thread outside Linux (it refuses more);
/// replies are still sent from tasks, so a slow download blocks nothing.
pub const FUSE_THREADS: usize = 1;

/// "No such attribute": what Finder and `xattr` expect for one not set.
pub const NO_ATTRIBUTE: i32 = libc::ENOATTR;

/// Whether `path` (absolute) is a mount point, from the kernel's mount list
/// (getfsstat with MNT_NOWAIT asks no filesystem, so a dead mount is found
/// too).
pub fn is_mount_point(path: &Path) -> bool {
    mounted_on().is_ok_and(|all| {
        all.iter()
            .any(|m| m.as_bytes() == path.as_os_str().as_encoded_bytes())
    })
}

/// The directories everything is mounted on.
fn mounted_on() -> io::Result<Vec<std::ffi::CString>> {
    // SAFETY: a null buffer asks only for the count.
    let n = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // Room for a few mounts made in between.
    let mut buf: Vec<libc::statfs> = Vec::with_capacity(n as usize + 8);
    let bytes = buf.capacity() * std::mem::size_of::<libc::statfs>();
    // SAFETY: the buffer has room for `bytes` bytes of statfs records.
    let n = unsafe { libc::getfsstat(buf.as_mut_ptr(), bytes as _, libc::MNT_NOWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getfsstat filled the first n records.
    unsafe { buf.set_len(n as usize) };
    Ok(buf
        .iter()
        // SAFETY: the kernel NUL-terminates f_mntonname.
        .map(|s| unsafe { CStr::from_ptr(s.f_mntonname.as_ptr()) }.to_owned())
        .collect())
}

/// Unmount `path` with unmount(2), as umount(8) does; fails while files
/// are open on it. The user who mounted may unmount (on FreeBSD when the
/// vfs.usermount sysctl allows user mounts).
pub fn unmount(path: &Path) -> io::Result<()> {
    nix::mount::unmount(path, nix::mount::MntFlags::empty()).map_err(io::Error::from)
}

/// Unmount `path` now even while files are open on it: a forced unmount
/// (neither system has a lazy one), after which open files fail.
pub fn detach(path: &Path) -> io::Result<()> {
    nix::mount::unmount(path, nix::mount::MntFlags::MNT_FORCE).map_err(io::Error::from)
}

/// No per-mount read-ahead setting exists outside Linux.
pub fn raise_kernel_read_ahead(_path: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this system has no per-mount read-ahead setting",
    ))
}

/// launchd and rc(8) have no readiness protocol: the parent's readiness
/// pipe is the only report.
pub fn notify_service(_state: ServiceState) -> io::Result<()> {
    Ok(())
}
