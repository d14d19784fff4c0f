//! The cluster manager's own load on SkyPilot's API server, and the poll interval that
//! keeps it within `cluster_manager.load_budget`.
//!
//! With the API server on this host (`cluster_manager.api_server_cgroup` or
//! `api_server_pid_file`), each `/status` read is counted as the CPU the server used
//! from sending it to having its answer, read from its cgroup or its process tree
//! (src/server_cpu.rs): what the read cost, and whatever else the server did meanwhile,
//! so a busy server is counted as busier. For a remote server the CPU is not visible
//! over HTTP, and a read is counted as [`CPU_PER_WALL`] times its wall time: SkyPilot
//! works on one request in two processes at once (a request executor runs it while the
//! process that received it answers the long poll), and measured from `/proc` against
//! SkyPilot 0.14.1 (docs/performance.md) a poll's CPU was 0.65–1.2 times the `/status`
//! wall time with 1,000 and 10,000 clusters, up to 2.3 times with 160. The interval
//! after a poll is
//!
//! ```text
//! effective = max(poll_interval_secs, median(last SAMPLES counted costs) / (AIM × load_budget))
//! ```
//!
//! and stays `poll_interval_secs` until [`MIN_SAMPLES`] reads were counted: the first
//! read after a start is cold (imports, caches) and its wall time is mostly queueing.
//! The median of the last [`SAMPLES`] reads leaves out what a few reads happened to
//! share with the server's own bursts of background work (counted from its cgroup or
//! process tree, a read that overlaps one costs seconds), and follows a fleet that grew
//! within five polls. The budget is a mean share, though, and a read's own cost is
//! skewed (most reads cost about the same, a few up to three times as much): measured
//! against the real server, a poll's mean cost ran up to 20% above its median (0.087 s
//! of CPU against 0.075 s). So the rule aims at [`AIM`] of the budget, and the mean
//! share stays within it.

use std::collections::VecDeque;

pub use crate::server_cpu::CpuSource;
use crate::time::Timestamp;

/// How many recent `/status` costs the interval is computed from.
pub(crate) const SAMPLES: usize = 9;

/// The share of `load_budget` the interval aims at: see the module's documentation.
pub(crate) const AIM: f64 = 0.8;

/// Counted reads before the interval may stretch.
pub(crate) const MIN_SAMPLES: usize = 3;

/// The server's CPU seconds counted per second of a `/status` read's wall time when its
/// CPU is not visible: see the module's documentation.
pub(crate) const CPU_PER_WALL: f64 = 2.0;

/// What the rule decided after the last measured `/status`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PollLoad {
    /// When the last `/status` counted was answered.
    pub measured_at: Timestamp,
    /// Median wall time of the last [`SAMPLES`] `/status` reads, in seconds.
    pub status_secs: f64,
    /// The CPU seconds a read is counted to cost: the median of the last [`SAMPLES`]
    /// (measured, or twice the wall time).
    pub cpu_secs: f64,
    /// How the last read's cost was counted.
    pub cpu_source: CpuSource,
    /// The interval between polls the cluster manager uses now, in seconds.
    pub interval_secs: f64,
    /// The share of the server's CPU the reads are counted to take at that interval:
    /// `cpu_secs / interval_secs`.
    pub share: f64,
    /// `cluster_manager.load_budget` when it was decided.
    pub budget: f64,
}

/// The interval rule, fed with the wall time and (when visible) the server's CPU of
/// each `/status` read.
#[derive(Debug, Clone)]
pub(crate) struct LoadBudget {
    budget: f64,
    floor_secs: f64,
    walls: VecDeque<f64>,
    costs: VecDeque<f64>,
    last: Option<PollLoad>,
}

fn push(v: &mut VecDeque<f64>, x: f64) {
    if v.len() == SAMPLES {
        v.pop_front();
    }
    v.push_back(x);
}

impl LoadBudget {
    /// `budget` in (0, 1] (validated with the config); `poll_interval_secs` is the floor.
    pub(crate) fn new(budget: f64, poll_interval_secs: u64) -> LoadBudget {
        LoadBudget {
            budget,
            floor_secs: std::time::Duration::from_secs(poll_interval_secs).as_secs_f64(),
            walls: VecDeque::with_capacity(SAMPLES),
            costs: VecDeque::with_capacity(SAMPLES),
            last: None,
        }
    }

