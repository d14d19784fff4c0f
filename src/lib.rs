//! `skypilot-host`: the host services of a team SkyPilot server.
//!
//! Data flows one way: SkyPilot's API server -> [`cluster_manager`] (the only writer of
//! cluster state) -> [`store`] -> the roles that read it ([`monitor`], [`autostop`],
//! [`web_ui`], `status`). Two roles act, through SkyPilot's API server, and append what
//! they did to the store's audit table: [`autostop`] and [`web_ui`] (console actions,
//! every write through its gateway, its role sync). Every role reads one
//! [`config::Config`].

mod audit_log;
pub mod autostop;
pub mod cli;
pub mod cluster;
pub mod cluster_manager;
pub mod config;
pub mod credentials;
mod files;
mod fleet;
mod http;
mod launch_policy;
mod load_budget;
mod memory;
pub mod monitor;
pub mod policy;
mod runner;
mod secret;
pub mod sky_config;
pub mod skypilot;
mod status;
pub mod store;
mod systemd;
mod terminal;
pub mod time;
pub mod web_ui;
