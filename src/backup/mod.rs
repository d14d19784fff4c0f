//! `skypilot-host backup` and `restore`: SkyPilot's state and the host database, taken
//! while SkyPilot keeps serving, and put back while it is stopped.
//!
//! What SkyPilot 0.14.1 keeps (read from its code): under SKY_RUNTIME_DIR `.sky/*.db`
//! (`state.db`: clusters, handles, provision YAMLs, users, roles, SSH keys;
//! `spot_jobs.db`: managed jobs; `serve/services.db`; `kv_cache.db`;
//! `api_server/requests.db`: request history, taken only with `backup.request_history`),
//! or the same tables in PostgreSQL with a database URI; under its HOME `.sky/clients/*/ssh/`
//! (each person's SSH key to their clusters), `.sky/ssh_keys/` (SSH node pools' keys),
//! `.sky/generated/` (older provision YAMLs), `.sky/serve/`, `.sky/user_hash`; and its
//! config.yaml where it is not in the Nix store.
//!
//! A backup is a directory `skypilot-backup-<UTC>` of files mode 0600 with a
//! `manifest.json` written last; it is assembled as `.partial-<name>` and renamed into
//! place whole. It holds secrets (the SSH keys that reach every cluster).

/// Prints a line of the report. A closed stdout (`| head`) neither stops the work nor
/// panics: the backup or restore is what matters, its report is for people.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub(crate) mod manifest;
mod postgres;
mod restore;

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::config::{BackupConfig, Config};
use crate::time::Timestamp;
use manifest::{Kind, Manifest, Part, Root};

pub(crate) use restore::run as run_restore;

/// Checks a database URI; `Ok(true)` when it holds a password.
pub(crate) fn parse_database_uri(uri: &str) -> Result<bool, String> {
    postgres::parse(uri).map(|t| t.has_password())
}

/// What `skypilot-host backup` was asked on its command line.
#[derive(Debug, Default)]
pub(crate) struct BackupArgs {
    pub(crate) directory: Option<PathBuf>,
    pub(crate) keep: Option<usize>,
    pub(crate) database_uri_file: Option<PathBuf>,
}

/// A part to take: where it is and what it is.
#[derive(Debug, Clone)]
struct Source {
    root: Root,
    /// Relative to the root.
    rel: PathBuf,
    abs: PathBuf,
    kind: Kind,
    what: String,
}

/// Directories under the HOME's `.sky/` whose files are taken, and single files.
const HOME_DIRS: [&str; 4] = [
    ".sky/clients",
    ".sky/ssh_keys",
    ".sky/generated",
    ".sky/serve",
];
const HOME_FILES: [&str; 3] = [".sky/user_hash", ".ssh/sky-key", ".ssh/sky-key.pub"];
/// Directories under SKY_RUNTIME_DIR's `.sky/` that hold no state worth keeping.
const RUNTIME_SKIP: [&str; 4] = ["catalogs", "locks", "request_logs", "logs"];

fn what_of_database(rel: &Path) -> String {
    let name = rel.file_name().and_then(OsStr::to_str).unwrap_or_default();
    match name {
        "state.db" => "SkyPilot's state: clusters and their handles, users and roles, SSH keys",
        "spot_jobs.db" => "SkyPilot's managed jobs",
        "services.db" => "SkyPilot's services (SkyServe)",
        "kv_cache.db" => "SkyPilot's key-value cache",
        "requests.db" => "SkyPilot's request history",
        "config.db" => "SkyPilot's config kept in its database",
        _ => "a SQLite database of SkyPilot's",
    }
    .to_string()
}

/// Whether `path` starts with SQLite's header (an empty file is not a database yet).
fn is_sqlite(path: &Path) -> std::io::Result<bool> {
    use std::io::Read as _;
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    Ok(n == 16 && &head == b"SQLite format 3\0")
}

/// Every regular file below `dir`, sorted; lock files and links left out.
fn files_below(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    paths.sort();
    for p in paths {
        let meta = std::fs::symlink_metadata(&p)
            .with_context(|| format!("cannot read {}", p.display()))?;
        let name = p.file_name().and_then(OsStr::to_str).unwrap_or_default();
        if meta.is_dir() {
            files_below(&p, out)?;
        } else if meta.is_file() && !name.ends_with(".lock") {
            out.push(p);
        }
    }
    Ok(())
}

