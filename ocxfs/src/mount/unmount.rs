//! Unmounting: on a stop signal, after an unmount from outside, by
//! `ocxfs unmount`, detached while files are open.

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::readiness::notify_service;
use super::session::Session;
use crate::platform::{self, ServiceState};
use crate::reader::Reader;

/// SIGTERM and SIGINT, caught from before the mount exists, so that a stop
/// request that follows readiness at once still unmounts cleanly.
pub(super) struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    pub(super) fn catch(rt: &tokio::runtime::Runtime) -> Result<StopSignals, String> {
        let _rt = rt.enter();
        let term = signal(SignalKind::terminate()).map_err(|e| format!("signal handler: {e}"))?;
        let int = signal(SignalKind::interrupt()).map_err(|e| format!("signal handler: {e}"))?;
        Ok(StopSignals { term, int })
    }
}

/// Serve until a stop signal or an unmount from outside, then write out
/// what the disk cache still holds and unmount.
pub(super) fn serve_until_stopped(
    rt: &tokio::runtime::Runtime,
    mut signals: StopSignals,
    session: Session,
    reader: &Reader,
    mountpoint: &Path,
) {
    let Session {
        mut unmounter,
        done,
        ended,
    } = session;
    rt.block_on(async {
        tokio::select! {
            _ = signals.int.recv() => tracing::info!("SIGINT: unmounting"),
            _ = signals.term.recv() => tracing::info!("SIGTERM: unmounting"),
            _ = done => tracing::info!("unmounted from outside"),
        }
    });
    notify_service(ServiceState::Stopping);
    // Keep what the mount fetched for the next one: its URLs and blocks.
    reader.presign().save_store();
    rt.block_on(reader.flush_disk_writes(Duration::from_secs(10)));
    if let Err(e) = unmounter.unmount() {
        // Busy (files open): detach the mount now. Open files keep the FUSE
        // connection alive; it ends when this process exits.
        tracing::warn!("unmount: {e}; detaching");
        detach(mountpoint);
    }
    if ended.recv_timeout(Duration::from_secs(2)).is_err() {
        tracing::warn!("files are still open on the detached mount; they will fail from now on");
    }
}

/// Detach a mount even while files are open on it (lazily on Linux, by
/// force elsewhere).
pub(super) fn detach(path: &Path) {
    if let Err(e) = platform::detach(path) {
        tracing::warn!("cannot detach {}: {e}", path.display());
    }
}

/// `ocxfs unmount`: unmount a mounted directory.
pub fn unmount(path: &Path) -> Result<(), String> {
    let absolute = super::mountpoint::absolute(path);
    if !platform::is_mount_point(&absolute) {
        return Err(format!("{} is not mounted", path.display()));
    }
    platform::unmount(&absolute).map_err(|e| format!("could not unmount {}: {e}", path.display()))
}
