//! SkyPilot's `config.yaml`: render it from the module's `config` value (JSON) and
//! validate it against the schema of the SkyPilot in use.
//!
//! - [`render`]: maps the seed's compatibility keys ([`compat`]), validates the result
//!   with [`schema::Schema`] and writes the YAML plus the launch-policy JSON.
//! - [`check`]: validates an existing YAML or JSON config.
//!
//! The schema is SkyPilot's own, exported by `scripts/sky-schema.py`; its path comes
//! from a flag or from `$SKYPILOT_CONFIG_SCHEMA`.

pub mod compat;
pub(crate) mod schema;
mod values;
pub mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

pub(crate) use compat::Mapped;
pub(crate) use schema::Schema;

/// File name of the launch-policy settings written next to the rendered config when
/// no other path is given.
pub(crate) const DEFAULT_POLICY_FILE: &str = "launch-policy.json";

/// Largest SkyPilot config (or `config` value) read: far above any real one.
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// One problem with a config: the key path (dotted, `[n]` for list items, empty for
/// the whole value) and what is wrong and allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub(crate) key: String,
    pub(crate) message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "(whole config): {}", self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

/// The error of a failed render or check: the file and every problem found.
#[derive(Debug, thiserror::Error)]
pub(crate) struct ConfigProblems {
    pub(crate) file: PathBuf,
    /// What the problems were checked against, e.g. "SkyPilot 0.14.1's config schema".
    pub(crate) against: String,
    pub(crate) problems: Vec<Problem>,
}

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{} ({}):",
            self.file.display(),
            if n == 1 { "" } else { "s" },
            self.against
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Options of `sky-config render` beyond IN and OUT.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Schema file; `None` = `$SKYPILOT_CONFIG_SCHEMA`.
    pub schema: Option<PathBuf>,
    /// Launch-policy output; `None` = `launch-policy.json` next to OUT.
    pub policy_out: Option<PathBuf>,
    /// The module's own launch options (JSON), merged into the launch policy.
    pub launch_defaults: Option<PathBuf>,
}

/// What a successful render produced.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub mapped: Mapped,
    pub(crate) config_path: PathBuf,
    pub policy_path: PathBuf,
}

/// `sky-config render IN OUT [--schema FILE] [--policy-out FILE]`: renders and prints a
/// one-line summary on stdout (warnings go to stderr).
pub(crate) fn run_render(input: &Path, output: &Path, opts: &RenderOptions) -> anyhow::Result<()> {
    let r = render_with(input, output, opts)?;
    let n = r.mapped.warnings.len();
    println!(
        "{}: rendered ({n} compatibility key{} mapped); launch policy: {}",
        r.config_path.display(),
        if n == 1 { "" } else { "s" },
        r.policy_path.display()
    );
    Ok(())
}

/// `sky-config render`: prints one warning per mapped key on stderr, fails (writing
/// nothing) when the result does not validate.
pub fn render_with(input: &Path, output: &Path, opts: &RenderOptions) -> anyhow::Result<Rendered> {
    let schema = Schema::locate(opts.schema.as_deref())?;
    let policy_path = match &opts.policy_out {
        Some(p) => p.clone(),
        None => output.with_file_name(DEFAULT_POLICY_FILE),
    };
    if policy_path == output {
        anyhow::bail!(
            "{}: the rendered config and the launch policy would be the same file; pass another --policy-out",
            output.display()
        );
    }
    let text = crate::files::read_regular_text(input, MAX_CONFIG_BYTES)
        .with_context(|| format!("{}: cannot read the `config` value", input.display()))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: the `config` value is not valid JSON at line {}, column {}: {}",
            input.display(),
            e.line(),
            e.column(),
            json_error_kind(&e)
        )
    })?;
    refuse_db_key(input, &value)?;
    let mapped = compat::map(value, &schema.clouds()).map_err(|problems| ConfigProblems {
        file: input.to_path_buf(),
        against: "the seed's compatibility keys".to_string(),
        problems,
    })?;
    let mut mapped = mapped;
    if let Some(path) = &opts.launch_defaults {
        let text = crate::files::read_regular_text(path, MAX_CONFIG_BYTES)
            .with_context(|| format!("{}: cannot read the launch defaults", path.display()))?;
        let defaults: crate::launch_policy::LaunchDefaults = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not the launch defaults (JSON with region, zone, instance_type, use_spot, max_hourly_price, autostop_idle_minutes): {e}", path.display()))?;
        mapped
            .policy
            .merge(defaults)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    for w in &mapped.warnings {
        eprintln!("warning: {w}");
    }
    let problems = schema.validate(&mapped.config);
    if !problems.is_empty() {
        return Err(ConfigProblems {
            file: input.to_path_buf(),
            against: format!("{} ({})", schema.label(), schema.path().display()),
            problems,
        }
        .into());
    }
    let yaml_text = yaml::to_yaml(
        &mapped.config,
        &format!(
            "SkyPilot config.yaml rendered by `skypilot-host sky-config render` from {};\n\
             validated against {}. Do not edit: change the source instead.",
            input.display(),
            schema.label()
        ),
    );
    let policy_text = serde_json::to_string_pretty(&mapped.policy)
        .context("cannot serialise the launch policy")?
        + "\n";
    write_atomic(output, yaml_text.as_bytes())?;
    write_atomic(&policy_path, policy_text.as_bytes())?;
    Ok(Rendered {
        mapped,
        config_path: output.to_path_buf(),
        policy_path,
    })
}

/// `sky-config check FILE [--schema SCHEMA]`: prints `FILE: ok` when valid.
pub(crate) fn run_check(file: &Path, schema: Option<&Path>) -> anyhow::Result<()> {
    check_with(file, schema)?;
    println!("{}: ok", file.display());
    Ok(())
}

/// Validates a YAML or JSON SkyPilot config; returns the parsed value.
pub(crate) fn check_with(file: &Path, schema: Option<&Path>) -> anyhow::Result<Value> {
    let value = read_config(file)?;
    let schema = Schema::locate(schema)?;
    let problems = schema.validate(&value);
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(ConfigProblems {
            file: file.to_path_buf(),
            against: format!("{} ({})", schema.label(), schema.path().display()),
            problems,
        }
        .into())
    }
}

/// Reads a SkyPilot config file: JSON or YAML. An empty file is an empty config, as in
/// SkyPilot.
pub(crate) fn read_config(file: &Path) -> anyhow::Result<Value> {
    let text = crate::files::read_regular_text(file, MAX_CONFIG_BYTES)
        .with_context(|| format!("{}: cannot read the SkyPilot config", file.display()))?;
    let value = yaml::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(match value {
        Value::Null => Value::Object(serde_json::Map::new()),
        v => v,
    })
}

/// SkyPilot's `db` key holds the database URI, password included: the rendered
/// config.yaml lands in the world-readable Nix store, so the URI must come another way.
/// The value itself is never printed.
fn refuse_db_key(input: &Path, value: &Value) -> anyhow::Result<()> {
    if value.get("db").is_some() {
        anyhow::bail!(
            "{}: `db` (SkyPilot's database URI) must not be in `config`: the rendered config.yaml \
             is readable by every local user and the URI holds the database password; give it \
             as services.skypilot.database.uriFile (a file outside the Nix store), or use \
             services.skypilot.database.createLocally",
            input.display()
        );
    }
    Ok(())
}

fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected data",
        serde_json::error::Category::Eof => "unexpected end of input",
    }
}

/// Writes `bytes` to `path`, replaced atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::files::write_atomic(path, bytes, 0o666, crate::files::Place::Replace)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))
}
