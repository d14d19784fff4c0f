//! `skypilot-host monitor`: Prometheus exporter. (Being built; see issue "Monitoring".)

use crate::config::Config;

pub async fn run(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("the monitor role is not built yet")
}
