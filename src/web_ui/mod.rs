//! `skypilot-host web-ui`: the host's console and the authenticated front door to SkyPilot.
//!
//! Not built yet: this module holds the shared types the console and the gateway agree on.

pub mod gateway;
pub mod identity;

use crate::config::Config;

/// Runs the web UI until SIGTERM/SIGINT.
pub async fn run(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("the web UI is not built yet")
}

/// `skypilot-host hash-password NAME --role ROLE`.
pub fn hash_password_cli(_name: &str, _role: &str) -> anyhow::Result<()> {
    anyhow::bail!("hash-password is not built yet")
}
