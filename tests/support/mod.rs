//! Test support shared by the integration tests and the benchmarks: the SkyPilot
//! simulator and helpers. Included with `#[path]` so it can live at `tests/support`.
#![allow(dead_code)]

pub mod sim;
pub mod skyctl;
pub mod tls;
