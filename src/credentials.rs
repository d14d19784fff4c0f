//! Cloud credentials: presence and form checks, no network. (Being built.)

use crate::config::Config;

pub fn check(_config: &Config) -> anyhow::Result<bool> {
    anyhow::bail!("credentials check is not built yet")
}