    /// Counts one `/status` read that was sent at `sent` and answered at `answered`;
    /// `cpu_secs` is the CPU the server used meanwhile when it could be read.
    pub(crate) fn record(
        &mut self,
        sent: Timestamp,
        answered: Timestamp,
        cpu: Option<(f64, CpuSource)>,
    ) -> PollLoad {
        let wall = answered.secs_since(sent).max(0.0);
        let (cost, cpu_source) = match cpu {
            Some((c, source)) if c.is_finite() && c >= 0.0 => (c, source),
            _ => (CPU_PER_WALL * wall, CpuSource::WallTime),
        };
        push(&mut self.walls, wall);
        push(&mut self.costs, cost);
        let cpu_secs = median(&self.costs);
        let interval_secs = if self.costs.len() < MIN_SAMPLES {
            self.floor_secs
        } else {
            self.floor_secs.max(cpu_secs / (AIM * self.budget))
        };
        let load = PollLoad {
            measured_at: answered,
            status_secs: median(&self.walls),
            cpu_secs,
            cpu_source,
            interval_secs,
            share: cpu_secs / interval_secs,
            budget: self.budget,
        };
        self.last = Some(load);
        load
    }

    /// Changes the share this rule keeps to (a feed that shares the budget with
    /// `/status` gets what `/status` leaves); the next read is decided against it.
    pub(crate) fn set_budget(&mut self, budget: f64) {
        if budget.is_finite() && budget > 0.0 {
            self.budget = budget;
        }
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

    /// One poll: a `/status` that takes `secs` on the clock (and `cpu` of the server's
    /// CPU when visible), then the wait the rule asks.
    fn poll_cpu(rule: &mut LoadBudget, clock: &TestClock, secs: f64, cpu: Option<f64>) -> PollLoad {
        let sent = clock.now();
        clock.advance(secs);
        let load = rule.record(sent, clock.now(), cpu.map(|c| (c, CpuSource::Cgroup)));
        clock.advance(rule.interval_secs());
        load
    }

    fn poll(rule: &mut LoadBudget, clock: &TestClock, secs: f64) -> PollLoad {
        poll_cpu(rule, clock, secs, None)
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
        assert_eq!(load.cpu_source, CpuSource::WallTime);
    }

    #[test]
    fn a_lasting_slow_status_stretches_the_interval_to_the_budget() {
        let clock = TestClock(Mutex::new(0.0));
        let mut rule = LoadBudget::new(0.02, 30);
        // 2.5 s per /status, counted as 5 s of the server's CPU: aiming at 80% of 2%
        // means one read every 312.5 s, once MIN_SAMPLES reads agree.
        for _ in 1..MIN_SAMPLES {
            assert_eq!(poll(&mut rule, &clock, 2.5).interval_secs, 30.0);
        }
        let load = poll(&mut rule, &clock, 2.5);
        assert!((load.interval_secs - 312.5).abs() < 1e-9, "{load:?}");
        assert!((load.share - 0.016).abs() < 1e-12, "{load:?}");
        assert_eq!(rule.interval_secs(), load.interval_secs);
        // The time between two reads is the interval plus the read: under budget.
        let before = clock.now();
        poll(&mut rule, &clock, 2.5);
        let period = clock.now().secs_since(before);
        assert!(CPU_PER_WALL * 2.5 / period <= 0.02, "{period}");
    }

    #[test]
    fn one_cold_start_read_never_stretches() {
        // After a start: one cold read of 1.27 s wall, then the quick reads of an idle
        // server with two clusters. The interval stays 10 s throughout.
        let clock = TestClock(Mutex::new(0.0));
        let mut rule = LoadBudget::new(0.02, 10);
        assert_eq!(poll(&mut rule, &clock, 1.27).interval_secs, 10.0);
        for _ in 0..10 {
            assert_eq!(poll(&mut rule, &clock, 0.03).interval_secs, 10.0);
        }
    }

    #[test]
    fn measured_cpu_is_counted_instead_of_the_wall_time() {
        let clock = TestClock(Mutex::new(0.0));
        let mut rule = LoadBudget::new(0.02, 10);
        // Slow answers (queueing) that cost the server little CPU: no stretch.
        for _ in 0..SAMPLES {
            let load = poll_cpu(&mut rule, &clock, 1.5, Some(0.05));
            assert_eq!(load.interval_secs, 10.0, "{load:?}");
            assert_eq!(load.cpu_source, CpuSource::Cgroup);
            assert_eq!(load.cpu_secs, 0.05);
            assert_eq!(load.status_secs, 1.5);
        }
        // Reads that cost 3 s of CPU each in 1 s of wall time: once they are most of
        // the last nine, 3 / (0.8 × 0.02) = 187.5 s.
        let intervals: Vec<f64> = (0..SAMPLES / 2 + 1)
            .map(|_| poll_cpu(&mut rule, &clock, 1.0, Some(3.0)).interval_secs)
            .collect();
        assert_eq!(intervals[SAMPLES / 2 - 1], 10.0, "{intervals:?}");
        assert!(
            (intervals[SAMPLES / 2] - 187.5).abs() < 1e-9,
            "{intervals:?}"
        );
        // A nonsense reading falls back to the wall time, and says so.
        let load = poll_cpu(&mut rule, &clock, 1.0, Some(f64::NAN));
        assert_eq!(load.cpu_source, CpuSource::WallTime);
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
        // One hiccup of 10 s: the median of the last nine is still 0.2 s.
        assert_eq!(poll(&mut rule, &clock, 10.0).interval_secs, 30.0);
        // The fleet grew: each read now takes 1.5 s, counted as 3 s of CPU. Within four
        // polls the median follows (the mean of the middle two on the way):
        // 3 / (0.8 × 0.02) = 187.5 s.
        let intervals: Vec<f64> = (0..4)
            .map(|_| poll(&mut rule, &clock, 1.5).interval_secs)
            .collect();
        assert_eq!(intervals[..2], [30.0; 2], "{intervals:?}");
        assert!((intervals[3] - 187.5).abs() < 1e-9, "{intervals:?}");
        // The fleet shrank again: back to the floor once most of the last nine are fast.
        let back = (1..=SAMPLES)
            .find(|_| poll(&mut rule, &clock, 0.1).interval_secs == 30.0)
            .unwrap();
        assert_eq!(back, SAMPLES / 2 + 1);
    }

    #[test]
    fn a_clock_that_goes_back_counts_as_no_time() {
        let mut rule = LoadBudget::new(0.02, 30);
        let load = rule.record(Timestamp::from_secs(100), Timestamp::from_secs(90), None);
        assert_eq!(load.status_secs, 0.0);
        assert_eq!(load.interval_secs, 30.0);
    }

    #[test]
    fn a_skewed_cost_is_counted_above_its_median() {
        // Reads as measured against the real server: mostly 0.06–0.08 s of CPU, some
        // 0.10–0.11 s, one 0.20 s (a mean up to 15% above the median). The mean share
        // over the last nine stays within the budget.
        let clock = TestClock(Mutex::new(0.0));
        let mut rule = LoadBudget::new(0.02, 1);
        let costs = [
            0.06, 0.20, 0.06, 0.10, 0.08, 0.08, 0.11, 0.07, 0.07, 0.07, 0.08, 0.10, 0.07, 0.07,
            0.09, 0.12, 0.06, 0.07,
        ];
        for (i, c) in costs.iter().enumerate() {
            let load = poll_cpu(&mut rule, &clock, 0.2, Some(*c));
            if i + 1 >= SAMPLES {
                let last: Vec<f64> = costs[i + 1 - SAMPLES..=i].to_vec();
                let mean = last.iter().sum::<f64>() / SAMPLES as f64;
                assert!(mean / load.interval_secs <= 0.02, "{last:?}: {load:?}");
            }
        }
    }

    #[test]
    fn median_of_even_and_odd_lists() {
        let v = |xs: &[f64]| xs.iter().copied().collect::<VecDeque<f64>>();
        assert_eq!(median(&v(&[])), 0.0);
        assert_eq!(median(&v(&[3.0, 1.0, 2.0])), 2.0);
        assert_eq!(median(&v(&[4.0, 1.0, 3.0, 2.0])), 2.5);
    }
}
