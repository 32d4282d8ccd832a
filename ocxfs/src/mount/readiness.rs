//! The daemon's readiness report, to the parent that started it or to
//! the service manager.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::sync::{Mutex, MutexGuard};

use tracing_subscriber::layer::Context;

use crate::platform::{self, ServiceState};

/// Tells the parent how the mount went (when there is a parent), or the
/// user directly in the foreground.
pub(super) struct Readiness(Option<std::fs::File>);

impl Readiness {
    pub(super) fn from_fd(fd: Option<i32>) -> Readiness {
        if fd.is_some() {
            *early_warnings() = Some(Vec::new());
        }
        // SAFETY: the parent passed us this descriptor for this purpose.
        Readiness(fd.map(|fd| unsafe { std::fs::File::from_raw_fd(fd) }))
    }

    /// The last line: `ok` or `error: …`, after the warnings logged so far.
    pub(super) fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            pass_on_warnings(&mut f);
            let _ = writeln!(f, "{line}");
        }
        *early_warnings() = None;
    }

    /// Something the user should read even when the daemon detaches.
    pub(super) fn note(&mut self, text: &str) {
        match &mut self.0 {
            Some(f) => {
                pass_on_warnings(f);
                let _ = writeln!(f, "note: {text}");
            }
            None => eprintln!("ocxfs: {text}"),
        }
    }
}

/// Tell the service manager (systemd, for a `Type=notify` service) how the
/// daemon is doing; a no-op elsewhere.
pub(super) fn notify_service(state: ServiceState) {
    if let Err(e) = platform::notify_service(state) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// Warnings logged by a detached daemon before its mount is ready, for the
/// parent to print: the daemon's log is a file nobody watches yet. `None`
/// when there is no parent (or it was told), so nothing piles up.
fn early_warnings() -> MutexGuard<'static, Option<Vec<String>>> {
    static WARNINGS: Mutex<Option<Vec<String>>> = Mutex::new(None);
    WARNINGS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The warnings logged since the last call, as notes to the parent.
fn pass_on_warnings(parent: &mut std::fs::File) {
    let warnings = early_warnings().as_mut().map(std::mem::take);
    for warning in warnings.unwrap_or_default() {
        let _ = writeln!(parent, "note: warning: {warning}");
    }
}

/// The logging layer that keeps WARN events for `Readiness::send`.
pub struct EarlyWarnings;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for EarlyWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        if let Some(list) = early_warnings().as_mut() {
            let mut message = Message(String::new());
            event.record(&mut message);
            list.push(message.0);
        }
    }
}

/// An event's message (its fields are for the log).
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
