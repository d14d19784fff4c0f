//! The one integration-test binary. Each area has its own module file.
//!
//! Tests marked `#[cfg(feature = "real-server")]` need the real SkyPilot API server that
//! `scripts/test.sh` starts; they read its address and environment from variables the
//! script exports (see `tests/it/real.rs`).

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod cluster_manager;
mod contract;
mod credentials;
mod monitor;
mod real;
mod sky_config;
