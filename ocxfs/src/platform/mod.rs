//! The operating system beneath ocxfs: one interface, one file per system.
//!
//! Everything that differs between Linux, macOS and FreeBSD is answered
//! here; the rest of ocxfs names no `/proc`, `/sys`, `fusermount3` or
//! system-specific libc item.

use std::io;
use std::path::PathBuf;

#[cfg(any(target_os = "macos", target_os = "freebsd"))]
mod bsd;
#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
mod linuxlike;
#[cfg(target_os = "macos")]
mod macos;

#[cfg(target_os = "freebsd")]
use freebsd as os;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
use macos as os;

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "freebsd")))]
compile_error!("ocxfs runs on Linux, macOS and FreeBSD");

pub use os::{
    FUSE_THREADS, NO_ATTRIBUTE, being_killed, bypasses_page_cache, detach, is_dead_mount_error,
    is_mount_point, log_dir, mount_options, notify_service, raise_kernel_read_ahead, unmount,
    unsupported_xattr_namespace,
};

/// What a service manager is told about the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// Mounted and serving.
    Ready,
    /// Unmounting.
    Stopping,
}

/// This process's resident set size in bytes (0 when the system does not
/// say). memory-stats reads `/proc/self/statm` on Linux, the Mach task
/// info on macOS and `kinfo_getproc` on FreeBSD.
pub fn resident_bytes() -> u64 {
    memory_stats::memory_stats().map_or(0, |m| m.physical_mem as u64)
}

/// Where ocxfs keeps state across mounts (such as presigned URLs):
/// `$XDG_STATE_HOME/ocxfs` (else `~/.local/state/ocxfs`) on Linux and
/// FreeBSD, `~/Library/Application Support/ocxfs` on macOS. None without a
/// home directory.
pub fn state_dir() -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "ocxfs")?;
    Some(
        dirs.state_dir()
            .unwrap_or_else(|| dirs.data_local_dir())
            .to_owned(),
    )
}

/// The readiness pipe between `ocxfs mount` and its daemon: (read end,
/// write end), both close-on-exec (pipe2 on Linux and FreeBSD, pipe and
/// fcntl on macOS, through the standard library).
pub fn cloexec_pipe() -> io::Result<(io::PipeReader, io::PipeWriter)> {
    io::pipe()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_set_is_measured() {
        assert!(resident_bytes() > 0);
    }

    #[test]
    fn state_lives_in_a_directory_of_ocxfs_own() {
        let dir = state_dir().expect("the test runs with a home directory");
        assert!(dir.is_absolute(), "{}", dir.display());
        assert_eq!(dir.file_name(), Some(std::ffi::OsStr::new("ocxfs")));
    }

    #[test]
    fn the_readiness_pipe_carries_bytes_and_closes_on_exec() {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        let (mut r, mut w) = cloexec_pipe().unwrap();
        for fd in [r.as_raw_fd(), w.as_raw_fd()] {
            // SAFETY: F_GETFD on a descriptor this test owns.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        }
        w.write_all(b"ok\n").unwrap();
        drop(w);
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "ok\n");
    }
}
