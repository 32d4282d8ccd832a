//! Read-ahead decisions for one open handle (pure logic, no I/O).
//!
//! A handle starts with no read-ahead, so a random reader fetches only the
//! blocks it reads. Reads that continue a stream (allowing the kernel's
//! slight reordering) switch read-ahead on; the window is as large as the
//! stream has read so far (new bytes: not the distance covered, not pages
//! read again), between 256 KiB and 64 MiB, so a reader that stops early
//! wastes at most what it read. A far seek ends the stream: its read-ahead is cancelled and the
//! next stream starts small again. Sparse reads that skip forward (the
//! kernel asking for the odd page it lost from its cache) never grow a
//! window: each costs at most the initial one.

use std::ops::Range;

const MIB: u64 = 1024 * 1024;
/// First read-ahead window. Small: two nearby reads are not yet proof of a
/// stream. A kernel read is already 128 KiB to 1 MiB, and the window grows
/// with every byte read.
pub const INITIAL_WINDOW: u64 = 256 * 1024;
/// Enough to keep several 8 MiB parts in flight and hide tens of
/// milliseconds of latency at over 1 GiB/s.
pub const MAX_WINDOW: u64 = 64 * MIB;
/// How close to the previous read the next must be to start a stream.
const ADJACENT: u64 = 128 * 1024;
/// A read this far before the stream's start still belongs to it.
const BACKWARD_TOLERANCE: u64 = MIB;
/// A read this far past what was requested still belongs to the stream:
/// the kernel has several reads in flight, and a later one may arrive
/// first; a short skip is cheaper to read through than to restart.
const FORWARD_TOLERANCE: u64 = 16 * MIB;

#[derive(Debug, Default)]
pub struct ReadAhead {
    /// Where the current stream expects its next read; `None` before any.
    next: Option<u64>,
    /// Where the current stream began.
    stream_start: u64,
    /// End of what has been requested ahead of the reader.
    ahead_until: u64,
    /// Current window, 0 while read-ahead is off.
    window: u64,
    /// Bytes the stream has read.
    read: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Cancel the read-ahead of the previous stream.
    pub cancel: bool,
    /// Byte range to fetch ahead of the reader.
    pub ahead: Option<Range<u64>>,
    /// The read continues a sequential stream: its blocks are unlikely to
    /// be read again through this handle.
    pub streaming: bool,
}

impl ReadAhead {
    pub fn on_read(&mut self, offset: u64, len: u64, size: u64) -> Plan {
        let end = (offset + len).min(size);
        // Past everything requested: the read-ahead did not foresee it.
        let skipped =
            self.window > 0 && offset > self.next.unwrap_or(0).max(self.ahead_until) + ADJACENT;
        let continues = match self.next {
            // Before read-ahead starts, only a read right after the last one
            // counts: random readers must not trigger read-ahead by chance.
            // The kernel sends its first read-ahead requests at once, and
            // one may overtake another of its size: a gap no larger than
            // this read counts too (single pages far apart do not).
            Some(next) if self.window == 0 => {
                offset.abs_diff(next) <= ADJACENT
                    || (offset > next && offset - next <= len + ADJACENT)
            }
            // Within the stream's requested range (the kernel sends several
            // reads at once and they arrive out of order), or just behind
            // it, or a short skip ahead.
            Some(next) => {
                offset + BACKWARD_TOLERANCE >= self.stream_start
                    && offset <= next.max(self.ahead_until) + FORWARD_TOLERANCE
            }
            // A first read at the start is most likely `cat`, `cp`, `sha256sum`.
            None => offset == 0,
        };
        if !continues {
            let cancel = self.window > 0;
            *self = ReadAhead {
                next: Some(end),
                stream_start: offset,
                ahead_until: end,
                window: 0,
                read: end.saturating_sub(offset),
            };
            return Plan {
                cancel,
                ahead: None,
                streaming: false,
            };
        }
        let before = self.next.unwrap_or(offset);
        let next = before.max(end);
        self.next = Some(next);
        self.ahead_until = self.ahead_until.max(next);
        // Only bytes past what the stream had read: re-reading a page (an
        // O_DIRECT reader, or pages the kernel dropped) must not grow it.
        self.read += end.saturating_sub(offset.max(before));
        self.window = self.read.clamp(INITIAL_WINDOW, MAX_WINDOW);
        let ahead = self.ahead_until - next;
        // A skip ahead asks for nothing more: if it is a later read of the
        // kernel's arriving first, the reads before it come next and ask;
        // if the reader skips from page to page, read-ahead would be waste.
        if skipped || ahead >= self.window / 2 || self.ahead_until >= size {
            return Plan {
                streaming: true,
                ..Plan::default()
            };
        }
        let range = self.ahead_until..(next + self.window).min(size);
        self.ahead_until = range.end;
        Plan {
            cancel: false,
            ahead: Some(range),
            streaming: true,
        }
    }

