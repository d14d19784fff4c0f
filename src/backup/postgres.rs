//! SkyPilot's state in PostgreSQL: `pg_dump --format=custom` and `pg_restore`, with the
//! URI SkyPilot is given (SQLAlchemy's `postgresql+psycopg2://…` is libpq's
//! `postgresql://…`). A password never goes on a command line (other users see those): it
//! is taken out of the URI and handed over in `PGPASSWORD`.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::config::BackupConfig;

/// A libpq connection URI without its password, and the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) uri: String,
    password: Option<String>,
}

impl Target {
    pub(crate) fn has_password(&self) -> bool {
        self.password.is_some()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Reads `postgresql[+driver]://[user[:password]@][host][:port]/db[?params]`.
pub(crate) fn parse(uri: &str) -> Result<Target, String> {
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| {
        "expected a URI postgresql://[user[:password]@][host][:port]/database".to_string()
    })?;
    let base = scheme.split('+').next().unwrap_or_default();
    if base != "postgresql" && base != "postgres" {
        return Err(format!(
            "expected a postgresql:// URI (SkyPilot's database), not {scheme}://"
        ));
    }
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if tail.len() <= 1 {
        return Err("the URI names no database (…/DATABASE)".to_string());
    }
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pw)) => (Some(user), Some(pw)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    let password = password
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "the URI's password is not UTF-8".to_string())
        })
        .transpose()?;
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    Ok(Target {
        uri: format!("postgresql://{user}{host}{tail}"),
        password,
    })
}

/// The database URI of the config or of `--database-uri-file`, if any.
pub(crate) fn uri(b: &BackupConfig, file: Option<&Path>) -> anyhow::Result<Option<Target>> {
    let text = match (file.or(b.database_uri_file.as_deref()), &b.database_uri) {
        (Some(f), _) => crate::files::read_regular_text(f, 64 << 10)
            .map_err(|e| {
                anyhow::anyhow!("cannot read the database URI file {}: it {e}", f.display())
            })?
            .trim()
            .to_string(),
        (None, Some(u)) => u.clone(),
        (None, None) => return Ok(None),
    };
    parse(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("backup's database URI: {e}"))
}

fn run(mut cmd: Command, what: &str, target: &Target) -> anyhow::Result<()> {
    if let Some(pw) = &target.password {
        cmd.env("PGPASSWORD", pw);
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {program} (backup.pg_dump / backup.pg_restore)"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{program} failed to {what} {target} ({}): {}",
            out.status,
            tail.join(" / ")
        );
    }
    Ok(())
}

/// `pg_dump --format=custom` of the database into `dest`.
pub(crate) fn dump(pg_dump: &Path, target: &Target, dest: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new(pg_dump);
    cmd.arg("--format=custom")
        .arg("--no-password")
        .arg("--file")
        .arg(dest)
        .arg("--dbname")
        .arg(&target.uri);
    run(cmd, "dump", target)
}

/// `pg_restore` of `dump` into the database, replacing what it holds, in one
/// transaction (a failure leaves the database as it was).
pub(crate) fn restore(pg_restore: &Path, target: &Target, dump: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new(pg_restore);
    cmd.arg("--clean")
        .arg("--if-exists")
        .arg("--no-owner")
        .arg("--single-transaction")
        .arg("--exit-on-error")
        .arg("--no-password")
        .arg("--dbname")
        .arg(&target.uri)
        .arg(dump);
    run(cmd, "restore into", target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_uris_become_libpq_uris_without_the_password() {
        let t = parse("postgresql+psycopg2://skypilot@/skypilot?host=/run/postgresql").unwrap();
        assert_eq!(
            t.uri,
            "postgresql://skypilot@/skypilot?host=/run/postgresql"
        );
        assert_eq!(t.password, None);
        let t = parse("postgresql://sky:p%40ss:w@db.example:5432/sky").unwrap();
        assert_eq!(t.uri, "postgresql://sky@db.example:5432/sky");
        assert_eq!(t.password.as_deref(), Some("p@ss:w"));
        assert!(!t.to_string().contains("p@ss"));
        assert!(parse("mysql://x@y/z")
            .unwrap_err()
            .contains("postgresql://"));
        assert!(parse("postgresql://x@y")
            .unwrap_err()
            .contains("no database"));
        assert!(parse("not a uri").is_err());
    }
}
