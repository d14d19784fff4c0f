//! `skypilot-host autostop`: the enforcer of the idle-stop policy. Not built yet.

use crate::config::Config;

/// One pass, or a loop with `daemon`; `dry_run` prints decisions and acts on nothing.
pub async fn run(_config: Config, _daemon: bool, _dry_run: bool) -> anyhow::Result<()> {
    anyhow::bail!("the autostop enforcer is not built yet")
}
