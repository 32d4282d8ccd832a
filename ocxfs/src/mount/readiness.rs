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
pub(super) fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), &addr?));
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
