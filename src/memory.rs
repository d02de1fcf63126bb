//! Gives memory back to the operating system once a burst is over.
//!
//! The system allocator (glibc's malloc) keeps freed memory in its heap for reuse and returns
//! it only from the heap's top: the many small frames a burst queues leave the process
//! tens of MiB larger once every queue is written or dropped, whenever anything allocated
//! during the burst still lives above them. When what the server holds (queued bytes, plus an
//! estimate per connection) falls to a quarter of a peak of at least 16 MiB, this asks glibc
//! to release every free page in its heap (`malloc_trim`); again when what was still held at
//! that trim falls to a quarter (a burst winds down over several seconds); at most once per
//! second, and less
//! often each time a trim finds nothing to release (up to once a minute). It owns
//! no memory and must never run on a hot path: one comparison per loop iteration, a trim only
//! after a burst. Other allocators and platforms are left alone.

use std::time::Duration;

/// Smallest peak worth trimming after: below it the allocator's slack is not worth a system
/// call.
const TRIM_PEAK: usize = 16 << 20;

/// What an open connection is counted as, for the peak: its record, its registry entries and
/// the allocator's slack around them.
pub(crate) const CONN_ESTIMATE: usize = 512;

/// Shortest time between two trims.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Held bytes at a trim up to which no follow-up trim is worth it.
const FOLLOW_UP_FLOOR: usize = 1 << 20;

/// Longest time between two trims, reached by doubling after trims that released nothing.
const TRIM_INTERVAL_MAX: Duration = Duration::from_secs(64);

/// Watches what the server holds and trims the heap when a burst is over.
#[derive(Debug)]
pub(crate) struct Trimmer {
    /// The most held since the last trim.
    peak: usize,
    last_trim: Option<Duration>,
    /// What was held at the last trim, while the burst may still be winding down: what is
    /// freed after the trim is given back once that falls to a quarter again.
    follow_up: Option<usize>,
    /// The time to wait after the last trim: doubled while trims release nothing (the
    /// held-bytes estimate overstates shared broadcast frames, so a burst may free little).
    interval: Duration,
}

impl Default for Trimmer {
    fn default() -> Self {
        Self {
            peak: 0,
            last_trim: None,
            follow_up: None,
            interval: TRIM_INTERVAL,
        }
    }
}

impl Trimmer {
    /// Called once per loop iteration with the bytes the server holds now; true if it trimmed.
    pub(crate) fn observe(&mut self, held: usize, now: Duration) -> bool {
        self.observe_with(held, now, release_free_memory)
    }

    /// `observe`, with `release` asking the allocator (true if it released memory).
    fn observe_with(&mut self, held: usize, now: Duration, release: impl FnOnce() -> bool) -> bool {
        self.peak = self.peak.max(held);
        let burst_over = self.peak >= TRIM_PEAK && held <= self.peak / 4;
        let winding_down = self
            .follow_up
            .is_some_and(|at| at > FOLLOW_UP_FLOOR && held <= at / 4);
        let rested = self
            .last_trim
            .map_or(true, |last| now.saturating_sub(last) >= self.interval);
        if !((burst_over || winding_down) && rested) {
            return false;
        }
        self.peak = held;
        self.follow_up = Some(held);
        self.last_trim = Some(now);
        self.interval = if release() {
            TRIM_INTERVAL
        } else {
            (self.interval * 2).min(TRIM_INTERVAL_MAX)
        };
        true
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and only rearranges glibc's own free lists; it is
    // safe to call at any time from any thread (it takes the arenas' locks). Its result says
    // only whether memory was released.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Without glibc there is nothing to ask.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn trims_once_a_burst_is_over_and_not_again_until_the_next() {
        let mut trimmer = Trimmer::default();
        assert!(!trimmer.observe_with(MIB, secs(0), || true));
        assert!(
            !trimmer.observe_with(64 * MIB, secs(1), || true),
            "during the burst"
        );
        assert!(
            !trimmer.observe_with(20 * MIB, secs(2), || true),
            "not over yet"
        );
        assert!(
            trimmer.observe_with(10 * MIB, secs(3), || true),
            "a quarter of the peak"
        );
        assert!(
            trimmer.observe_with(MIB, secs(4), || true),
            "what was still held at the trim, once a quarter of it is left"
        );
        assert!(
            !trimmer.observe_with(0, secs(5), || true),
            "too little left to be worth another"
        );
        assert!(!trimmer.observe_with(32 * MIB, secs(6), || true));
        assert!(
            trimmer.observe_with(MIB, secs(7), || true),
            "the next burst"
        );
    }

    #[test]
    fn small_peaks_and_quick_repeats_are_left_alone() {
        let mut trimmer = Trimmer::default();
        assert!(!trimmer.observe_with(8 * MIB, secs(0), || true));
        assert!(
            !trimmer.observe_with(0, secs(1), || true),
            "below the peak worth trimming"
        );
        assert!(!trimmer.observe_with(64 * MIB, secs(2), || true));
        assert!(trimmer.observe_with(0, secs(3), || true));
        assert!(!trimmer.observe_with(64 * MIB, secs(3), || true));
        assert!(
            !trimmer.observe_with(0, secs(3), || true),
            "within a second of the last trim"
        );
        assert!(trimmer.observe_with(0, secs(4), || true));
    }

    #[test]
    fn trims_that_release_nothing_come_less_often() {
        let mut trimmer = Trimmer::default();
        let burst = |trimmer: &mut Trimmer, at: u64| {
            trimmer.observe_with(64 * MIB, secs(at), || false);
            trimmer.observe_with(0, secs(at), || false)
        };
        assert!(burst(&mut trimmer, 0));
        assert!(
            !burst(&mut trimmer, 1),
            "two seconds after a trim that freed nothing"
        );
        assert!(burst(&mut trimmer, 2));
        assert!(!burst(&mut trimmer, 5), "then four");
        assert!(burst(&mut trimmer, 6));
    }
}
