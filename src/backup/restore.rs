//! `skypilot-host restore PATH`: checks first (the manifest, every part's size and
//! SHA-256, the SkyPilot version, that nothing is using the state), and only then puts
//! each part back, each file replaced in one step.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::manifest::{self, Kind, Manifest, Part, Root};
use super::postgres;
use crate::config::Config;

/// Where each part goes, resolved against this host's config.
struct Step<'a> {
    part: &'a Part,
    /// The file in the backup.
    from: PathBuf,
    /// Where it goes (unused for a PostgreSQL dump).
    to: PathBuf,
}

fn root_path(config: &Config, root: Root) -> Option<PathBuf> {
    let b = &config.backup;
    match root {
        Root::SkyRuntimeDir => b.sky_runtime_dir.clone(),
        Root::SkyHome => b.sky_home.clone(),
        Root::SkyConfigFile => b.sky_config_file.clone(),
        Root::HostDatabase => Some(config.cluster_manager.database.clone()),
        Root::Postgresql => None,
    }
}

/// The backup directory of PATH (the directory, or its manifest).
fn backup_dir(path: &Path) -> PathBuf {
    if path.file_name().is_some_and(|n| n == manifest::FILE) {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.to_path_buf()
    }
}

/// Every part's file is there with its size and SHA-256; the first that is not is an
/// error naming it.
fn verify(dir: &Path, m: &Manifest) -> anyhow::Result<()> {
    for p in &m.parts {
        let file = manifest::safe_relative(&p.file, false).with_context(|| {
            format!(
                "{}: part file {:?} leaves the backup",
                dir.display(),
                p.file
            )
        })?;
        let path = dir.join(file);
        let (sha, size) = manifest::digest(&path)
            .with_context(|| format!("the backup is incomplete: cannot read {}", path.display()))?;
        if size != p.size || sha != p.sha256 {
            bail!(
                "the backup is damaged: {} is {size} bytes with SHA-256 {sha}, the manifest says \
                 {} bytes with SHA-256 {}; nothing was restored",
                path.display(),
                p.size,
                p.sha256
            );
        }
    }
    Ok(())
}

/// The processes that have a file below one of `watched` open (other users' processes
/// are visible to root only), as `pid N (command) has FILE open`.
fn users_of(watched: &[PathBuf]) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for proc in procs.filter_map(Result::ok) {
        let pid = proc.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if watched.iter().any(|w| target.starts_with(w)) {
                let cmd = std::fs::read(proc.path().join("cmdline"))
                    .map(|c| {
                        c.split(|b| *b == 0)
                            .filter(|a| !a.is_empty())
                            .take(3)
                            .map(|a| String::from_utf8_lossy(a).into_owned())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                found.push(format!("pid {pid} ({cmd}) has {} open", target.display()));
                break;
            }
        }
    }
    found
}

