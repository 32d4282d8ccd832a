//! Linux: the mount table in /proc, fusermount3, sysfs, systemd.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fuser::MountOption;

use super::ServiceState;
pub use super::linuxlike::{
    bypasses_page_cache, is_dead_mount_error, log_dir, unsupported_xattr_namespace,
};

/// Requests are read from /dev/fuse by this many threads (each on its own
/// cloned descriptor); replies are sent from tasks either way.
pub const FUSE_THREADS: usize = 4;

/// "No such attribute": Linux calls it ENODATA.
pub const NO_ATTRIBUTE: i32 = libc::ENODATA;

/// Mount options only Linux has.
pub fn mount_options() -> Vec<MountOption> {
    // A kernel option, so that `/proc/mounts` says `fuse.ocxfs` (and
    // `findmnt -t fuse.ocxfs` finds it) also when root mounts directly.
    vec![MountOption::CUSTOM("subtype=ocxfs".into())]
}

/// Whether `path` (absolute) is a mount point, from the mount table. Reads
/// no file under `path`, so a dead mount is found too.
pub fn is_mount_point(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|t| mount_table_has(&t, path))
}

/// Whether the mount table `table` (the format of /proc/self/mounts, where
/// space, tab, newline and backslash are octal escapes) has `path`.
fn mount_table_has(table: &str, path: &Path) -> bool {
    let target = path.as_os_str().as_encoded_bytes();
    table
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .any(|field| unescape_octal(field) == target)
}

fn unescape_octal(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// Unmount `path`; fails while files are open on it. fusermount3 lets the
/// user who mounted unmount without root.
pub fn unmount(path: &Path) -> io::Result<()> {
    fusermount(&["-u"], path)
}

/// Detach `path` now even while files are open on it (a lazy unmount:
/// open files keep working until closed).
pub fn detach(path: &Path) -> io::Result<()> {
    fusermount(&["-u", "-z"], path).or_else(|e| {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|errno| io::Error::other(format!("{e}; umount2: {errno}")))
    })
}

fn fusermount(flags: &[&str], path: &Path) -> io::Result<()> {
    let out = Command::new("fusermount3")
        .args(flags)
        .arg("--")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run fusermount3: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(io::Error::other(format!("fusermount3: {}", said.trim())))
}

/// Whether thread `pid` is being killed: the kernel marks every thread of a
/// process that got a fatal signal (SIGKILL, or SIGINT, SIGTERM and the like
/// left to their default action) with a pending SIGKILL.
pub fn being_killed(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| kill_pending(&s))
}

/// `SigPnd` (the thread's) or `ShdPnd` (the process's) holds SIGKILL.
fn kill_pending(status: &str) -> bool {
    let sigkill = 1u64 << (libc::SIGKILL - 1);
    status
        .lines()
        .filter_map(|l| l.strip_prefix("SigPnd:").or(l.strip_prefix("ShdPnd:")))
        .filter_map(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .any(|mask| mask & sigkill != 0)
}

/// Ask the kernel for 1 MiB read-ahead on the mount at `path` (its FUSE
/// default is 128 KiB, which caps sequential reads at 128 KiB requests),
/// through sysfs. Needs root.
pub fn raise_kernel_read_ahead(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let bdi = read_ahead_setting(std::fs::metadata(path)?.dev());
    std::fs::write(&bdi, "1024")
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", bdi.display())))
}

/// The sysfs file holding the read-ahead of the device `dev`.
fn read_ahead_setting(dev: u64) -> PathBuf {
    PathBuf::from(format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    ))
}

/// Tell systemd (a `Type=notify` service); a no-op outside one.
pub fn notify_service(state: ServiceState) -> io::Result<()> {
    let state = match state {
        ServiceState::Ready => sd_notify::NotifyState::Ready,
        ServiceState::Stopping => sd_notify::NotifyState::Stopping,
    };
    sd_notify::notify(&[state])
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn the_mount_table_is_read_with_its_escapes() {
        let table = "proc /proc proc rw 0 0\n\
                     ocxfs /home/a\\040b/my\\134mnt fuse.ocxfs ro 0 0\n";
        assert!(mount_table_has(table, Path::new("/proc")));
        assert!(mount_table_has(table, Path::new("/home/a b/my\\mnt")));
        assert!(!mount_table_has(
            table,
            Path::new("/home/a\\040b/my\\134mnt")
        ));
        assert!(!mount_table_has(table, Path::new("/home")));
    }

    #[test]
    fn mount_points_come_from_the_live_table() {
        assert!(is_mount_point(Path::new("/proc")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(dir.path()));
    }

    #[test]
    fn a_dead_mount_answers_enotconn() {
        assert!(is_dead_mount_error(&io::Error::from_raw_os_error(
            libc::ENOTCONN
        )));
        assert!(!is_dead_mount_error(&io::Error::from_raw_os_error(
            libc::ENOENT
        )));
    }

    #[test]
    fn unmounting_what_is_not_mounted_fails_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = unmount(dir.path()).unwrap_err();
        assert!(e.to_string().starts_with("fusermount3"), "{e}");
        let e = detach(dir.path()).unwrap_err();
        assert!(e.to_string().contains("umount2"), "{e}");
    }

    #[test]
    fn a_pending_sigkill_is_read_from_proc_status() {
        let status = |pnd: &str, shd: &str| {
            format!(
                "Name:\tdd\nSigQ:\t0/1\nSigPnd:\t{pnd}\nShdPnd:\t{shd}\nSigBlk:\t0000000000000000\n"
            )
        };
        assert!(kill_pending(&status(
            "0000000000000100",
            "0000000000000000"
        )));
        assert!(kill_pending(&status(
            "0000000000000000",
            "0000000000000100"
        )));
        // SIGINT (bit 1) or SIGTERM (bit 14) pending: caught, not fatal.
        assert!(!kill_pending(&status(
            "0000000000000002",
            "0000000000004000"
        )));
        assert!(!kill_pending("not a status file"));
        assert!(!being_killed(std::process::id()));
        assert!(!being_killed(u32::MAX), "no such process");
    }

    #[test]
    fn read_ahead_is_set_per_device() {
        let dev = libc::makedev(0, 42);
        assert_eq!(
            read_ahead_setting(dev),
            Path::new("/sys/class/bdi/0:42/read_ahead_kb")
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(raise_kernel_read_ahead(&missing).is_err());
    }

    #[test]
    fn outside_systemd_readiness_is_a_no_op() {
        // The tests never run as a notify service.
        assert!(std::env::var_os("NOTIFY_SOCKET").is_none());
        notify_service(ServiceState::Ready).unwrap();
    }

    #[test]
    fn o_direct_bypasses_the_page_cache() {
        assert!(bypasses_page_cache(libc::O_RDONLY | libc::O_DIRECT));
        assert!(!bypasses_page_cache(libc::O_RDONLY));
    }

    #[test]
    fn only_user_attributes_are_served() {
        assert!(!unsupported_xattr_namespace(OsStr::new(
            "user.ocxfs.sha256"
        )));
        assert!(unsupported_xattr_namespace(OsStr::new("security.selinux")));
        assert!(unsupported_xattr_namespace(OsStr::new(
            "system.posix_acl_access"
        )));
        assert_eq!(NO_ATTRIBUTE, libc::ENODATA);
    }

    #[test]
    fn logs_go_with_the_state() {
        assert_eq!(log_dir(), super::super::state_dir());
    }

    #[test]
    fn mounts_carry_the_subtype() {
        assert!(mount_options().contains(&MountOption::CUSTOM("subtype=ocxfs".into())));
    }
}