/// The SQLite databases under SKY_RUNTIME_DIR's `.sky/`.
fn runtime_databases(runtime: &Path, request_history: bool) -> anyhow::Result<Vec<Source>> {
    let mut found = Vec::new();
    let mut stack = vec![runtime.join(".sky")];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for e in entries {
            let p = e
                .with_context(|| format!("cannot list {}", dir.display()))?
                .path();
            let name = p.file_name().and_then(OsStr::to_str).unwrap_or_default();
            let meta = std::fs::symlink_metadata(&p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            if meta.is_dir() {
                if !RUNTIME_SKIP.contains(&name) {
                    stack.push(p);
                }
            } else if meta.is_file()
                && name.ends_with(".db")
                && (request_history || name != "requests.db")
                && is_sqlite(&p).with_context(|| format!("cannot read {}", p.display()))?
            {
                let rel = p.strip_prefix(runtime).unwrap_or(&p).to_path_buf();
                found.push(Source {
                    root: Root::SkyRuntimeDir,
                    what: what_of_database(&rel),
                    rel,
                    abs: p,
                    kind: Kind::Sqlite,
                });
            }
        }
    }
    found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(found)
}

/// Everything a backup takes, from the config.
fn sources(config: &Config) -> anyhow::Result<Vec<Source>> {
    let b = &config.backup;
    let mut out = Vec::new();
    if let Some(runtime) = &b.sky_runtime_dir {
        out.extend(runtime_databases(runtime, b.request_history)?);
    }
    if let Some(home) = &b.sky_home {
        let mut files = Vec::new();
        for d in HOME_DIRS {
            files_below(&home.join(d), &mut files)?;
        }
        for f in HOME_FILES {
            let p = home.join(f);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                files.push(p);
            }
        }
        for abs in files {
            let rel = abs.strip_prefix(home).unwrap_or(&abs).to_path_buf();
            let what = if rel.to_string_lossy().contains("ssh") {
                "an SSH key SkyPilot reaches clusters with"
            } else {
                "a file of SkyPilot's"
            };
            out.push(Source {
                root: Root::SkyHome,
                rel,
                abs,
                kind: Kind::File,
                what: what.to_string(),
            });
        }
    }
    if let Some(file) = &b.sky_config_file {
        // The module links config.yaml into the store: that one is rebuilt, not restored
        // (a copy would replace the link).
        let in_store = std::fs::canonicalize(file).is_ok_and(|p| p.starts_with("/nix/store"))
            || std::fs::symlink_metadata(file).is_ok_and(|m| m.file_type().is_symlink());
        if !in_store && file.exists() {
            out.push(Source {
                root: Root::SkyConfigFile,
                rel: PathBuf::new(),
                abs: file.clone(),
                kind: Kind::File,
                what: "SkyPilot's config.yaml".to_string(),
            });
        }
    }
    let host_db = &config.cluster_manager.database;
    if host_db.exists() {
        out.push(Source {
            root: Root::HostDatabase,
            rel: PathBuf::new(),
            abs: host_db.clone(),
            kind: Kind::Sqlite,
            what: "the host database: fleet history, audit log, sessions".to_string(),
        });
    }
    Ok(out)
}

/// `backup-20261206T034500Z` style UTC time of `t`.
fn stamp(t: Timestamp) -> String {
    let secs = t.floor().whole_secs().unwrap_or(0);
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(format).ok())
        .unwrap_or_else(|| secs.to_string())
}

/// The name of a new backup: `PREFIX` + UTC time, sorting after every backup already in
/// `dir` (pruning removes the first names in order): a backup within the same second as
/// the newest, or with the clock set back, is named after it with a suffix `-002`, `-003`…
fn next_name(dir: &Path, now: Timestamp) -> anyhow::Result<String> {
    let base = format!("{}{}", manifest::PREFIX, stamp(now));
    let newest = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(manifest::PREFIX))
        .max();
    Ok(match newest {
        Some(n) if n >= base => match n.rsplit_once('-') {
            Some((stem, k)) if k.len() == 3 && k.bytes().all(|b| b.is_ascii_digit()) => {
                let k: u32 = k.parse().unwrap_or(1);
                format!("{stem}-{:03}", k + 1)
            }
            _ => format!("{n}-002"),
        },
        _ => base,
    })
}

