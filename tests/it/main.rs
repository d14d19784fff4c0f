//! The one integration-test binary. Each area has its own module file.
//!
//! Tests marked `#[cfg(feature = "real-server")]` need SkyPilot itself: the real API
//! server that `scripts/test.sh` starts, or SkyPilot's config schema that it exports. They
//! read the server's address and environment from variables the script exports (see
//! `tests/support/real.rs`). Without the feature they are not compiled, so not counted.
//!
//! Helpers shared by several files (the simulator, the protocol client, the binary and its
//! process guard, the real-server environment, the test clock) are in `tests/support`.

#[path = "../support/mod.rs"]
mod support;

mod autostop;
mod bounded;
mod cli;
mod cluster_manager;
mod contract;
mod credentials;
mod fuzz_regressions;
mod gateway;
mod hostile_files;
mod jobs;
mod load_budget;
mod monitor;
mod monitor_load;
mod one_writer;
mod policy;
mod services;
mod signals;
mod simulator;
mod store;
mod tls;
mod watchdog;
mod web_ui;
// Needs SkyPilot's own config schema, exported by SkyPilot (scripts/test.sh does it).
#[cfg(feature = "real-server")]
mod sky_config;
// SkyPilot's state in PostgreSQL (the throwaway PostgreSQL scripts/test.sh starts) and the
// host roles against a remote SkyPilot with a service-account token; servers of their own.
#[cfg(feature = "real-server")]
mod postgres;
// Backups and the restore drill, SQLite and PostgreSQL, servers of their own.
#[cfg(feature = "real-server")]
mod backup;
#[cfg(feature = "real-server")]
mod remote;
// Authorization end to end: the real web UI in front of SkyPilot servers of their own,
// one with its state in the throwaway PostgreSQL.
#[cfg(feature = "real-server")]
mod authorization;
// Single sign-on with a real OpenID Provider (Node) and SkyPilot's CLI logging in, in
// Chromium.
#[cfg(all(feature = "real-server", feature = "browser"))]
mod sso;
