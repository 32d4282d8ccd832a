//! Requests the kernel asks to interrupt. When a process waiting on an
//! open or a read gets a signal (Ctrl-C, a timeout in a pipeline, SIGKILL),
//! the kernel sends FUSE_INTERRUPT naming the request; the request is then
//! answered with EINTR at once instead of when its download ends. Without
//! this, a process blocked on a slow or dead server could not be stopped,
//! not even by SIGKILL, until the read timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long an interrupt for a request not seen yet is remembered. FUSE
/// worker threads read requests concurrently, so an interrupt may be
/// handled a moment before its request is registered; one that names an
/// already answered request is forgotten after this.
const EARLY_INTERRUPT_TTL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Interrupts {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Requests in progress that may be interrupted, by FUSE unique id.
    waiting: HashMap<u64, Arc<Notify>>,
    /// Interrupts that arrived before their request was registered.
    early: Vec<(u64, Instant)>,
}

/// A registered request. Dropping it unregisters the request.
pub struct Ticket {
    unique: u64,
    signal: Arc<Notify>,
    owner: Arc<Interrupts>,
}

impl Interrupts {
    /// Register request `unique` before its work starts.
    pub fn begin(self: &Arc<Self>, unique: u64) -> Ticket {
        let signal = Arc::new(Notify::new());
        let mut inner = self.inner.lock().expect("interrupts lock poisoned");
        if let Some(i) = inner.early.iter().position(|&(u, _)| u == unique) {
            inner.early.swap_remove(i);
            // A stored permit: `interrupted()` returns at once.
            signal.notify_one();
        }
        inner.waiting.insert(unique, signal.clone());
        Ticket {
            unique,
            signal,
            owner: self.clone(),
        }
    }

    /// The kernel asks to interrupt request `unique`.
    pub fn interrupt(&self, unique: u64) {
        self.interrupt_at(unique, Instant::now());
    }

    fn interrupt_at(&self, unique: u64, now: Instant) {
        let mut inner = self.inner.lock().expect("interrupts lock poisoned");
        match inner.waiting.get(&unique) {
            Some(signal) => signal.notify_one(),
            None => {
                inner
                    .early
                    .retain(|&(_, at)| now.duration_since(at) < EARLY_INTERRUPT_TTL);
                inner.early.push((unique, now));
            }
        }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.inner.lock().unwrap().waiting.len()
    }
}

impl Ticket {
    /// Completes when the kernel interrupts this request.
    pub async fn interrupted(&self) {
        self.signal.notified().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.owner
            .inner
            .lock()
            .expect("interrupts lock poisoned")
            .waiting
            .remove(&self.unique);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn fires(ticket: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(50), ticket.interrupted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_interrupt_wakes_its_request_only() {
        let interrupts = Arc::new(Interrupts::default());
        let a = interrupts.begin(10);
        let b = interrupts.begin(11);
        interrupts.interrupt(11);
        assert!(fires(&b).await);
        assert!(!fires(&a).await);
    }

    #[tokio::test]
    async fn an_interrupt_before_its_request_is_kept_briefly() {
        let interrupts = Arc::new(Interrupts::default());
        interrupts.interrupt(7);
        let t = interrupts.begin(7);
        assert!(fires(&t).await, "an early interrupt applies on arrival");
        drop(t);
        // Used once: a later request with the same id is not interrupted.
        let again = interrupts.begin(7);
        assert!(!fires(&again).await);
    }

    #[tokio::test]
    async fn interrupts_of_answered_requests_are_forgotten() {
        let interrupts = Arc::new(Interrupts::default());
        let now = Instant::now();
        interrupts.interrupt_at(1, now);
        interrupts.interrupt_at(2, now + EARLY_INTERRUPT_TTL);
        assert_eq!(
            interrupts.inner.lock().unwrap().early.len(),
            1,
            "the stale one is dropped"
        );
        let t = interrupts.begin(1);
        assert!(!fires(&t).await);
    }

    #[test]
    fn a_finished_request_unregisters() {
        let interrupts = Arc::new(Interrupts::default());
        let t = interrupts.begin(3);
        assert_eq!(interrupts.registered(), 1);
        drop(t);
        assert_eq!(interrupts.registered(), 0);
        interrupts.interrupt(3);
    }
}
