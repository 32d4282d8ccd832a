//! FreeBSD: fusefs(5), sysctl, the XDG directories.

use fuser::MountOption;

pub use super::bsd::{
    FUSE_THREADS, NO_ATTRIBUTE, detach, is_mount_point, notify_service, raise_kernel_read_ahead,
    unmount,
};
pub use super::linuxlike::{
    bypasses_page_cache, is_dead_mount_error, log_dir, unsupported_xattr_namespace,
};

/// fusefs needs no options beyond the common ones.
pub fn mount_options() -> Vec<MountOption> {
    Vec::new()
}

/// Whether process `pid` is being killed: SIGKILL pending, or already
/// exiting (P_WEXIT), from sysctl's kinfo_proc.
pub fn being_killed(pid: u32) -> bool {
    let Ok(pid) = libc::c_int::try_from(pid) else {
        return false;
    };
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
    // SAFETY: kinfo_proc is plain data; all zeroes is a valid value.
    let mut info: libc::kinfo_proc = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::kinfo_proc>();
    // SAFETY: the buffer is a kinfo_proc of `len` bytes.
    let rc = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            mib.len() as libc::c_uint,
            (&raw mut info).cast(),
            &mut len,
            std::ptr::null(),
            0,
        )
    };
    if rc != 0 || len != std::mem::size_of::<libc::kinfo_proc>() {
        return false;
    }
    // SAFETY: ki_siglist is a valid sigset_t.
    let kill_pending = unsafe { libc::sigismember(&info.ki_siglist, libc::SIGKILL) } == 1;
    kill_pending || info.ki_flag & libc::c_long::from(libc::P_WEXIT) != 0
}