/// A consistent copy of the live SQLite database `src` at `dest`: `VACUUM INTO` reads
/// one snapshot (SkyPilot keeps writing meanwhile) and writes a compact database.
fn copy_sqlite(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open_with_flags(
        src,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the SQLite database {}", src.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .with_context(|| format!("{}", src.display()))?;
    let dest_text = dest
        .to_str()
        .with_context(|| format!("{} is not UTF-8", dest.display()))?;
    conn.execute("VACUUM INTO ?1", [dest_text])
        .with_context(|| format!("cannot copy the SQLite database {}", src.display()))?;
    Ok(())
}

/// The lock that keeps two backups (the timer's and a manual one) apart.
struct DirLock(#[allow(dead_code, reason = "held for its flock until dropped")] std::fs::File);

#[allow(unsafe_code, reason = "flock(2) has no safe wrapper in std")]
fn lock_directory(dir: &Path) -> anyhow::Result<DirLock> {
    use std::os::fd::AsRawFd as _;
    let path = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: a file descriptor this function owns, and plain flags.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "another backup is running in {} (it holds {})",
            dir.display(),
            path.display()
        );
    }
    Ok(DirLock(f))
}

/// The complete backups in `dir` (with a manifest), oldest first.
pub(crate) fn complete_backups(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with(manifest::PREFIX))
                && p.join(manifest::FILE).is_file()
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The newest complete backup's manifest in `dir`, if any.
pub(crate) fn latest(dir: &Path) -> anyhow::Result<Option<(PathBuf, Manifest)>> {
    let all = match complete_backups(dir) {
        Ok(a) => a,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let Some(newest) = all.last() else {
        return Ok(None);
    };
    let m = read_manifest(newest)?;
    Ok(Some((newest.clone(), m)))
}

pub(crate) fn read_manifest(backup: &Path) -> anyhow::Result<Manifest> {
    let path = backup.join(manifest::FILE);
    let text = crate::files::read_regular_text(&path, 16 << 20)
        .map_err(|e| anyhow::anyhow!("cannot read {}: it {e}", path.display()))?;
    let m: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a backup manifest", path.display()))?;
    if m.format != manifest::FORMAT {
        bail!(
            "{}: format {} (this skypilot-host reads format {})",
            path.display(),
            m.format,
            manifest::FORMAT
        );
    }
    Ok(m)
}

/// The SkyPilot version of the state being backed up: what its API server says, checked
/// against `backup.skypilot_version` when both are known.
fn skypilot_version(config: &Config) -> anyhow::Result<String> {
    let configured = config.backup.skypilot_version.clone();
    let reported = health(config).and_then(|h| h.version);
    match (configured, reported) {
        (Some(c), Some(r)) if c != r => bail!(
            "backup.skypilot_version is {c} but SkyPilot's API server at {} reports {r}",
            config.skypilot.api_url
        ),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => bail!(
            "cannot tell SkyPilot's version: set backup.skypilot_version, or run the backup \
             while SkyPilot's API server at {} answers",
            config.skypilot.api_url
        ),
    }
}

/// SkyPilot's API server's health answer, or `None` when it does not answer.
pub(crate) fn health(config: &Config) -> Option<crate::skypilot::Health> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let client = crate::skypilot::Client::new(&config.skypilot).ok()?;
        client.health().await.ok()
    })
}

