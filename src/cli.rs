//! Command line: one subcommand per role or check. `main` only parses and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

pub(crate) const DEFAULT_CONFIG: &str = "/etc/skypilot-host/config.toml";

#[derive(Debug, Parser)]
#[command(
    name = "skypilot-host",
    version,
    about = "Host services of a team SkyPilot server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArg {
    /// Host config file (TOML).
    #[arg(long, short = 'c', env = "SKYPILOT_HOST_CONFIG", default_value = DEFAULT_CONFIG)]
    pub(crate) config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Poll SkyPilot's API server and record cluster state in the host database.
    ClusterManager(ConfigArg),
    /// Show what the host database knows of the clusters.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list clusters that SkyPilot no longer lists (status GONE).
        #[arg(long)]
        all: bool,
    },
    /// Validate a host config file: exit 0 when valid, else print one error and exit 1.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Serve Prometheus metrics about the fleet and the host services.
    Monitor(ConfigArg),
    /// Render or check SkyPilot's config.yaml.
    #[command(subcommand)]
    SkyConfig(SkyConfigCommand),
    /// Check the cloud credential files named in the host config.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Print the audit log: every action taken on a cluster, newest last.
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        /// Only entries of the last SECONDS.
        #[arg(long, value_name = "SECONDS")]
        since: Option<u64>,
        /// At most this many entries (the latest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON for scripts instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Serve the web console and the authenticated gateway to SkyPilot.
    WebUi {
        #[command(flatten)]
        config: ConfigArg,
        /// Overrides web_ui.users_file (the module passes systemd's credential here).
        #[arg(long, value_name = "FILE")]
        users_file: Option<PathBuf>,
        /// Overrides web_ui.tokens_file.
        #[arg(long, value_name = "FILE")]
        tokens_file: Option<PathBuf>,
        /// Overrides web_ui.tls_cert_file.
        #[arg(long, value_name = "FILE")]
        tls_cert_file: Option<PathBuf>,
        /// Overrides web_ui.tls_key_file.
        #[arg(long, value_name = "FILE")]
        tls_key_file: Option<PathBuf>,
    },
    /// Read a password (twice, without echo, or one line from stdin when it is not a
    /// terminal) and print a users-file line `NAME:ARGON2ID-HASH:ROLE`.
    HashPassword {
        /// The user's name.
        name: String,
        /// `admin` or `viewer`.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Make an API token for scripts: prints the token on stderr (shown once) and its
    /// tokens-file line `NAME:$blake2b$HEX:ROLE` on stdout.
    MakeToken {
        /// The name the token acts as.
        name: String,
        /// `admin` or `viewer`.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Enforce the autostop policy: one pass (for a systemd timer), or a loop with --daemon.
    Autostop {
        #[command(flatten)]
        config: ConfigArg,
        /// Keep running, one pass every `autostop.interval_secs`.
        #[arg(long)]
        daemon: bool,
        /// Print one line per cluster with the decision and its reason; act on nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve SkyPilot's RESTful admin policy (launch defaults, autostop, price cap).
    Policy {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: Option<PolicyCommand>,
    },
    /// Test aid: append COUNT audit entries through a second writer's connection, printing
    /// each entry's id once committed (used to test two writers on one database).
    #[command(hide = true)]
    DebugAuditWriter {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, default_value_t = 1000)]
        count: u64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SkyConfigCommand {
    /// Render the module's `config` value (JSON) into SkyPilot's config.yaml.
    Render {
        input: PathBuf,
        output: PathBuf,
        /// SkyPilot's config schema, as printed by scripts/sky-schema.py.
        #[arg(long, env = "SKYPILOT_CONFIG_SCHEMA")]
        schema: Option<PathBuf>,
        /// Where to write the launch-policy settings [default: launch-policy.json next to OUTPUT].
        #[arg(long)]
        policy_out: Option<PathBuf>,
        /// The module's launch options (JSON: region, zone, instance_type, use_spot,
        /// max_hourly_price, autostop_idle_minutes), merged into the launch policy.
        #[arg(long)]
        launch_defaults: Option<PathBuf>,
    },
    /// Print the seed's compatibility keys and the module option each stands for (JSON).
    SeedKeys,
    /// Validate a SkyPilot config.yaml against the schema of the SkyPilot in use.
    Check {
        file: PathBuf,
        /// SkyPilot's config schema, as printed by scripts/sky-schema.py.
        #[arg(long, env = "SKYPILOT_CONFIG_SCHEMA")]
        schema: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Write SkyPilot's config IN to OUT with `admin_policy` set to this policy's URL and
    /// token (for the API server; OUT is mode 0400). `--config` goes before the subcommand.
    SkyConfig {
        input: PathBuf,
        output: PathBuf,
        /// The token file, when this process sees it elsewhere than policy.token_file
        /// (e.g. its own systemd credential directory).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CredentialsCommand {
    /// Report, per configured cloud, whether its credential is present, readable and well-formed.
    Check(ConfigArg),
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKYPILOT_HOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.level.as_filter()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// A single-threaded runtime for the cluster manager (one poll at a time: fewer threads,
/// one malloc arena, a smaller footprint), two workers for servers.
fn runtime(single_thread: bool) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut b = if single_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    };
    b.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let inner = || -> Result<ExitCode, ExitCode> {
        Ok(match cli.command {
            Command::CheckConfig { file } => {
                load(&file)?;
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Command::ClusterManager(a) => {
                let config = load(&a.config)?;
                init_logging(&config);
                let rt = runtime(true)?;
                report(rt.block_on(crate::cluster_manager::run(config)))
            }
            Command::Status { config, json, all } => {
                let config = load(&config.config)?;
                report(crate::status::run(&config, json, all))
            }
            Command::Monitor(a) => {
                let config = load(&a.config)?;
                init_logging(&config);
                let rt = runtime(false)?;
                let code = report(rt.block_on(crate::monitor::run(config)));
                // Connections past their shutdown grace are dropped with the runtime.
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
                code
            }
            Command::SkyConfig(SkyConfigCommand::Render {
                input,
                output,
                schema,
                policy_out,
                launch_defaults,
            }) => report(crate::sky_config::run_render(
                &input,
                &output,
                &crate::sky_config::RenderOptions {
                    schema,
                    policy_out,
                    launch_defaults,
                },
            )),
            Command::SkyConfig(SkyConfigCommand::SeedKeys) => {
                let table: std::collections::BTreeMap<&str, &str> =
                    crate::sky_config::compat::SEED_KEYS.into_iter().collect();
                match serde_json::to_string_pretty(&table) {
                    Ok(text) => {
                        println!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => report(Err(e.into())),
                }
            }
            Command::SkyConfig(SkyConfigCommand::Check { file, schema }) => {
                report(crate::sky_config::run_check(&file, schema.as_deref()))
            }
            Command::Audit {
                config,
                since,
                limit,
                json,
            } => {
                let config = load(&config.config)?;
                report(crate::audit_log::run(&config, since, limit, json))
            }
            Command::DebugAuditWriter { config, count } => {
                let config = load(&config.config)?;
                report(crate::audit_log::debug_writer(&config, count))
            }
            Command::WebUi {
                config,
                users_file,
                tokens_file,
                tls_cert_file,
                tls_key_file,
            } => {
                let mut config = load(&config.config)?;
                let w = &mut config.web_ui;
                w.users_file = users_file.or(w.users_file.take());
                w.tokens_file = tokens_file.or(w.tokens_file.take());
                w.tls_cert_file = tls_cert_file.or(w.tls_cert_file.take());
                w.tls_key_file = tls_key_file.or(w.tls_key_file.take());
                init_logging(&config);
                let rt = runtime(false)?;
                let code = report(rt.block_on(crate::web_ui::run(config)));
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
                code
            }
            Command::HashPassword { name, role } => {
                report(crate::web_ui::hash_password_cli(&name, &role))
            }
            Command::MakeToken { name, role } => {
                report(crate::web_ui::make_token_cli(&name, &role))
            }
            Command::Autostop {
                config,
                daemon,
                dry_run,
            } => {
                let config = load(&config.config)?;
                init_logging(&config);
                let rt = runtime(true)?;
                report(rt.block_on(crate::autostop::run(config, daemon, dry_run)))
            }
            Command::Policy {
                config,
                command:
                    Some(PolicyCommand::SkyConfig {
                        input,
                        output,
                        token_file,
                    }),
            } => {
                let config = load(&config.config)?;
                report(crate::policy::write_sky_config(
                    &config,
                    &input,
                    &output,
                    token_file.as_deref(),
                ))
            }
            Command::Policy {
                config: a,
                command: None,
            } => {
                let config = load(&a.config)?;
                init_logging(&config);
                let rt = runtime(false)?;
                let code = report(rt.block_on(crate::policy::run(config)));
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
                code
            }
            Command::Credentials(CredentialsCommand::Check(a)) => {
                let config = load(&a.config)?;
                match crate::credentials::check(&config) {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::from(1),
                    Err(e) => report(Err(e)),
                }
            }
        })
    };
    inner().unwrap_or_else(|code| code)
}
