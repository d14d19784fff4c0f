//! Test support shared by the integration tests and the benchmarks. Included with
//! `#[path]` so it can live at `tests/support`.
//!
//! - `sim`: the SkyPilot simulator.
//! - `api`: SkyPilot's REST protocol as a client speaks it, for any server (simulated or
//!   real), and the typed client of the crate for a URL.
//! - `host`: the `skypilot-host` binary: its path, a guard for its processes, a host
//!   config in a temp dir and its `status --json`.
//! - `real`: the real SkyPilot API server `scripts/test.sh` starts (`SKYPILOT_TEST_*`),
//!   SkyPilot's Python and `tests/real/skyctl.py`.
//! - `clock`: a clock the test sets.
//! - `tls`: a TLS front with a private CA for any loopback server.
//! - `web`: the web UI in-process, its users file, and a browser-like client.
//! - [`runtime`]: a runtime for the tests that drive async code from sync ones.
#![allow(dead_code)]

pub mod api;
pub mod clock;
pub mod host;
pub mod real;
pub mod sim;
pub mod tls;
pub mod web;

/// A multi-thread runtime with `workers` worker threads, for tests that are not async
/// themselves (they block on the binary or a server in between).
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}