/// Sets the process umask so every file and directory the backup makes is the owner's
/// alone.
#[allow(unsafe_code, reason = "umask(2) has no safe wrapper in std")]
pub(crate) fn private_umask() {
    // SAFETY: umask only sets the process's file mode mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// `skypilot-host backup`: one backup into the configured directory, then prunes.
pub(crate) fn run_backup(config: &Config, args: BackupArgs, now: Timestamp) -> anyhow::Result<()> {
    let b: &BackupConfig = &config.backup;
    let dir = args
        .directory
        .or_else(|| b.directory.clone())
        .context("no backup directory: set backup.directory or pass --directory")?;
    let keep = args.keep.unwrap_or(b.keep);
    private_umask();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the backup directory {}", dir.display()))?;
    let _lock = lock_directory(&dir)?;
    let version = skypilot_version(config)?;
    let started = Instant::now();
    let name = next_name(&dir, now)?;
    let final_dir = dir.join(&name);
    // What a crash left behind (under the lock, no backup is running).
    for p in std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
    {
        if p.file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| n.starts_with(".partial-"))
        {
            std::fs::remove_dir_all(&p)
                .with_context(|| format!("cannot remove the incomplete {}", p.display()))?;
        }
    }
    let work = dir.join(format!(".partial-{name}"));
    std::fs::create_dir(&work).with_context(|| format!("cannot create {}", work.display()))?;

    let mut parts = Vec::new();
    for (i, s) in sources(config)?.into_iter().enumerate() {
        let file_name = s
            .abs
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or("part")
            .to_string();
        let file = format!("{i:03}-{file_name}");
        let dest = work.join(&file);
        let meta = std::fs::metadata(&s.abs)
            .with_context(|| format!("cannot read {}", s.abs.display()))?;
        match s.kind {
            Kind::Sqlite => copy_sqlite(&s.abs, &dest)?,
            Kind::File => {
                std::fs::copy(&s.abs, &dest)
                    .with_context(|| format!("cannot copy {}", s.abs.display()))?;
            }
            Kind::PgDump => bail!(
                "{}: a file cannot be taken as a PostgreSQL dump",
                s.abs.display()
            ),
        }
        parts.push(finish_part(&work, file, &s, &meta)?);
    }
    if let Some(uri) = postgres::uri(b, args.database_uri_file.as_deref())? {
        let file = format!("{:03}-skypilot.pgdump", parts.len());
        let dest = work.join(&file);
        postgres::dump(&b.pg_dump, &uri, &dest)?;
        let (sha256, size) =
            manifest::digest(&dest).with_context(|| format!("cannot read {}", dest.display()))?;
        parts.push(Part {
            file,
            kind: Kind::PgDump,
            root: Root::Postgresql,
            path: String::new(),
            what: "SkyPilot's state in PostgreSQL (pg_dump, custom format)".to_string(),
            size,
            sha256,
            mode: 0o600,
            uid: current_uid(),
            gid: current_gid(),
        });
    }
    if parts.is_empty() {
        bail!(
            "nothing to back up: set backup.sky_runtime_dir, backup.sky_home or a database URI \
             (and cluster_manager.database exists?)"
        );
    }
    let m = Manifest {
        format: manifest::FORMAT,
        name: name.clone(),
        created_at: now.floor().whole_secs().unwrap_or(0),
        skypilot_version: version,
        skypilot_host_version: env!("CARGO_PKG_VERSION").to_string(),
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        parts,
    };
    let text = serde_json::to_vec_pretty(&m)?;
    crate::files::write_atomic(
        &work.join(manifest::FILE),
        &text,
        0o600,
        crate::files::Place::Replace,
    )
    .with_context(|| format!("cannot write {}/{}", work.display(), manifest::FILE))?;
    sync_dir(&work)?;
    std::fs::rename(&work, &final_dir).with_context(|| {
        format!(
            "cannot rename {} to {}",
            work.display(),
            final_dir.display()
        )
    })?;
    sync_dir(&dir)?;
    say!(
        "{}: {} parts, {} bytes, SkyPilot {}, in {:.2} s",
        final_dir.display(),
        m.parts.len(),
        m.total_size(),
        m.skypilot_version,
        m.seconds
    );
    for p in &m.parts {
        say!("  {:>12}  {}  ({})", p.size, p.file, p.what);
    }
    let pruned = prune(&dir, keep)?;
    for p in pruned {
        say!("removed the older backup {}", p.display());
    }
    Ok(())
}

