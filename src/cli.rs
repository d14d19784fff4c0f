//! Command line: one subcommand per role or check. `main` only parses and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, WebUiOverrides};
use crate::runner::Threads;

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
        /// Also list clusters (with --jobs: jobs; with --services: services) that
        /// SkyPilot no longer lists (GONE), and with --jobs, jobs that ended.
        #[arg(long)]
        all: bool,
        /// Managed jobs (`sky jobs launch`) instead of clusters.
        #[arg(long, conflicts_with = "services")]
        jobs: bool,
        /// SkyServe services (`sky serve up`) instead of clusters.
        #[arg(long)]
        services: bool,
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
    /// Print the audit log: every action taken on a cluster, newest first (UTC times).
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        /// Only entries of the last SECONDS.
        #[arg(long, value_name = "SECONDS")]
        since: Option<u64>,
        /// At most this many entries (the latest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON for scripts instead of lines (times as Unix seconds).
        #[arg(long)]
        json: bool,
    },
    /// Serve the web console and the authenticated gateway to SkyPilot.
    WebUi {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        overrides: WebUiOverrides,
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
    /// Back up SkyPilot's state (its SQLite databases or PostgreSQL, the SSH keys that
    /// reach its clusters) and the host database while SkyPilot keeps serving: one
    /// directory `skypilot-backup-<UTC>` with a manifest, then the oldest pruned.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// The backup directory [default: backup.directory].
        #[arg(long, value_name = "DIR")]
        directory: Option<PathBuf>,
        /// Backups kept [default: backup.keep; 0: all].
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        /// Overrides backup.database_uri_file (the module passes systemd's credential here).
        #[arg(long, value_name = "FILE")]
        database_uri_file: Option<PathBuf>,
    },
    /// Restore a backup made by `backup`: checks its manifest, every checksum and the
    /// SkyPilot version first, refuses while SkyPilot's API server or a role runs, then
    /// puts each part back.
    Restore {
        #[command(flatten)]
        config: ConfigArg,
        /// The backup's directory (or its manifest.json).
        path: PathBuf,
        /// Print what would be restored, after the checks; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Overrides backup.database_uri_file.
        #[arg(long, value_name = "FILE")]
        database_uri_file: Option<PathBuf>,
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

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// A long-running role: its config with logging set up, run to its end on its runtime.
fn role<F>(config: Config, threads: Threads, run: impl FnOnce(Config) -> F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    init_logging(&config);
    report(crate::runner::block_on(threads, run(config)))
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    dispatch(cli.command).unwrap_or_else(|code| code)
}

fn dispatch(command: Command) -> Result<ExitCode, ExitCode> {
    use crate::{audit_log, autostop, cluster_manager, monitor, policy, web_ui};
    Ok(match command {
        Command::CheckConfig { file } => {
            load(&file)?;
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Command::ClusterManager(a) => role(load(&a.config)?, Threads::One, cluster_manager::run),
        Command::Monitor(a) => role(load(&a.config)?, Threads::Two, monitor::run),
        Command::WebUi { config, overrides } => {
            let config = load(&config.config)?.with_overrides(overrides);
            role(config, Threads::Two, web_ui::run)
        }
        Command::Autostop {
            config,
            daemon,
            dry_run,
        } => role(load(&config.config)?, Threads::One, |c| {
            autostop::run(c, daemon, dry_run)
        }),
        Command::Policy {
            config,
            command: None,
        } => role(load(&config.config)?, Threads::Two, policy::run),
        Command::Policy {
            config,
            command:
                Some(PolicyCommand::SkyConfig {
                    input,
                    output,
                    token_file,
                }),
        } => report(policy::write_sky_config(
            &load(&config.config)?,
            &input,
            &output,
            token_file.as_deref(),
        )),
        Command::Status {
            config,
            json,
            all,
            jobs,
            services,
        } => {
            let config = load(&config.config)?;
            if jobs {
                report(crate::status::run_jobs(&config, json, all))
            } else if services {
                report(crate::status::run_services(&config, json, all))
            } else {
                report(crate::status::run(&config, json, all))
            }
        }
        Command::Audit {
            config,
            since,
            limit,
            json,
        } => report(audit_log::run(&load(&config.config)?, since, limit, json)),
        Command::DebugAuditWriter { config, count } => {
            report(audit_log::debug_writer(&load(&config.config)?, count))
        }
        Command::Backup {
            config,
            directory,
            keep,
            database_uri_file,
        } => {
            let config = load(&config.config)?;
            init_logging(&config);
            let now = crate::time::Clock::now(&crate::time::SystemClock);
            report(crate::backup::run_backup(
                &config,
                crate::backup::BackupArgs {
                    directory,
                    keep,
                    database_uri_file,
                },
                now,
            ))
        }
        Command::Restore {
            config,
            path,
            dry_run,
            database_uri_file,
        } => {
            let config = load(&config.config)?;
            init_logging(&config);
            report(crate::backup::run_restore(
                &config,
                &path,
                dry_run,
                database_uri_file.as_deref(),
            ))
        }
        Command::SkyConfig(c) => report(sky_config(c)),
        Command::HashPassword { name, role } => report(web_ui::hash_password_cli(&name, &role)),
        Command::MakeToken { name, role } => report(web_ui::make_token_cli(&name, &role)),
        Command::Credentials(CredentialsCommand::Check(a)) => {
            match crate::credentials::check(&load(&a.config)?) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => report(Err(e)),
            }
        }
    })
}

fn sky_config(command: SkyConfigCommand) -> anyhow::Result<()> {
    match command {
        SkyConfigCommand::Render {
            input,
            output,
            schema,
            policy_out,
            launch_defaults,
        } => crate::sky_config::run_render(
            &input,
            &output,
            &crate::sky_config::RenderOptions {
                schema,
                policy_out,
                launch_defaults,
            },
        ),
        SkyConfigCommand::SeedKeys => {
            let table: std::collections::BTreeMap<&str, &str> =
                crate::sky_config::compat::SEED_KEYS.into_iter().collect();
            println!("{}", serde_json::to_string_pretty(&table)?);
            Ok(())
        }
        SkyConfigCommand::Check { file, schema } => {
            crate::sky_config::run_check(&file, schema.as_deref())
        }
    }
}
