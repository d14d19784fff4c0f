//! The simulated fleet: clusters as SkyPilot's database holds them, and the handle's
//! methods that create, change and remove them.

use serde_json::Value;

use super::{new_request_id, unix_now, uuid_like, Simulator, DEFAULT_HOURLY_PRICE};

/// Cluster status as SkyPilot's database holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimStatus {
    Init,
    Up,
    Stopped,
}

impl SimStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SimStatus::Init => "INIT",
            SimStatus::Up => "UP",
            SimStatus::Stopped => "STOPPED",
        }
    }
}

/// One cluster of the simulated fleet. Build with [`SimCluster::new`] and the setters.
#[derive(Debug, Clone, PartialEq)]
pub struct SimCluster {
    pub name: String,
    pub status: SimStatus,
    /// As SkyPilot writes it: `AWS`, `GCP`, `Azure`, `Kubernetes`, …
    pub cloud: String,
    pub region: String,
    pub instance_type: String,
    pub nodes: i64,
    /// Strings, as SkyPilot sends them: `"2.0"`.
    pub cpus: String,
    pub memory: String,
    /// e.g. `A100:1`; `None` for CPU instances.
    pub accelerators: Option<String>,
    /// Idle minutes before autostop; -1 = off.
    pub autostop: i64,
    pub to_down: bool,
    pub workspace: String,
    pub user_name: String,
    pub user_hash: String,
    /// Unix seconds.
    pub launched_at: i64,
    pub status_updated_at: i64,
    pub cluster_ever_up: bool,
    pub cluster_hash: String,
    /// Price of one node per hour, for `cost_report`.
    pub hourly_price: f64,
    /// (start, end) Unix seconds; the last one is open while the cluster runs.
    pub usage_intervals: Vec<(i64, Option<i64>)>,
    pub last_use: String,
    /// Launched by SkyPilot's jobs controller for a managed job (`is_managed`).
    pub is_managed: bool,
}

impl SimCluster {
    /// An UP `m6i.large` on AWS us-west-2 launched now by user `alice`, autostop off.
    pub fn new(name: &str) -> SimCluster {
        let now = unix_now();
        SimCluster {
            name: name.to_string(),
            status: SimStatus::Up,
            cloud: "AWS".into(),
            region: "us-west-2".into(),
            instance_type: "m6i.large".into(),
            nodes: 1,
            cpus: "2.0".into(),
            memory: "8.0".into(),
            accelerators: None,
            autostop: -1,
            to_down: false,
            workspace: "default".into(),
            user_name: "alice".into(),
            user_hash: "a1b2c3d4".into(),
            launched_at: now,
            status_updated_at: now,
            cluster_ever_up: true,
            cluster_hash: new_request_id(),
            hourly_price: DEFAULT_HOURLY_PRICE,
            usage_intervals: vec![(now, None)],
            last_use: format!("sky launch -c {name}"),
            is_managed: false,
        }
    }

    /// A cluster SkyPilot's jobs controller launched for a managed job.
    pub fn managed(mut self) -> Self {
        self.is_managed = true;
        self
    }

    /// A STOPPED cluster is taken to have run until now; an INIT one was never UP.
    pub fn status(mut self, s: SimStatus) -> Self {
        self.status = s;
        self.cluster_ever_up = s != SimStatus::Init;
        if s == SimStatus::Stopped {
            let now = unix_now();
            self.close_usage(now);
        }
        self
    }
    pub fn cloud(mut self, c: &str) -> Self {
        self.cloud = c.into();
        self
    }
    pub fn region(mut self, r: &str) -> Self {
        self.region = r.into();
        self
    }
    pub fn instance_type(mut self, t: &str) -> Self {
        self.instance_type = t.into();
        self
    }
    pub fn nodes(mut self, n: i64) -> Self {
        self.nodes = n;
        self
    }
    pub fn resources(mut self, cpus: &str, memory: &str, accelerators: Option<&str>) -> Self {
        self.cpus = cpus.into();
        self.memory = memory.into();
        self.accelerators = accelerators.map(str::to_string);
        self
    }
    /// `minutes` = -1 turns autostop off.
    pub fn autostop(mut self, minutes: i64, down: bool) -> Self {
        self.autostop = minutes;
        self.to_down = down;
        self
    }
    pub fn workspace(mut self, w: &str) -> Self {
        self.workspace = w.into();
        self
    }
    pub fn user(mut self, name: &str, hash: &str) -> Self {
        self.user_name = name.into();
        self.user_hash = hash.into();
        self
    }
    /// Also restarts the usage history at that time.
    pub fn launched_at(mut self, unix_secs: i64) -> Self {
        self.launched_at = unix_secs;
        self.status_updated_at = unix_secs;
        self.usage_intervals = vec![(unix_secs, None)];
        self
    }
    pub fn hourly_price(mut self, p: f64) -> Self {
        self.hourly_price = p;
        self
    }
    pub fn cluster_hash(mut self, h: &str) -> Self {
        self.cluster_hash = h.into();
        self
    }

