//! SkyPilot's `config.yaml`: render from the module's JSON and validate. (Being built.)

use std::path::Path;

pub fn render(_input: &Path, _output: &Path) -> anyhow::Result<()> {
    anyhow::bail!("sky-config render is not built yet")
}

pub fn check(_file: &Path) -> anyhow::Result<()> {
    anyhow::bail!("sky-config check is not built yet")
}
