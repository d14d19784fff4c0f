//! The cluster manager's own load on SkyPilot's API server, and the poll interval that
//! keeps it within `cluster_manager.load_budget`.
//!
//! The server's CPU time is not visible over HTTP; the manager measures each `/status`
//! as the request's wall time (from sending it to having SkyPilot's answer) and counts
//! [`CPU_PER_WALL`] times that as the server's cost. SkyPilot works on one request in
//! two processes at once: a request executor runs it, while the server process that
//! received it answers the long poll for the result; and a poll also asks `/api/health`.
//! Measured from `/proc` against SkyPilot 0.14.1 (docs/performance.md), a poll's CPU was
//! 0.65–1.2 times the `/status` wall time with 1,000 and 10,000 clusters, and up to 2.3
//! times with 160 (where a background burst of the server can fall into a short span).
//! The interval after a poll is
//!
//! ```text
//! effective = max(poll_interval_secs, CPU_PER_WALL × median(last SAMPLES /status times) / load_budget)
//! ```
//!
//! The median of the last few reads follows a fleet that grew within a few polls, and
//! one slow answer (a busy moment of the server) does not stretch the interval alone.

use std::collections::VecDeque;

use crate::time::Timestamp;

/// How many recent `/status` times the interval is computed from.
pub(crate) const SAMPLES: usize = 5;

/// The server's CPU seconds counted per second of a `/status` read's wall time: see the
/// module's documentation.
pub(crate) const CPU_PER_WALL: f64 = 2.0;

/// What the rule decided after the last measured `/status`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PollLoad {
    /// When the last `/status` counted was answered.
    pub measured_at: Timestamp,
    /// Median wall time of the last [`SAMPLES`] `/status` reads, in seconds.
    pub status_secs: f64,
    /// The interval between polls the cluster manager uses now, in seconds.
    pub interval_secs: f64,
    /// The share of the server's CPU the reads are counted to take at that interval:
    /// `CPU_PER_WALL × status_secs / interval_secs`.
    pub share: f64,
    /// `cluster_manager.load_budget` when it was decided.
    pub budget: f64,
}

/// The interval rule, fed with the wall time of each `/status` read.
#[derive(Debug, Clone)]
pub(crate) struct LoadBudget {
    budget: f64,
    floor_secs: f64,
    samples: VecDeque<f64>,
    last: Option<PollLoad>,
}

impl LoadBudget {
    /// `budget` in (0, 1] (validated with the config); `poll_interval_secs` is the floor.
    pub(crate) fn new(budget: f64, poll_interval_secs: u64) -> LoadBudget {
        LoadBudget {
            budget,
            floor_secs: std::time::Duration::from_secs(poll_interval_secs).as_secs_f64(),
            samples: VecDeque::with_capacity(SAMPLES),
            last: None,
        }
    }

    /// Counts one `/status` read that was sent at `sent` and answered at `answered`.
    pub(crate) fn record(&mut self, sent: Timestamp, answered: Timestamp) -> PollLoad {
        let secs = answered.secs_since(sent).max(0.0);
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(secs);
        let status_secs = median(&self.samples);
        let cost = CPU_PER_WALL * status_secs;
        let interval_secs = self.floor_secs.max(cost / self.budget);
        let load = PollLoad {
            measured_at: answered,
            status_secs,
            interval_secs,
            share: cost / interval_secs,
            budget: self.budget,
        };
        self.last = Some(load);
        load
    }

    /// The last decision (`None` before the first measured read).
    pub(crate) fn last(&self) -> Option<PollLoad> {
        self.last
    }

    /// Seconds to wait between two polls: `poll_interval_secs` until a read was measured.
    pub(crate) fn interval_secs(&self) -> f64 {
        self.last.map_or(self.floor_secs, |l| l.interval_secs)
    }
}

