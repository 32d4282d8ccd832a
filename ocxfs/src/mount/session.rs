//! The FUSE session on the mount point, served by its own thread.

use std::path::Path;

use fuser::{Config, MountOption, SessionACL, SessionUnmounter};

use crate::fuse::FuseAdapter;
use crate::platform;

/// A mounted FUSE session being served.
pub(super) struct Session {
    pub(super) unmounter: SessionUnmounter,
    /// Fires when the session ends (an unmount from outside).
    pub(super) done: tokio::sync::oneshot::Receiver<()>,
    /// Receives once the session thread has returned.
    pub(super) ended: std::sync::mpsc::Receiver<()>,
}

/// Mount `adapter` read-only on `mountpoint` and serve it on a thread.
pub(super) fn start(
    adapter: FuseAdapter,
    mountpoint: &Path,
    access: SessionACL,
) -> Result<Session, String> {
    let mut options = vec![
        MountOption::FSName("ocxfs".into()),
        MountOption::RO,
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::DefaultPermissions,
    ];
    options.extend(platform::mount_options());
    let mut fuse_config = Config::default();
    fuse_config.mount_options = options;
    // Visible to the mounting user only unless asked otherwise.
    fuse_config.acl = access;
    fuse_config.n_threads = Some(platform::FUSE_THREADS);
    // Each extra thread reads from its own descriptor (Linux only).
    fuse_config.clone_fd = platform::FUSE_THREADS > 1;
    let mut session = fuser::Session::new(adapter, mountpoint, &fuse_config)
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;
    let unmounter = session.unmount_callable();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let (ended_tx, ended) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ocxfs-fuse".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                tracing::error!("FUSE session ended with an error: {e}");
            }
            let _ = done_tx.send(());
            let _ = ended_tx.send(());
        })
        .map_err(|e| format!("cannot start the FUSE loop: {e}"))?;
    raise_kernel_readahead(mountpoint);
    Ok(Session {
        unmounter,
        done,
        ended,
    })
}

/// Ask the kernel for 1 MiB read-ahead on this mount (Linux's FUSE default
/// is 128 KiB, which caps sequential reads at 128 KiB requests). Needs
/// root; without it the default stays.
fn raise_kernel_readahead(path: &Path) {
    match platform::raise_kernel_read_ahead(path) {
        Ok(()) => tracing::debug!("kernel read-ahead set to 1 MiB"),
        Err(e) => tracing::debug!("kernel read-ahead left at its default: {e}"),
    }
}