    /// Read-ahead was granted only up to `until` (the memory budget is
    /// short): ask again later rather than growing.
    pub fn granted_until(&mut self, until: u64) {
        self.ahead_until = self.ahead_until.min(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn sequential_reads_grow_the_window_to_the_maximum() {
        let mut p = ReadAhead::default();
        let first = p.on_read(0, 128 * 1024, GIB);
        assert_eq!(first.ahead, Some(128 * 1024..128 * 1024 + INITIAL_WINDOW));
        let mut requested = first.ahead.unwrap().end;
        let mut off = 128 * 1024;
        while off < 256 * MIB {
            let plan = p.on_read(off, MIB, GIB);
            assert!(!plan.cancel);
            assert!(plan.streaming);
            if let Some(r) = plan.ahead {
                assert_eq!(
                    r.start,
                    requested.max(off + MIB),
                    "read-ahead starts where the last request or this read ends"
                );
                requested = r.end;
            }
            assert!(
                requested >= off + MIB,
                "the reader never outruns the requests"
            );
            off += MIB;
        }
        assert_eq!(p.window, MAX_WINDOW);
        assert!(requested - off <= MAX_WINDOW);
    }

    #[test]
    fn kernel_reordering_is_still_sequential() {
        let mut p = ReadAhead::default();
        p.on_read(0, MIB, GIB);
        p.on_read(MIB, MIB, GIB);
        let back = p.on_read(MIB + 512 * 1024, 256 * 1024, GIB);
        assert!(!back.cancel);
        // Several 1 MiB reads in flight: one arrives 3 MiB late.
        p.on_read(4 * MIB, MIB, GIB);
        p.on_read(5 * MIB, MIB, GIB);
        assert!(!p.on_read(2 * MIB, MIB, GIB).cancel);
        let skip = p.on_read(10 * MIB, MIB, GIB);
        assert!(!skip.cancel);
        assert!(p.window > 0);
    }

    #[test]
    fn re_reading_a_page_never_grows_the_window() {
        let mut p = ReadAhead::default();
        p.on_read(0, 128 * 1024, GIB);
        p.on_read(128 * 1024, 128 * 1024, GIB);
        let window = p.window;
        let requested = p.ahead_until;
        for _ in 0..20_000 {
            p.on_read(200 * 1024, 4096, GIB);
        }
        assert_eq!(p.window, window);
        assert_eq!(p.ahead_until, requested, "nothing more was asked for");
    }

    #[test]
    fn sparse_forward_reads_never_grow_a_window() {
        // What `sha256sum` asks for after the kernel lost a few pages of a
        // file it had read: single pages, megabytes apart, in order.
        // They may look like a stream, but only a read right after the
        // previous one asks for more, and no more than the stream has read.
        let mut p = ReadAhead::default();
        let mut off = 13 * MIB;
        for i in 0..200u64 {
            let step = 4096 + (i % 7) * 900 * 1024;
            off += step;
            if let Some(r) = p.on_read(off, 4096, GIB).ahead {
                assert!(
                    step <= ADJACENT,
                    "read {i} skipped {step} and asked for {r:?}"
                );
                let read_so_far = 4096 * (i + 1);
                assert!(r.end - r.start <= INITIAL_WINDOW.max(read_so_far));
            }
        }
    }

    #[test]
    fn a_stream_starts_when_the_kernels_second_read_arrives_first() {
        // Seen with a buffered reader starting at 12,345: the kernel's
        // reads at 2 MiB and 1 MiB overtake each other.
        let mut p = ReadAhead::default();
        assert!(!p.on_read(12_288, MIB, GIB).streaming);
        for (offset, len) in [(2 * MIB, MIB), (MIB + 12_288, MIB - 12_288), (3 * MIB, MIB)] {
            let plan = p.on_read(offset, len, GIB);
            assert!(plan.streaming && !plan.cancel, "read at {offset}");
        }
    }

    #[test]
    fn a_far_seek_cancels_and_restarts_small() {
        let mut p = ReadAhead::default();
        for i in 0..8 {
            p.on_read(i * MIB, MIB, GIB);
        }
        let seek = p.on_read(500 * MIB, 4096, GIB);
        assert_eq!(
            seek,
            Plan {
                cancel: true,
                ahead: None,
                streaming: false,
            }
        );
        let mut back = ReadAhead::default();
        for i in 100..108 {
            back.on_read(i * MIB, MIB, GIB);
        }
        assert!(
            back.on_read(MIB, 4096, GIB).cancel,
            "a seek far back ends the stream too"
        );
        let next = p.on_read(500 * MIB + 4096, 4096, GIB).ahead.unwrap();
        assert!(next.end - next.start <= INITIAL_WINDOW);
    }

    #[test]
    fn random_small_reads_fetch_no_read_ahead() {
        let mut p = ReadAhead::default();
        for off in [77 * MIB, 3 * MIB, 901 * MIB, 45 * MIB, 600 * MIB] {
            let plan = p.on_read(off, 4096, GIB);
            assert_eq!(plan.ahead, None);
            assert!(!plan.streaming, "blocks of random reads stay cached");
        }
    }

    #[test]
    fn budget_short_means_asking_again_later() {
        let mut p = ReadAhead::default();
        let r = p.on_read(0, MIB, GIB).ahead.unwrap();
        p.granted_until(r.start + 64 * 1024);
        let again = p.on_read(MIB, MIB, GIB).ahead.unwrap();
        assert_eq!(again.start, 2 * MIB);
    }

    #[test]
    fn never_reads_past_the_end() {
        let mut p = ReadAhead::default();
        let size = 3 * MIB + 5;
        let mut off = 0;
        while off < size {
            if let Some(r) = p.on_read(off, MIB, size).ahead {
                assert!(r.end <= size && r.start < r.end);
            }
            off += MIB;
        }
    }

    proptest! {
        #[test]
        fn read_ahead_is_bounded_and_contiguous(reads in proptest::collection::vec((0u64..GIB, 1u64..2 * MIB), 1..200)) {
            let mut p = ReadAhead::default();
            for (off, len) in reads {
                let plan = p.on_read(off, len, GIB);
                if let Some(r) = plan.ahead {
                    prop_assert!(r.start < r.end && r.end <= GIB);
                    prop_assert!(r.end <= off + len + MAX_WINDOW);
                    // Never further ahead than the stream has read.
                    prop_assert!(r.end - p.next.unwrap() <= p.read.max(INITIAL_WINDOW));
                }
            }
        }
    }
}