fn finish_part(
    work: &Path,
    file: String,
    s: &Source,
    meta: &std::fs::Metadata,
) -> anyhow::Result<Part> {
    use std::os::unix::fs::PermissionsExt as _;
    let dest = work.join(&file);
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", dest.display()))?;
    let (sha256, size) =
        manifest::digest(&dest).with_context(|| format!("cannot read {}", dest.display()))?;
    Ok(Part {
        file,
        kind: s.kind,
        root: s.root,
        path: s.rel.to_string_lossy().into_owned(),
        what: s.what.clone(),
        size,
        sha256,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

#[allow(unsafe_code, reason = "getuid(2) has no safe wrapper in std")]
pub(crate) fn current_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::geteuid() }
}

#[allow(unsafe_code, reason = "getgid(2) has no safe wrapper in std")]
pub(crate) fn current_gid() -> u32 {
    // SAFETY: getegid cannot fail.
    unsafe { libc::getegid() }
}

pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Removes the oldest complete backups beyond `keep` (0: keep all); returns them.
fn prune(dir: &Path, keep: usize) -> anyhow::Result<Vec<PathBuf>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let all = complete_backups(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let excess = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for p in all.into_iter().take(excess) {
        std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        removed.push(p);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time() {
        assert_eq!(
            stamp(Timestamp::from_secs(1_796_528_700)),
            "20261206T034500Z"
        );
        assert!(stamp(Timestamp::from_secs(9)) < stamp(Timestamp::from_secs(10)));
    }

    #[test]
    fn a_new_name_sorts_after_every_backup_there() {
        let dir = tempfile::tempdir().unwrap();
        let t = Timestamp::from_secs(1_796_528_700);
        let mut made = Vec::new();
        // Four in the same second, with the first pruned meanwhile (as keep = 2 would),
        // then one with the clock set back an hour.
        for i in 0..5 {
            let at = if i == 4 { t.minus_secs(3600.0) } else { t };
            let n = next_name(dir.path(), at).unwrap();
            std::fs::create_dir(dir.path().join(&n)).unwrap();
            if i == 2 {
                std::fs::remove_dir(dir.path().join(&made[0])).unwrap();
            }
            made.push(n);
        }
        assert_eq!(
            made,
            [
                "skypilot-backup-20261206T034500Z",
                "skypilot-backup-20261206T034500Z-002",
                "skypilot-backup-20261206T034500Z-003",
                "skypilot-backup-20261206T034500Z-004",
                "skypilot-backup-20261206T034500Z-005",
            ]
        );
        let mut sorted = made.clone();
        sorted.sort();
        assert_eq!(sorted, made, "names sort in the order they were made");
        let later = next_name(dir.path(), t.plus_secs(1.0)).unwrap();
        assert_eq!(later, "skypilot-backup-20261206T034501Z");
    }

    #[test]
    fn prune_keeps_the_newest_complete_backups_only() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"] {
            let d = dir.path().join(format!("{}{n}", manifest::PREFIX));
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join(manifest::FILE), "{}").unwrap();
        }
        // Incomplete: no manifest; never counted, never removed by prune.
        let partial = dir
            .path()
            .join(format!("{}20250101T000000Z", manifest::PREFIX));
        std::fs::create_dir(&partial).unwrap();
        let removed = prune(dir.path(), 2).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(removed[0].ends_with("skypilot-backup-20260101T000000Z"));
        assert_eq!(complete_backups(dir.path()).unwrap().len(), 2);
        assert!(partial.exists());
        assert!(prune(dir.path(), 0).unwrap().is_empty());
    }

    #[test]
    fn a_live_wal_database_is_copied_consistently() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("state.db");
        let writer = rusqlite::Connection::open(&src).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t(x INTEGER);
                 INSERT INTO t VALUES (1), (2);",
            )
            .unwrap();
        // Uncommitted rows of an open transaction are not in the copy.
        writer
            .execute_batch("BEGIN; INSERT INTO t VALUES (3);")
            .unwrap();
        let dest = dir.path().join("copy.db");
        copy_sqlite(&src, &dest).unwrap();
        writer.execute_batch("COMMIT;").unwrap();
        let copy = rusqlite::Connection::open(&dest).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
        assert!(is_sqlite(&dest).unwrap());
        assert!(!dir.path().join("copy.db-wal").exists());
    }

    #[test]
    fn runtime_databases_skip_request_history_and_what_is_not_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let sky = dir.path().join(".sky");
        std::fs::create_dir_all(sky.join("serve")).unwrap();
        std::fs::create_dir_all(sky.join("api_server")).unwrap();
        std::fs::create_dir_all(sky.join("catalogs")).unwrap();
        for db in [
            "state.db",
            "serve/services.db",
            "api_server/requests.db",
            "catalogs/x.db",
        ] {
            rusqlite::Connection::open(sky.join(db))
                .unwrap()
                .execute_batch("CREATE TABLE t(x)")
                .unwrap();
        }
        std::fs::write(sky.join("gauge_live.db"), b"not sqlite at all").unwrap();
        let names = |v: Vec<Source>| -> Vec<String> {
            v.iter()
                .map(|s| s.rel.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(runtime_databases(dir.path(), false).unwrap()),
            [".sky/serve/services.db", ".sky/state.db"]
        );
        assert_eq!(
            names(runtime_databases(dir.path(), true).unwrap()),
            [
                ".sky/api_server/requests.db",
                ".sky/serve/services.db",
                ".sky/state.db"
            ]
        );
    }
}
