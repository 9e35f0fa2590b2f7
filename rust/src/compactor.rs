//! Compaction's two engine-side jobs: the thread that removes compacted
//! revisions from the backend in bounded batches (the store's physical
//! half, see `mvcc/store/compact.rs`), and etcd's auto-compaction policy
//! (`--auto-compaction-mode`, `--auto-compaction-retention`), which decides
//! when the leader proposes a compaction.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engine::Shared;

/// How the physical half paces itself (etcd's
/// --experimental-compaction-batch-limit and
/// --experimental-compaction-sleep-interval).
#[derive(Clone, Copy, Debug)]
pub struct CompactionPacing {
    /// Most key records one batch looks at (etcd: 1,000).
    pub batch_limit: usize,
    /// Pause between two batches of one compaction (etcd 3.5: 10 ms).
    pub sleep_interval: Duration,
}

impl Default for CompactionPacing {
    fn default() -> Self {
        CompactionPacing { batch_limit: 1000, sleep_interval: Duration::from_millis(10) }
    }
}

/// How long the idle worker waits before looking at `stop` again.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// The `ketch-compact` thread: runs the store's queued physical compactions
/// batch by batch until `stop`, answering the Compact calls that asked to
/// wait for them. A stop in the middle leaves the job to the next start
/// (the store resumes from scheduledCompactRev).
pub(crate) fn run_physical(shared: &Shared, pacing: CompactionPacing, stop: &AtomicBool) {
    let store = &shared.store;
    let mut started: Option<(Instant, usize)> = None;
    while !stop.load(Ordering::Acquire) {
        let step = match store.compact_step(pacing.batch_limit) {
            Ok(step) => step,
            Err(e) => {
                // The store refuses every write from now on; the node thread
                // stops the engine at its next batch.
                crate::log_error!("compaction encountered error"; "error" => e.to_string());
                for w in store.take_compaction_waiters() {
                    shared.completions.push(w.token, Err(e.clone()));
                }
                return;
            }
        };
        if !step.idle {
            let (since, deleted) = started.get_or_insert((Instant::now(), 0));
            *deleted += step.deleted;
            if let Some(rev) = step.finished {
                let (size, in_use) = (store.db_size(), store.db_size_in_use());
                crate::log_info!(
                    "finished scheduled compaction";
                    "compact-revision" => rev,
                    "took" => since.elapsed(),
                    "deleted-revisions" => *deleted,
                    "current-db-size-bytes" => size,
                    "current-db-size" => crate::logging::humanize_bytes(size),
                    "current-db-size-in-use-bytes" => in_use,
                    "current-db-size-in-use" => crate::logging::humanize_bytes(in_use),
                );
                started = None;
            }
        }
        // Answered after the log line, so a caller that sees the answer sees the line.
        for w in step.waiters {
            shared.completions.push(w.token, Ok(w.answer));
        }
        if step.idle {
            started = None;
            store.wait_for_compaction(IDLE_WAIT);
        } else if step.finished.is_none() {
            std::thread::sleep(pacing.sleep_interval);
        }
    }
}

/// etcd's `--auto-compaction-mode` with its retention, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AutoCompaction {
    #[default]
    Off,
    /// Keep this much history by time (etcd's v3compactor.Periodic).
    Periodic(Duration),
    /// Keep this many revisions (etcd's v3compactor.Revision).
    Revision(i64),
}

/// etcd's revision compactor looks every 5 minutes.
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_mins(5);

/// etcd's periodic compactor samples every tenth of its interval.
const RETRY_DIVISOR: u32 = 10;

/// When to compact, following etcd 3.5's v3compactor exactly, driven by the
/// node thread's tick instead of goroutine timers:
///
/// - **periodic** (retention `p`): it records the current revision, waits
///   `min(p, 1h) / 10`, looks whether to compact, records again, and so on,
///   keeping the last `p / (min(p, 1h) / 10) + 1` records. Once `p` has
///   passed since the start it compacts at the oldest record (about `p`
///   ago), then again every `min(p, 1h)` after each success.
/// - **revision** (retention `n`): every 5 minutes it compacts at
///   `current - n`, unless that is `<= 0` or what it compacted last time.
///
/// Only the leader compacts (etcd pauses the compactor on followers); the
/// recording goes on everywhere, so a new leader has the window at once.
/// A compaction counts as a success when it is proposed; etcd counts one
/// refused as already compacted as a success too.
#[derive(Debug)]
pub struct AutoCompactor {
    mode: AutoCompaction,
    next_check: Instant,
    /// periodic: the recorded revisions, oldest first.
    revs: VecDeque<i64>,
    /// periodic: when the last compaction was proposed (or the start).
    last_success: Instant,
    /// periodic: the wait before the next compaction (the retention first).
    base_interval: Duration,
    /// revision: the revision compacted last.
    prev: i64,
}

impl AutoCompactor {
    /// Starts the policy at `now`, with the store at `current_rev`.
    pub fn new(mode: AutoCompaction, now: Instant, current_rev: i64) -> AutoCompactor {
        let base_interval = match mode {
            AutoCompaction::Periodic(p) => p,
            _ => Duration::ZERO,
        };
        let mut c = AutoCompactor {
            mode,
            next_check: now,
            revs: VecDeque::from([current_rev]),
            last_success: now,
            base_interval,
            prev: 0,
        };
        c.next_check = now.checked_add(c.check_interval()).unwrap_or(now);
        c
    }