/// The median of a non-empty list (the mean of the middle two for an even length); 0 for
/// an empty one.
fn median(values: &VecDeque<f64>) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Clock, Timestamp};
    use std::sync::Mutex;

    /// A clock the test moves.
    struct TestClock(Mutex<f64>);

    impl TestClock {
        fn advance(&self, secs: f64) {
            *self.0.lock().unwrap() += secs;
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Timestamp {
            Timestamp::from_secs_f64(*self.0.lock().unwrap())
        }
    }

    /// One poll: a `/status` that takes `secs` on the clock, then the wait the rule asks.
    fn poll(rule: &mut LoadBudget, clock: &TestClock, secs: f64) -> PollLoad {
        let sent = clock.now();
        clock.advance(secs);
        let load = rule.record(sent, clock.now());
        clock.advance(rule.interval_secs());
        load
    }

    #[test]
    fn a_fast_server_is_polled_every_poll_interval() {
        let clock = TestClock(Mutex::new(1000.0));
        let mut rule = LoadBudget::new(0.02, 30);
        assert_eq!(rule.interval_secs(), 30.0);
        assert_eq!(rule.last(), None);
        let load = poll(&mut rule, &clock, 0.1);
        assert_eq!(load.interval_secs, 30.0);
        assert!((load.share - CPU_PER_WALL * 0.1 / 30.0).abs() < 1e-12);
        assert_eq!(load.measured_at, Timestamp::from_secs_f64(1000.1));
        assert_eq!(load.budget, 0.02);
    }

    #[test]
    fn a_slow_status_stretches_the_interval_to_the_budget() {
        let clock = TestClock(Mutex::new(0.0));
        let mut rule = LoadBudget::new(0.02, 30);
        // 2.5 s per /status, counted as 5 s of the server's CPU: 2% means one read
        // every 250 s.
        let load = poll(&mut rule, &clock, 2.5);
        assert!((load.interval_secs - 250.0).abs() < 1e-9, "{load:?}");
        assert!((load.share - 0.02).abs() < 1e-12, "{load:?}");
        assert_eq!(rule.interval_secs(), load.interval_secs);
        // The time between two reads is the interval plus the read: under budget.
        let before = clock.now();
        poll(&mut rule, &clock, 2.5);
        let period = clock.now().secs_since(before);
        assert!(CPU_PER_WALL * 2.5 / period <= 0.02, "{period}");
    }

    #[test]
    fn never_below_poll_interval_whatever_the_budget() {
        let clock = TestClock(Mutex::new(0.0));
        let mut rule = LoadBudget::new(1.0, 60);
        for _ in 0..SAMPLES {
            assert_eq!(poll(&mut rule, &clock, 5.0).interval_secs, 60.0);
        }
        let mut rule = LoadBudget::new(0.5, 60);
        assert_eq!(poll(&mut rule, &clock, 0.0).interval_secs, 60.0);
    }

    #[test]
    fn one_slow_answer_does_not_stretch_alone_a_lasting_one_does() {
        let clock = TestClock(Mutex::new(0.0));
        let mut rule = LoadBudget::new(0.02, 30);
        for _ in 0..4 {
            poll(&mut rule, &clock, 0.2);
        }
        // One hiccup of 10 s: the median of the last five is still 0.2 s.
        assert_eq!(poll(&mut rule, &clock, 10.0).interval_secs, 30.0);
        // The fleet grew: each read now takes 1.5 s. Within three polls the median
        // follows, and the interval is 2 × 1.5 / 0.02 = 150 s.
        let intervals: Vec<f64> = (0..3)
            .map(|_| poll(&mut rule, &clock, 1.5).interval_secs)
            .collect();
        assert_eq!(intervals[0], 30.0, "{intervals:?}");
        assert!((intervals[2] - 150.0).abs() < 1e-9, "{intervals:?}");
        // The fleet shrank again: back to the floor once most reads are fast.
        for _ in 0..3 {
            poll(&mut rule, &clock, 0.1);
        }
        assert_eq!(rule.interval_secs(), 30.0);
    }

    #[test]
    fn a_clock_that_goes_back_counts_as_no_time() {
        let mut rule = LoadBudget::new(0.02, 30);
        let load = rule.record(Timestamp::from_secs(100), Timestamp::from_secs(90));
        assert_eq!(load.status_secs, 0.0);
        assert_eq!(load.interval_secs, 30.0);
    }

    #[test]
    fn median_of_even_and_odd_lists() {
        let v = |xs: &[f64]| xs.iter().copied().collect::<VecDeque<f64>>();
        assert_eq!(median(&v(&[])), 0.0);
        assert_eq!(median(&v(&[3.0, 1.0, 2.0])), 2.0);
        assert_eq!(median(&v(&[4.0, 1.0, 3.0, 2.0])), 2.5);
    }
}
