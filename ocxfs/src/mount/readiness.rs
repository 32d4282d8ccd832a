//! The daemon's readiness report, to the parent that started it or to
//! systemd.

use std::io::Write;
use std::os::fd::FromRawFd;

/// Tells the parent how the mount went (when there is a parent), or the
/// user directly in the foreground.
pub(super) struct Readiness(Option<std::fs::File>);

impl Readiness {
    pub(super) fn from_fd(fd: Option<i32>) -> Readiness {
        // SAFETY: the parent passed us this descriptor for this purpose.
        Readiness(fd.map(|fd| unsafe { std::fs::File::from_raw_fd(fd) }))
    }

    pub(super) fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Something the user should read even when the daemon detaches.
    pub(super) fn note(&mut self, text: &str) {
        match &mut self.0 {
            Some(f) => {
                let _ = writeln!(f, "note: {text}");
            }
            None => eprintln!("ocxfs: {text}"),
        }
    }
}

/// Tell systemd (a `Type=notify` service) how the daemon is doing; a no-op
/// elsewhere.
pub(super) fn notify_systemd(state: sd_notify::NotifyState) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
