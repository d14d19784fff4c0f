//! `skypilot-host`: the host services of a team SkyPilot server.
//!
//! Data flows one way: SkyPilot's API server -> [`cluster_manager`] (the only writer of
//! cluster state) -> [`store`] -> the roles that read it ([`monitor`], [`autostop`],
//! [`web_ui`], `status`). Two roles act, through SkyPilot's API server, and append what
//! they did to the store's audit table: [`autostop`] and [`web_ui`] (console actions,
//! every write through its gateway, its role sync). Every role reads one
//! [`config::Config`].
//!
//! # Adding a role
//!
//! 1. Its module (`src/<role>/`): the domain logic with the clock passed in, apart from
//!    its HTTP or its loop; SQL only through [`store`].
//! 2. Its config section in [`config`]: a struct with `deny_unknown_fields`, its defaults
//!    in its `Default`, its own `validate()` called from `Config::validate`.
//! 3. A `Command` in [`cli`] dispatched to `role(config, threads, <role>::run)`.
//! 4. Its `run` on the role runner (`runner.rs`): a server binds with `runner::bind`,
//!    says `Serving::ready` and serves until `Serving::shutdown`; a loop implements
//!    `runner::Periodic` and is driven by `runner::run_periodic`. Both get READY,
//!    the watchdog and a clean stop from there.
//! 5. Its unit in `nix/module.nix`: `mkHostUnit { role = "<role>"; ... }` (`notify`,
//!    `watchdog`, `loopbackOnly`, `stateDir`, `connections`), and an option to enable it.
//! 6. Its tests: unit tests beside the logic; integration tests in `tests/it/` that start
//!    the real binary (`tests/support/host.rs`) against the simulator, and against the
//!    real SkyPilot under the `real-server` feature; an evaluation case in
//!    `nix/tests/cases.nix` and, for what the unit runs, `nix/tests/run_rendered.py`.

mod audit_log;
pub mod autostop;
mod backup;
mod catalog;
pub mod cli;
pub mod cluster;
pub mod cluster_manager;
pub mod config;
pub mod credentials;
mod files;
mod fleet;
mod http;
pub mod jobs;
mod launch_policy;
mod load_budget;
mod memory;
mod money;
pub mod monitor;
pub mod policy;
mod runner;
mod secret;
mod server_cpu;
pub mod services;
pub mod sky_config;
pub mod skypilot;
mod status;
pub mod store;
mod systemd;
mod terminal;
pub mod time;
pub mod web_ui;
