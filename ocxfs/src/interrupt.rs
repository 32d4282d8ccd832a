//! Requests the kernel asks to interrupt. When a process waiting on an
//! open or a read gets a signal (Ctrl-C, a timeout in a pipeline, SIGKILL),
//! the kernel sends FUSE_INTERRUPT naming the request, which can then be
//! answered with EINTR instead of when its download ends. Without this, a
//! process blocked on a slow or dead server could not be stopped, not even
//! by SIGKILL, until the read timeout.
//!
//! Any caught signal interrupts too (a profiler's timer, SIGCHLD, a window
//! resize), and most programs take EINTR from a regular file as a failed
//! read. So a process being killed gets EINTR at once, and any other
//! interrupted request only once it has waited `HANDLED_SIGNAL_GRACE`: a
//! stalled read still ends on Ctrl-C, a read in progress is not failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::platform::being_killed;

/// How long an interrupt for a request not seen yet is remembered. FUSE
/// worker threads read requests concurrently, so an interrupt may be
/// handled a moment before its request is registered; one that names an
/// already answered request is forgotten after this.
const EARLY_INTERRUPT_TTL: Duration = Duration::from_secs(1);
/// A request interrupted by a signal its process handles ends with EINTR
/// once it has waited this long: far longer than a healthy read waits for
/// storage, short enough for Ctrl-C on a stalled read to feel immediate.
const HANDLED_SIGNAL_GRACE: Duration = Duration::from_secs(1);
/// How often an interrupted request in its grace checks whether its
/// process is now being killed (the kernel interrupts a request once).
const KILL_POLL: Duration = Duration::from_millis(50);

pub struct Interrupts {
    inner: Mutex<Inner>,
    grace: Duration,
}

impl Default for Interrupts {
    fn default() -> Self {
        Interrupts {
            inner: Mutex::default(),
            grace: HANDLED_SIGNAL_GRACE,
        }
    }
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
    /// The thread that made the request.
    pid: u32,
    started: tokio::time::Instant,
    signal: Arc<Notify>,
    owner: Arc<Interrupts>,
}

impl Interrupts {
    /// Register request `unique`, made by thread `pid`, before its work starts.
    pub fn begin(self: &Arc<Self>, unique: u64, pid: u32) -> Ticket {
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
            pid,
            started: tokio::time::Instant::now(),
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
    /// Completes when this request should end with EINTR: the kernel has
    /// interrupted it, and its process is being killed or the request has
    /// waited the grace for handled signals.
    pub async fn interrupted(&self) {
        self.signal.notified().await;
        let until = self.started + self.owner.grace;
        while tokio::time::Instant::now() < until && !being_killed(self.pid) {
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + KILL_POLL)).await;
        }
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

    /// A registry that ends interrupted requests at once, as for a process
    /// being killed: these tests are about which request is interrupted.
    fn immediate() -> Arc<Interrupts> {
        Arc::new(Interrupts {
            inner: Mutex::default(),
            grace: Duration::ZERO,
        })
    }

    /// Not looked at: without a grace no process is asked about.
    const PID: u32 = 0;

    async fn fires(ticket: &Ticket) -> bool {
        tokio::time::timeout(Duration::from_millis(50), ticket.interrupted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_interrupt_wakes_its_request_only() {
        let interrupts = immediate();
        let a = interrupts.begin(10, PID);
        let b = interrupts.begin(11, PID);
        interrupts.interrupt(11);
        assert!(fires(&b).await);
        assert!(!fires(&a).await);
    }

    #[tokio::test]
    async fn an_interrupt_before_its_request_is_kept_briefly() {
        let interrupts = immediate();
        interrupts.interrupt(7);
        let t = interrupts.begin(7, PID);
        assert!(fires(&t).await, "an early interrupt applies on arrival");
        drop(t);
        // Used once: a later request with the same id is not interrupted.
        let again = interrupts.begin(7, PID);
        assert!(!fires(&again).await);
    }

    #[tokio::test]
    async fn interrupts_of_answered_requests_are_forgotten() {
        let interrupts = immediate();
        let now = Instant::now();
        interrupts.interrupt_at(1, now);
        interrupts.interrupt_at(2, now + EARLY_INTERRUPT_TTL);
        assert_eq!(
            interrupts.inner.lock().unwrap().early.len(),
            1,
            "the stale one is dropped"
        );
        let t = interrupts.begin(1, PID);
        assert!(!fires(&t).await);
    }

    #[test]
    fn a_finished_request_unregisters() {
        let interrupts = immediate();
        let t = interrupts.begin(3, PID);
        assert_eq!(interrupts.registered(), 1);
        drop(t);
        assert_eq!(interrupts.registered(), 0);
        // An interrupt for it now is kept only as an early one.
        interrupts.interrupt(3);
        assert_eq!(interrupts.registered(), 0);
        assert_eq!(interrupts.inner.lock().unwrap().early.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handled_signal_ends_only_a_request_that_waited_the_grace() {
        let interrupts = Arc::new(Interrupts::default());
        // This test's own thread: alive, and not being killed.
        let me = std::process::id();
        let t = interrupts.begin(5, me);
        tokio::time::sleep(Duration::from_millis(300)).await;
        interrupts.interrupt(5);
        let waited = tokio::time::Instant::now();
        t.interrupted().await;
        let ended = t.started.elapsed();
        assert!(
            ended >= HANDLED_SIGNAL_GRACE && ended < HANDLED_SIGNAL_GRACE + KILL_POLL,
            "{ended:?}"
        );
        assert!(waited.elapsed() >= Duration::from_millis(700));

        // Past the grace already: an interrupt ends the request at once.
        let late = interrupts.begin(6, me);
        tokio::time::sleep(HANDLED_SIGNAL_GRACE * 2).await;
        interrupts.interrupt(6);
        assert!(fires(&late).await);
    }
}