    /// `1x(cpus=2, mem=8, m6i.large, ...)`, as SkyPilot abbreviates it.
    pub fn resources_str(&self) -> String {
        let acc = match &self.accelerators {
            Some(a) => format!("gpus={a}, "),
            None => String::new(),
        };
        format!(
            "{}x({acc}cpus={}, mem={}, {}, ...)",
            self.nodes,
            short_number(&self.cpus),
            short_number(&self.memory),
            self.instance_type
        )
    }

    /// `1x(cpus=2, mem=8, m6i.large, disk=256)`.
    pub fn resources_str_full(&self) -> String {
        let acc = match &self.accelerators {
            Some(a) => format!("gpus={a}, "),
            None => String::new(),
        };
        format!(
            "{}x({acc}cpus={}, mem={}, {}, disk=256)",
            self.nodes,
            short_number(&self.cpus),
            short_number(&self.memory),
            self.instance_type
        )
    }

    pub(super) fn close_usage(&mut self, now: i64) {
        if let Some(last) = self.usage_intervals.last_mut() {
            if last.1.is_none() {
                last.1 = Some(now);
            }
        }
    }

    pub(super) fn open_usage(&mut self, now: i64) {
        if self.usage_intervals.last().is_none_or(|l| l.1.is_some()) {
            self.usage_intervals.push((now, None));
        }
    }

    pub(super) fn duration(&self, now: i64) -> i64 {
        self.usage_intervals
            .iter()
            .map(|(s, e)| e.unwrap_or(now).saturating_sub(*s).max(0))
            .sum()
    }
}

/// `"2.0"` → `2`, `"0.5"` → `0.5`, as SkyPilot prints resources.
fn short_number(s: &str) -> String {
    match s.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Ok(v) => format!("{v}"),
        Err(_) => s.to_string(),
    }
}

pub(super) fn apply_status(c: &mut SimCluster, status: SimStatus, now: i64) {
    if c.status == status {
        return;
    }
    match status {
        SimStatus::Up => {
            c.cluster_ever_up = true;
            c.open_usage(now);
        }
        SimStatus::Stopped => c.close_usage(now),
        SimStatus::Init => c.open_usage(now),
    }
    c.status = status;
    c.status_updated_at = now;
}

impl Simulator {
    /// Add a cluster, or replace the one of that name.
    pub fn upsert_cluster(&self, c: SimCluster) {
        let mut st = self.shared.lock();
        st.clusters.insert(c.name.clone(), c);
    }

    /// Same as [`upsert_cluster`](Self::upsert_cluster).
    pub fn add_cluster(&self, c: SimCluster) {
        self.upsert_cluster(c);
    }

    /// Change a cluster in place; false if there is none of that name.
    pub fn update_cluster(&self, name: &str, f: impl FnOnce(&mut SimCluster)) -> bool {
        let mut st = self.shared.lock();
        match st.clusters.get_mut(name) {
            Some(c) => {
                f(c);
                true
            }
            None => false,
        }
    }