/// Refuses while SkyPilot's API server answers or any process holds the state open.
fn check_stopped(config: &Config, steps: &[Step<'_>]) -> anyhow::Result<()> {
    let answers = super::health(config).is_some();
    if answers {
        bail!(
            "SkyPilot's API server answers at {}: stop it first (systemctl stop \
             skypilot-api-server.service, and the skypilot-host units); nothing was restored",
            config.skypilot.api_url
        );
    }
    let mut watched: Vec<PathBuf> = steps
        .iter()
        .filter(|s| s.part.kind == Kind::Sqlite)
        .map(|s| s.to.clone())
        .collect();
    watched.sort();
    watched.dedup();
    let users = users_of(&watched);
    if !users.is_empty() {
        bail!(
            "the state is in use: {}; stop these first (systemctl stop \
             skypilot-api-server.service and the skypilot-host units); nothing was restored",
            users.join("; ")
        );
    }
    Ok(())
}

fn is_root() -> bool {
    super::current_uid() == 0
}

/// Copies `from` to a temporary file beside `to` with the part's mode (and owner, as
/// root), synced, then renames it over `to`. For a database, its old `-wal` and `-shm`
/// go first: SQLite would replay a stale log onto the restored file.
fn put_back(step: &Step<'_>) -> anyhow::Result<()> {
    let to = &step.to;
    let parent = to
        .parent()
        .with_context(|| format!("{} has no parent directory", to.display()))?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let name = to.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = parent.join(format!(".{name}.restore.{}", std::process::id()));
    let result = (|| -> anyhow::Result<()> {
        std::fs::copy(&step.from, &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(step.part.mode))
            .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
        if is_root() {
            std::os::unix::fs::chown(&tmp, Some(step.part.uid), Some(step.part.gid))
                .with_context(|| format!("cannot set the owner of {}", tmp.display()))?;
        }
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        if step.part.kind == Kind::Sqlite {
            for suffix in ["-wal", "-shm", "-journal"] {
                let side = PathBuf::from(format!("{}{suffix}", to.display()));
                match std::fs::remove_file(&side) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot remove {}", side.display()))
                    }
                }
            }
        }
        std::fs::rename(&tmp, to)
            .with_context(|| format!("cannot put {} in place", to.display()))?;
        super::sync_dir(parent)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `skypilot-host restore PATH [--dry-run]`.
pub(crate) fn run(
    config: &Config,
    path: &Path,
    dry_run: bool,
    database_uri_file: Option<&Path>,
) -> anyhow::Result<()> {
    let dir = backup_dir(path);
    let m = super::read_manifest(&dir)?;
    // Directories the restore makes are the owner's alone (SSH key directories among them).
    super::private_umask();
    let want = config.backup.skypilot_version.as_deref().with_context(|| {
        "set backup.skypilot_version to the SkyPilot version installed here: a restore \
         refuses the state of another version"
            .to_string()
    })?;
    if m.skypilot_version != want {
        bail!(
            "{} is the state of SkyPilot {}, and SkyPilot {want} is installed here \
             (backup.skypilot_version): SkyPilot migrates its databases forward only, so \
             restore it with SkyPilot {}; nothing was restored",
            dir.display(),
            m.skypilot_version,
            m.skypilot_version
        );
    }
    verify(&dir, &m)?;
    let mut steps = Vec::new();
    for p in &m.parts {
        let from = dir.join(&p.file);
        let to = if p.root == Root::Postgresql {
            PathBuf::new()
        } else {
            let root = root_path(config, p.root).with_context(|| {
                format!(
                    "the backup has {} ({}) but {} is not set here",
                    p.file,
                    p.what,
                    p.root.key()
                )
            })?;
            let rel = manifest::safe_relative(&p.path, true).with_context(|| {
                format!(
                    "{}: the path {:?} of {} leaves its root",
                    dir.display(),
                    p.path,
                    p.file
                )
            })?;
            if rel.as_os_str().is_empty() {
                root
            } else {
                root.join(rel)
            }
        };
        steps.push(Step { part: p, from, to });
    }
    let pg = if m.parts.iter().any(|p| p.root == Root::Postgresql) {
        Some(
            postgres::uri(&config.backup, database_uri_file)?.with_context(|| {
                "the backup holds a PostgreSQL dump but no database URI is set here \
             (backup.database_uri or backup.database_uri_file)"
            })?,
        )
    } else {
        None
    };
    if !is_root() {
        let me = super::current_uid();
        if let Some(p) = m
            .parts
            .iter()
            .find(|p| p.kind != Kind::PgDump && p.uid != me)
        {
            bail!(
                "{} belonged to uid {}, and this restore runs as uid {me}: run it as that user \
                 (the service user) or as root; nothing was restored",
                p.file,
                p.uid
            );
        }
    }
    let verb = if dry_run {
        "would restore"
    } else {
        "restoring"
    };
    say!(
        "{}: SkyPilot {}, taken {}, {} parts, {} bytes, every checksum verified",
        dir.display(),
        m.skypilot_version,
        crate::time::utc(crate::time::Timestamp::from_secs(m.created_at)),
        m.parts.len(),
        m.total_size()
    );
    if !dry_run {
        check_stopped(config, &steps)?;
    }
    for s in &steps {
        match s.part.kind {
            Kind::PgDump => {
                let target = pg.as_ref().context("no database URI")?;
                say!(
                    "  {verb} {} into {target} with pg_restore --clean",
                    s.part.what
                );
                if !dry_run {
                    postgres::restore(&config.backup.pg_restore, target, &s.from)?;
                }
            }
            Kind::Sqlite | Kind::File => {
                say!(
                    "  {verb} {} to {} ({} bytes, mode {:04o}, uid {}, gid {})",
                    s.part.what,
                    s.to.display(),
                    s.part.size,
                    s.part.mode,
                    s.part.uid,
                    s.part.gid
                );
                if !dry_run {
                    put_back(s)?;
                }
            }
        }
    }
    if dry_run {
        say!("dry run: nothing was changed");
    } else {
        say!(
            "restored {} parts; start SkyPilot's API server and the skypilot-host units",
            steps.len()
        );
    }
    Ok(())
}
