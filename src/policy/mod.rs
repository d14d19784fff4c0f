//! `skypilot-host policy`: SkyPilot's RESTful admin policy endpoint. Not built yet.

use crate::config::Config;

/// Serves the policy until SIGTERM/SIGINT.
pub async fn run(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("the launch policy is not built yet")
}