    /// Set a cluster's status as SkyPilot records a transition (status_updated_at, usage
    /// intervals, cluster_ever_up); false if there is none of that name.
    pub fn set_status(&self, name: &str, status: SimStatus) -> bool {
        let mut st = self.shared.lock();
        let now = st.now();
        match st.clusters.get_mut(name) {
            Some(c) => {
                apply_status(c, status, now);
                true
            }
            None => false,
        }
    }

    /// Set autostop minutes (-1 = off) and to_down; false if there is no such cluster.
    pub fn set_autostop(&self, name: &str, minutes: i64, down: bool) -> bool {
        self.update_cluster(name, |c| {
            c.autostop = minutes;
            c.to_down = down;
        })
    }

    /// Remove a cluster as if it had been torn down (it stays in `cost_report`).
    pub fn remove_cluster(&self, name: &str) -> bool {
        let mut st = self.shared.lock();
        let now = st.now();
        match st.clusters.remove(name) {
            Some(mut c) => {
                c.close_usage(now);
                st.history.push(c);
                true
            }
            None => false,
        }
    }

    pub fn cluster(&self, name: &str) -> Option<SimCluster> {
        self.shared.lock().clusters.get(name).cloned()
    }

    /// Names of the current clusters, sorted.
    pub fn cluster_names(&self) -> Vec<String> {
        self.shared.lock().clusters.keys().cloned().collect()
    }

    pub fn cluster_count(&self) -> usize {
        self.shared.lock().clusters.len()
    }

    /// Remove every cluster and the cost history.
    pub fn clear_clusters(&self) {
        let mut st = self.shared.lock();
        st.clusters.clear();
        st.history.clear();
    }

    /// Add `n` clusters named `{prefix}-00000`, … with a deterministic mix: every 10th
    /// STOPPED, every 25th (offset 1) INIT, the rest UP; autostop 30 min on even ones
    /// (to_down on every 4th), off on odd ones; four regions, two clouds, three users,
    /// launched one minute apart ending now. 10,000 take well under a second.
    pub fn generate_clusters(&self, prefix: &str, n: usize) {
        let now = self.now();
        self.generate_clusters_with(n, |i| {
            let name = format!("{prefix}-{i:05}");
            let status = if i % 10 == 0 {
                SimStatus::Stopped
            } else if i % 25 == 1 {
                SimStatus::Init
            } else {
                SimStatus::Up
            };
            let (cloud, region) = match i % 4 {
                0 => ("AWS", "us-west-2"),
                1 => ("AWS", "us-east-1"),
                2 => ("GCP", "us-central1"),
                _ => ("GCP", "europe-west4"),
            };
            let users = [
                ("alice", "a1b2c3d4"),
                ("bob", "b2c3d4e5"),
                ("carol", "c3d4e5f6"),
            ];
            let (user, hash) = users[i % 3];
            let (minutes, down) = if i % 2 == 0 {
                (30, i % 4 == 0)
            } else {
                (-1, false)
            };
            let mut c = SimCluster::new(&name)
                .cloud(cloud)
                .region(region)
                .user(user, hash)
                .autostop(minutes, down)
                .launched_at(now - (n - i) as i64 * 60)
                .cluster_hash(&uuid_like(0x5eed_0000 + i as u64))
                .status(status);
            if status == SimStatus::Stopped {
                c.close_usage(now - 30);
            }
            c
        });
    }

    /// Add `n` clusters made by `make(i)`.
    pub fn generate_clusters_with(&self, n: usize, mut make: impl FnMut(usize) -> SimCluster) {
        let made: Vec<SimCluster> = (0..n).map(&mut make).collect();
        let mut st = self.shared.lock();
        for c in made {
            st.clusters.insert(c.name.clone(), c);
        }
    }

    /// Fix the simulator's clock (Unix seconds), or go back to system time with None.
    pub fn set_now(&self, now: Option<i64>) {
        self.shared.lock().now = now;
    }

    pub fn now(&self) -> i64 {
        self.shared.lock().now()
    }

    /// The job list `queue` returns for a cluster (default: `[]`).
    pub fn set_queue(&self, cluster: &str, jobs: Value) {
        self.shared
            .lock()
            .queue_jobs
            .insert(cluster.to_string(), jobs);
    }
}
