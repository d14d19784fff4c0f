//! The CPU time SkyPilot's API server has used, read on this host: from its systemd
//! unit's cgroup (`cpu.stat`'s `usage_usec`, which counts every process of the unit,
//! the request executors included), or from the process tree under its main process
//! (`/proc/<pid>/stat`: user and system time of each process, plus what its reaped
//! children used). The cluster manager reads it before and after each `/status` to
//! count what the read cost the server (src/load_budget.rs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Linux reports `/proc/<pid>/stat` times in clock ticks of `USER_HZ`, which is 100 on
/// every architecture with a current userspace ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// Largest `cpu.stat` or `/proc/<pid>/stat` read.
const MAX_STAT_BYTES: u64 = 64 * 1024;

/// Where the API server's CPU time is read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ServerCpu {
    /// A cgroup v2 directory (e.g. `/sys/fs/cgroup/system.slice/skypilot-api-server.service`).
    Cgroup(PathBuf),
    /// A file holding the pid of the server's main process: its whole process tree.
    ProcessTree(PathBuf),
}

/// How a `/status` read's cost to the server was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CpuSource {
    /// The API server's cgroup (`cpu.stat`).
    Cgroup,
    /// The API server's process tree (`/proc`).
    ProcessTree,
    /// Twice the read's wall time: the server is remote, or its CPU could not be read.
    WallTime,
}

impl CpuSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CpuSource::Cgroup => "cgroup",
            CpuSource::ProcessTree => "process_tree",
            CpuSource::WallTime => "wall_time",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<CpuSource> {
        [
            CpuSource::Cgroup,
            CpuSource::ProcessTree,
            CpuSource::WallTime,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// For people: where the figure comes from.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            CpuSource::Cgroup => "the API server's CPU from its cgroup",
            CpuSource::ProcessTree => "the API server's CPU from its process tree",
            CpuSource::WallTime => "twice the read's wall time (the server's CPU is not visible)",
        }
    }
}

impl ServerCpu {
    pub(crate) fn source(&self) -> CpuSource {
        match self {
            ServerCpu::Cgroup(_) => CpuSource::Cgroup,
            ServerCpu::ProcessTree(_) => CpuSource::ProcessTree,
        }
    }

    /// CPU seconds the server has used so far; the error names the file and what was
    /// expected.
    pub(crate) fn read(&self) -> Result<f64, String> {
        match self {
            ServerCpu::Cgroup(dir) => cgroup_secs(&dir.join("cpu.stat")),
            ServerCpu::ProcessTree(pid_file) => {
                let text = crate::files::read_regular_text(pid_file, MAX_STAT_BYTES)
                    .map_err(|e| format!("{}: {e}", pid_file.display()))?;
                let pid: u32 = text.trim().parse().map_err(|_| {
                    format!(
                        "{}: {:?} is not a process id: expected the API server's pid",
                        pid_file.display(),
                        text.trim()
                    )
                })?;
                tree_secs(Path::new("/proc"), pid)
            }
        }
    }
}

/// `usage_usec` of a cgroup v2 `cpu.stat`, in seconds.
fn cgroup_secs(path: &Path) -> Result<f64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|usec| usec as f64 / 1e6)
        .ok_or_else(|| {
            format!(
                "{}: no usage_usec line: expected a cgroup v2 cpu.stat",
                path.display()
            )
        })
}

/// One process of `/proc`: its parent and the CPU ticks it and its reaped children used.
fn proc_stat(text: &str) -> Option<(u32, u64)> {
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = (11..=14)
        .map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum::<Option<u64>>()?;
    Some((ppid, ticks))
}

/// CPU seconds of `root` and every process under it, read from `proc` (a `/proc`).
fn tree_secs(proc: &Path, root: u32) -> Result<f64, String> {
    let entries = std::fs::read_dir(proc).map_err(|e| format!("{}: {e}", proc.display()))?;
    let mut all: HashMap<u32, (u32, u64)> = HashMap::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // A process may end between listing and reading: it is simply not counted.
        let Ok(text) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some(s) = proc_stat(&text) {
            all.insert(pid, s);
        }
    }
    if !all.contains_key(&root) {
        return Err(format!(
            "process {root} (the API server's) is not running: no {}/{root}/stat",
            proc.display()
        ));
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in &all {
        children.entry(ppid).or_default().push(pid);
    }
    let (mut ticks, mut todo) = (0u64, vec![root]);
    while let Some(pid) = todo.pop() {
        ticks += all.get(&pid).map_or(0, |s| s.1);
        todo.extend(children.get(&pid).into_iter().flatten().copied());
    }
    Ok(ticks as f64 / TICKS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, comm: &str, ppid: u32, utime: u64, stime: u64, cutime: u64) -> String {
        format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} {cutime} 0 20 0 1 0 100 0 0\n")
    }

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parens() {
        assert_eq!(
            proc_stat(&stat(7, "sky (worker) 1", 3, 10, 5, 2)),
            Some((3, 17))
        );
        assert_eq!(proc_stat("7 (x) S"), None);
        assert_eq!(proc_stat("no parenthesis"), None);
    }

    #[test]
    fn a_process_tree_sums_the_root_and_its_descendants_only() {
        let dir = tempfile::tempdir().unwrap();
        let write = |pid: u32, text: String| {
            std::fs::create_dir_all(dir.path().join(pid.to_string())).unwrap();
            std::fs::write(dir.path().join(pid.to_string()).join("stat"), text).unwrap();
        };
        write(1, stat(1, "init", 0, 1000, 1000, 0));
        write(10, stat(10, "sky", 1, 100, 50, 20));
        write(11, stat(11, "uvicorn", 10, 30, 0, 0));
        write(12, stat(12, "executor", 11, 0, 100, 0));
        write(20, stat(20, "other", 1, 500, 0, 0));
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        assert_eq!(tree_secs(dir.path(), 10).unwrap(), 3.0);
        let e = tree_secs(dir.path(), 99).unwrap_err();
        assert!(e.contains("process 99") && e.contains("not running"), "{e}");
    }

    #[test]
    fn a_cgroup_gives_usage_usec_and_says_what_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        )
        .unwrap();
        let cpu = ServerCpu::Cgroup(dir.path().to_path_buf());
        assert_eq!(cpu.read().unwrap(), 2.5);
        assert_eq!(cpu.source(), CpuSource::Cgroup);
        std::fs::write(dir.path().join("cpu.stat"), "nr_periods 0\n").unwrap();
        let e = cpu.read().unwrap_err();
        assert!(e.contains("cpu.stat") && e.contains("usage_usec"), "{e}");
        let e = ServerCpu::Cgroup(dir.path().join("missing"))
            .read()
            .unwrap_err();
        assert!(e.contains("missing/cpu.stat"), "{e}");
    }

    #[test]
    fn a_pid_file_that_holds_no_pid_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("server.pid");
        std::fs::write(&f, "sky\n").unwrap();
        let e = ServerCpu::ProcessTree(f.clone()).read().unwrap_err();
        assert!(
            e.contains("server.pid") && e.contains("not a process id"),
            "{e}"
        );
        // This test's own process: some CPU, read from the real /proc.
        std::fs::write(&f, std::process::id().to_string()).unwrap();
        assert!(ServerCpu::ProcessTree(f).read().unwrap() >= 0.0);
    }

    #[test]
    fn sources_round_trip() {
        for s in [
            CpuSource::Cgroup,
            CpuSource::ProcessTree,
            CpuSource::WallTime,
        ] {
            assert_eq!(CpuSource::parse(s.as_str()), Some(s));
        }
        assert_eq!(CpuSource::parse("guess"), None);
    }
}
