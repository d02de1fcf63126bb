//! Gives memory back to the operating system once a burst is over.
//!
//! The system allocator (glibc's malloc) keeps freed memory in its heap for reuse and returns
//! it only from the heap's top: the many small frames a burst queues leave the process
//! tens of MiB larger once every queue is written or dropped, whenever anything allocated
//! during the burst still lives above them. When what the server holds (queued bytes, plus an
//! estimate per connection) falls to a quarter of a peak of at least 16 MiB, this asks glibc
//! to release every free page in its heap (`malloc_trim`), at most once per second. It owns
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

/// Watches what the server holds and trims the heap when a burst is over.
#[derive(Debug, Default)]
pub(crate) struct Trimmer {
    /// The most held since the last trim.
    peak: usize,
    last_trim: Option<Duration>,
}

impl Trimmer {
    /// Called once per loop iteration with the bytes the server holds now; true if it trimmed.
    pub(crate) fn observe(&mut self, held: usize, now: Duration) -> bool {
        self.peak = self.peak.max(held);
        let burst_over = self.peak >= TRIM_PEAK && held <= self.peak / 4;
        let rested = self
            .last_trim
            .map_or(true, |last| now.saturating_sub(last) >= TRIM_INTERVAL);
        if !(burst_over && rested) {
            return false;
        }
        self.peak = held;
        self.last_trim = Some(now);
        release_free_memory();
        true
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: `malloc_trim` takes no pointer and only rearranges glibc's own free lists; it is
    // safe to call at any time from any thread (it takes the arenas' locks). Its result says
    // only whether memory was released.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

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
        assert!(!trimmer.observe(MIB, secs(0)));
        assert!(!trimmer.observe(64 * MIB, secs(1)), "during the burst");
        assert!(!trimmer.observe(20 * MIB, secs(2)), "not over yet");
        assert!(trimmer.observe(10 * MIB, secs(3)), "a quarter of the peak");
        assert!(!trimmer.observe(MIB, secs(4)), "the peak starts over");
        assert!(!trimmer.observe(32 * MIB, secs(5)));
        assert!(trimmer.observe(MIB, secs(6)), "the next burst");
    }

    #[test]
    fn small_peaks_and_quick_repeats_are_left_alone() {
        let mut trimmer = Trimmer::default();
        assert!(!trimmer.observe(8 * MIB, secs(0)));
        assert!(
            !trimmer.observe(0, secs(1)),
            "below the peak worth trimming"
        );
        assert!(!trimmer.observe(64 * MIB, secs(2)));
        assert!(trimmer.observe(0, secs(3)));
        assert!(!trimmer.observe(64 * MIB, secs(3)));
        assert!(
            !trimmer.observe(0, secs(3)),
            "within a second of the last trim"
        );
        assert!(trimmer.observe(0, secs(4)));
    }
}
