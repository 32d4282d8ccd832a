//! What Linux shares with FreeBSD: ENOTCONN from dead mounts, O_DIRECT,
//! namespaced attribute names, XDG log directories.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;

/// The error a FUSE mount whose daemon died answers with.
pub fn is_dead_mount_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTCONN)
}

/// Whether a file opened with `flags` wants the page cache bypassed
/// (O_DIRECT, when the kernel passes it on in the open flags).
pub fn bypasses_page_cache(flags: i32) -> bool {
    flags & libc::O_DIRECT != 0
}

/// Whether extended attribute `name` is in a namespace ocxfs does not
/// serve: names come with their namespace (`user.`, `security.`,
/// `system.`…), and only `user.` attributes exist. Saying so (ENOTSUP, not
/// "no such attribute") for security.* and system.* lets `ls -l` on Linux
/// stop asking about SELinux labels and ACLs for the whole mount.
pub fn unsupported_xattr_namespace(name: &OsStr) -> bool {
    !name.as_encoded_bytes().starts_with(b"user.")
}

/// Where the daemon's log goes: the state directory, as XDG says.
pub fn log_dir() -> Option<PathBuf> {
    super::state_dir()
}
