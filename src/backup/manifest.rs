//! The manifest of a backup (`manifest.json`, written last): what each part is, where it
//! goes back to, its size and SHA-256. A backup without one is incomplete.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The manifest's own format; a restore refuses any other.
pub(crate) const FORMAT: u32 = 1;
pub(crate) const FILE: &str = "manifest.json";
/// Backups are directories named `PREFIX` + UTC time (`20261206T034500Z`).
pub(crate) const PREFIX: &str = "skypilot-backup-";

/// Where a part goes back to: a root the restoring host's config names, plus a relative
/// path, so a backup restores onto another host of the same layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Root {
    /// SkyPilot's SKY_RUNTIME_DIR (`backup.sky_runtime_dir`): its SQLite databases.
    SkyRuntimeDir,
    /// The API server's HOME (`backup.sky_home`): SSH keys, user hash.
    SkyHome,
    /// SkyPilot's config.yaml (`backup.sky_config_file`), where it is not in the Nix store.
    SkyConfigFile,
    /// The host database (`cluster_manager.database`).
    HostDatabase,
    /// SkyPilot's PostgreSQL database (`backup.database_uri[_file]`).
    Postgresql,
}

impl Root {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Root::SkyRuntimeDir => "backup.sky_runtime_dir",
            Root::SkyHome => "backup.sky_home",
            Root::SkyConfigFile => "backup.sky_config_file",
            Root::HostDatabase => "cluster_manager.database",
            Root::Postgresql => "backup.database_uri or backup.database_uri_file",
        }
    }
}

/// How a part was taken, and so how it is put back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A consistent copy of a live SQLite database (`VACUUM INTO`).
    Sqlite,
    /// A plain file (SSH keys, config).
    File,
    /// `pg_dump --format=custom` of SkyPilot's PostgreSQL database.
    PgDump,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Part {
    /// Its file in the backup, relative to the backup's directory.
    pub(crate) file: String,
    pub(crate) kind: Kind,
    pub(crate) root: Root,
    /// Where it goes back to, relative to `root` (empty: the root itself is the file).
    pub(crate) path: String,
    /// What it is, for people.
    pub(crate) what: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
    /// The source's mode, owner and group, restored with it.
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) name: String,
    /// Unix seconds when the backup started.
    pub(crate) created_at: i64,
    /// The SkyPilot version whose state this is (a restore needs the same).
    pub(crate) skypilot_version: String,
    pub(crate) skypilot_host_version: String,
    pub(crate) seconds: f64,
    pub(crate) parts: Vec<Part>,
}

impl Manifest {
    pub(crate) fn total_size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }
}

/// A relative path that stays below its root: no `..`, no absolute path, not empty
/// unless `allow_empty` (a manifest is input; a crafted one must not write elsewhere).
pub(crate) fn safe_relative(path: &str, allow_empty: bool) -> Option<PathBuf> {
    if path.is_empty() {
        return allow_empty.then(PathBuf::new);
    }
    let p = Path::new(path);
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_path_buf())
}

/// SHA-256 (hex) and size of a file, read in blocks.
pub(crate) fn digest(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_path_stays_below_its_root() {
        assert_eq!(
            safe_relative(".sky/state.db", false),
            Some(PathBuf::from(".sky/state.db"))
        );
        assert_eq!(safe_relative("", true), Some(PathBuf::new()));
        assert_eq!(safe_relative("", false), None);
        assert_eq!(safe_relative("../etc/passwd", false), None);
        assert_eq!(safe_relative(".sky/../../x", false), None);
        assert_eq!(safe_relative("/etc/passwd", false), None);
        assert_eq!(safe_relative("./x", false), None);
    }

    #[test]
    fn digest_is_sha256_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            digest(&f).unwrap(),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string(),
                3
            )
        );
    }
}