    pub fn mode(&self) -> AutoCompaction {
        self.mode
    }

    fn check_interval(&self) -> Duration {
        match self.mode {
            // Never due (`tick` returns first); far enough not to matter.
            AutoCompaction::Off => Duration::from_hours(8760),
            AutoCompaction::Periodic(p) => (p.min(HOUR) / RETRY_DIVISOR).max(Duration::from_millis(1)),
            AutoCompaction::Revision(_) => REVISION_CHECK_INTERVAL,
        }
    }

    /// Called on every tick with the store's revision; returns the revision
    /// to compact at, if this member leads and it is time.
    pub fn tick(&mut self, now: Instant, current_rev: i64, is_leader: bool) -> Option<i64> {
        if self.mode == AutoCompaction::Off || now < self.next_check {
            return None;
        }
        self.next_check = now + self.check_interval();
        match self.mode {
            AutoCompaction::Off => None,
            AutoCompaction::Periodic(period) => {
                let mut due = None;
                if is_leader && now.duration_since(self.last_success) >= self.base_interval {
                    self.base_interval = period.min(HOUR);
                    self.last_success = now;
                    due = self.revs.front().copied();
                }
                let retentions = (period.as_nanos() / self.check_interval().as_nanos()) as usize + 1;
                self.revs.push_back(current_rev);
                if self.revs.len() > retentions {
                    self.revs.pop_front();
                }
                due
            }
            AutoCompaction::Revision(retention) => {
                if !is_leader {
                    return None;
                }
                let rev = current_rev - retention;
                if rev <= 0 || rev == self.prev {
                    return None;
                }
                self.prev = rev;
                Some(rev)
            }
        }
    }
}

const HOUR: Duration = Duration::from_hours(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn periodic_waits_one_retention_then_compacts_at_the_oldest_record() {
        let t0 = Instant::now();
        let mut c = AutoCompactor::new(AutoCompaction::Periodic(ms(10_000)), t0, 1);
        let mut compacted = Vec::new();
        // A tick every 100 ms for 35 s; the revision is 1 + 100 a second.
        for i in 1..=350u64 {
            let rev = 1 + 10 * i as i64;
            if let Some(at) = c.tick(t0 + ms(100 * i), rev, true) {
                compacted.push((i / 10, at));
            }
        }
        // Records every 1 s (10 s / 10), 11 kept. At 10 s the records are
        // those of 0..9 s; at 20 s, of 9..19 s; at 30 s, of 19..29 s.
        assert_eq!(compacted, vec![(10, 1), (20, 901), (30, 1901)]);
    }

    #[test]
    fn periodic_over_an_hour_compacts_hourly_with_the_window_of_its_retention() {
        let t0 = Instant::now();
        let mut c = AutoCompactor::new(AutoCompaction::Periodic(ms(3 * 3_600_000)), t0, 0);
        let mut compacted = Vec::new();
        // Records every 6 minutes (an hour / 10), 31 kept; the revision is the minute.
        for m in (6..=360u64).step_by(6) {
            if let Some(at) = c.tick(t0 + ms(m * 60_000), m as i64, true) {
                compacted.push((m, at));
            }
        }
        assert_eq!(compacted, vec![(180, 0), (240, 54), (300, 114), (360, 174)]);
    }

    #[test]
    fn only_the_leader_compacts_but_everyone_records() {
        let t0 = Instant::now();
        let mut c = AutoCompactor::new(AutoCompaction::Periodic(ms(1000)), t0, 0);
        for i in 1..=20u64 {
            assert_eq!(c.tick(t0 + ms(100 * i), i as i64 * 10, false), None);
        }
        // Leading now: due at once, at the oldest of the 11 records (1.0 s).
        assert_eq!(c.tick(t0 + ms(2100), 210, true), Some(100));
    }

    #[test]
    fn revision_mode_checks_every_five_minutes_and_skips_repeats() {
        let t0 = Instant::now();
        let mut c = AutoCompactor::new(AutoCompaction::Revision(100), t0, 0);
        let at = |m: u64| t0 + ms(60_000 * m);
        assert_eq!(c.tick(at(1), 1000, true), None, "not yet five minutes");
        assert_eq!(c.tick(at(5), 1000, true), Some(900));
        assert_eq!(c.tick(at(10), 1000, true), None, "nothing new to compact");
        assert_eq!(c.tick(at(15), 50, true), None, "retention above the revision");
        assert_eq!(c.tick(at(20), 1500, false), None, "a follower does not compact");
        assert_eq!(c.tick(at(25), 1500, true), Some(1400));
    }

    #[test]
    fn off_never_compacts() {
        let t0 = Instant::now();
        let mut c = AutoCompactor::new(AutoCompaction::Off, t0, 0);
        assert_eq!(c.tick(t0 + Duration::from_secs(1_000_000), 10_000, true), None);
    }
}
