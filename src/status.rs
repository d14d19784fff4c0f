//! `skypilot-host status`. (Being written.)
use crate::config::Config;
pub fn run(_config: &Config, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
