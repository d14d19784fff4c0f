//! Who may log in: the users file (people, argon2id password hashes) and the tokens file
//! (scripts, bearer tokens). Both live outside the Nix store and are read once at start.
//!
//! - Users file, one per line: `NAME:ARGON2ID-PHC-HASH:ROLE` (`skypilot-host
//!   hash-password NAME --role ROLE` prints such a line).
//! - Tokens file, one per line: `NAME:$blake2b$HEX:ROLE`, HEX being the BLAKE2b-256 digest
//!   of the token (`skypilot-host make-token NAME --role ROLE` prints a token and its
//!   line). A token is 256 random bits, so a fast digest is as good as a slow hash.
//!
//! Blank lines and lines starting with `#` are ignored. Roles are SkyPilot's: `admin`,
//! `user` (launches; acts on what they own), `viewer` (reads only). Errors name the file
//! and the line.
//!
//! Before this release `viewer` could act on its own clusters (today's `user`). A file
//! that lists a `viewer` without the line [`ROLES_MARKER`] gets a warning per such line,
//! naming it: the meaning changed towards less access, never silently.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};

use super::identity::Role;

/// Largest users or tokens file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Longest user name.
pub(crate) const MAX_NAME_CHARS: usize = 64;
/// Shortest password `hash-password` accepts.
pub(crate) const MIN_PASSWORD_CHARS: usize = 8;
/// Prefix of our API tokens (never `sky_`, which is SkyPilot's own).
pub(crate) const TOKEN_PREFIX: &str = "shtok_";
const TOKEN_DIGEST_PREFIX: &str = "$blake2b$";
/// A comment line that says a users or tokens file means `viewer` as read-only (the
/// meaning since roles became SkyPilot's three), which silences the warning.
pub(crate) const ROLES_MARKER: &str = "# roles: admin user viewer";

/// A person from the users file.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) name: String,
    /// The argon2id PHC string.
    pub(crate) hash: String,
    pub(crate) role: Role,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("hash", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// An error in a users or tokens file: the file, the line (0: the whole file) and what
/// was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) struct FileError {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: line {}: {}",
                self.file.display(),
                self.line,
                self.message
            )
        }
    }
}

/// The users and tokens the web UI accepts.
#[derive(Default)]
pub(crate) struct Users {
    users: HashMap<String, User>,
    /// Token digest -> (name, role).
    tokens: HashMap<[u8; 32], (String, Role)>,
    /// What the files say that is allowed but may not mean what its author meant (see
    /// the module's documentation), one sentence each naming the file and line.
    pub(crate) warnings: Vec<String>,
}

/// The warnings of a users or tokens file whose `viewer` lines may be of the old meaning:
/// one per such line, unless the file carries [`ROLES_MARKER`].
pub(crate) fn viewer_warnings(text: &str, path: &Path) -> Vec<String> {
    if text.lines().any(|l| l.trim() == ROLES_MARKER) {
        return Vec::new();
    }
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let line = raw.trim();
            if line.starts_with('#') || !line.ends_with(":viewer") {
                return None;
            }
            let name = line.split(':').next().unwrap_or("");
            Some(format!(
                "{}: line {}: {name:?} has role viewer, which now means read-only (SkyPilot's viewer); \
                 before, a viewer could act on their own clusters, which is now the role `user`. \
                 Write `user` to keep that, or add the line {ROLES_MARKER:?} to say this file means read-only",
                path.display(),
                i + 1
            ))
        })
        .collect()
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.users.len())
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Whether `name` is a valid user name: 1–64 of `A-Z a-z 0-9 . _ @ + -`, starting with a
/// letter or digit (it becomes SkyPilot's user identity and a cluster's owner).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '+' | '-'))
}

const NAME_RULE: &str =
    "expected 1-64 of letters, digits, '.', '_', '@', '+', '-', starting with a letter or digit";

/// Splits `NAME:SECRET:ROLE` (the secret holds no `:`).
fn split_line<'a>(line: &'a str, what: &str) -> Result<(&'a str, &'a str, Role), String> {
    let parts: Vec<&str> = line.split(':').collect();
    let [name, secret, role] = parts[..] else {
        return Err(format!(
            "expected NAME:{what}:ROLE (three fields separated by ':'), found {} field(s)",
            parts.len()
        ));
    };
    if !valid_name(name) {
        return Err(format!("user name {name:?}: {NAME_RULE}"));
    }
    let role = Role::parse(role)
        .ok_or_else(|| format!("role {role:?} of {name:?}: expected {}", Role::NAMES))?;
    Ok((name, secret, role))
}

/// The lines of a users or tokens file that hold an entry, trimmed, with their line
/// numbers (blank lines and `#` comments left out).
fn entry_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Parses the users file's text; `path` is only used in errors.
pub(crate) fn parse_users(text: &str, path: &Path) -> Result<Vec<User>, FileError> {
    let mut out: Vec<User> = Vec::new();
    for (n, line) in entry_lines(text) {
        let err = |message: String| FileError {
            file: path.to_path_buf(),
            line: n,
            message,
        };
        let (name, hash, role) = split_line(line, "ARGON2ID-HASH").map_err(err)?;
        let parsed = PasswordHash::new(hash).map_err(|e| {
            err(format!(
                "the hash of {name:?} is not a PHC string ({e}): expected $argon2id$… as printed by `skypilot-host hash-password`"
            ))
        })?;
        if parsed.algorithm.as_str() != "argon2id" {
            return Err(err(format!(
                "the hash of {name:?} is {}, expected argon2id (make one with `skypilot-host hash-password`)",
                parsed.algorithm
            )));
        }
        if parsed.salt.is_none()
            || parsed.hash.is_none()
            || argon2::Params::try_from(&parsed).is_err()
        {
            return Err(err(format!(
                "the hash of {name:?} lacks its parameters, salt or digest: expected $argon2id$v=19$m=…,t=…,p=…$SALT$HASH as printed by `skypilot-host hash-password`"
            )));
        }
        if out.iter().any(|u| u.name == name) {
            return Err(err(format!("user {name:?} is listed twice")));
        }
        out.push(User {
            name: name.to_string(),
            hash: hash.to_string(),
            role,
        });
    }
    Ok(out)
}

/// Parses the tokens file's text: (name, digest, role) per token.
pub(crate) fn parse_tokens(
    text: &str,
    path: &Path,
) -> Result<Vec<(String, [u8; 32], Role)>, FileError> {
    let mut out: Vec<(String, [u8; 32], Role)> = Vec::new();
    for (n, line) in entry_lines(text) {
        let err = |message: String| FileError {
            file: path.to_path_buf(),
            line: n,
            message,
        };
        let (name, digest, role) = split_line(line, "$blake2b$HEX").map_err(err)?;
        let digest = digest
            .strip_prefix(TOKEN_DIGEST_PREFIX)
            .and_then(decode_hex32)
            .ok_or_else(|| {
                err(format!(
                    "the digest of {name:?}'s token: expected $blake2b$ and 64 hex digits, as printed by `skypilot-host make-token`"
                ))
            })?;
        if out.iter().any(|(_, d, _)| *d == digest) {
            return Err(err(format!("the token of {name:?} is listed twice")));
        }
        out.push((name.to_string(), digest, role));
    }
    Ok(out)
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// BLAKE2b-256 of a token.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(token.as_bytes());
    h.finalize().into()
}

fn read_file(path: &Path, key: &str) -> Result<String, FileError> {
    crate::files::read_regular_text(path, MAX_FILE_BYTES).map_err(|e| FileError {
        file: path.to_path_buf(),
        line: 0,
        message: format!("({key}) it {e}"),
    })
}

/// The file of the admin the web UI makes when no user is configured: beside the host
/// database, like the rest of the host's state.
pub(crate) const INITIAL_ADMIN_FILE: &str = "web-ui-initial-admin";
/// The generated admin's name.
pub(crate) const INITIAL_ADMIN: &str = "admin";

/// Where the generated admin's password lives for a host database at `database`.
pub(crate) fn initial_admin_path(database: &Path) -> PathBuf {
    database
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(INITIAL_ADMIN_FILE)
}

/// The password of the generated admin: read from `path` when it exists (one is made
/// once, never another), else made (24 random characters) and written there, mode 0600,
/// created exclusively. Returns it and whether it was made now.
pub(crate) fn initial_admin_password(path: &Path) -> anyhow::Result<(String, bool)> {
    use std::io::ErrorKind;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        let text = crate::files::read_regular_text(path, 4096).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot read the generated admin's password: it {e}",
                path.display()
            )
        })?;
        let pw = text.trim().to_string();
        if pw.chars().count() < MIN_PASSWORD_CHARS {
            anyhow::bail!(
                "{}: the generated admin's password file holds no password of {MIN_PASSWORD_CHARS} or more characters; delete it to make a new one",
                path.display()
            );
        }
        return Ok((pw, false));
    }
    let pw = random_token(18)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{}: made by another process at the same time; start again",
                path.display()
            ),
            _ => anyhow::anyhow!(
                "{}: cannot write the generated admin's password: {e}",
                path.display()
            ),
        })?;
    f.write_all(format!("{pw}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot write the generated admin's password: {e}",
                path.display()
            )
        })?;
    Ok((pw, true))
}

impl Users {
    /// The generated admin alone (no users or tokens file configured).
    pub(crate) fn initial_admin(password: &str) -> anyhow::Result<Users> {
        let mut users = Users::default();
        users.users.insert(
            INITIAL_ADMIN.to_string(),
            User {
                name: INITIAL_ADMIN.to_string(),
                hash: hash_password(password)?,
                role: Role::Admin,
            },
        );
        Ok(users)
    }

    /// Reads `web_ui.users_file` and `web_ui.tokens_file` (either may be unset).
    pub(crate) fn load(
        users_file: Option<&Path>,
        tokens_file: Option<&Path>,
    ) -> Result<Users, FileError> {
        let mut users = Users::default();
        if let Some(path) = users_file {
            let text = read_file(path, "web_ui.users_file")?;
            users.warnings.extend(viewer_warnings(&text, path));
            for u in parse_users(&text, path)? {
                users.users.insert(u.name.clone(), u);
            }
        }
        if let Some(path) = tokens_file {
            let text = read_file(path, "web_ui.tokens_file")?;
            users.warnings.extend(viewer_warnings(&text, path));
            for (name, digest, role) in parse_tokens(&text, path)? {
                users.tokens.insert(digest, (name, role));
            }
        }
        Ok(users)
    }

    /// Every name the web UI grants a role to (people and token names), with the role;
    /// a name in both files gets the lesser.
    pub(crate) fn roles(&self) -> Vec<(String, Role)> {
        let mut out: HashMap<String, Role> = HashMap::new();
        let people = self.users.values().map(|u| (u.name.clone(), u.role));
        let scripts = self.tokens.values().cloned();
        for (name, role) in people.chain(scripts) {
            let e = out.entry(name).or_insert(role);
            // Admin < User < Viewer in declaration order: max is the lesser right.
            *e = (*e).max(role);
        }
        let mut v: Vec<(String, Role)> = out.into_iter().collect();
        v.sort();
        v
    }

    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    pub(crate) fn token_count(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// The name and role an API token belongs to.
    pub(crate) fn token(&self, token: &str) -> Option<(String, Role)> {
        if !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        self.tokens.get(&token_digest(token)).cloned()
    }
}

/// Checks a password against a PHC hash: CPU-heavy (tens of milliseconds), so callers
/// run it on a blocking thread.
pub(crate) fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A fresh random salt for argon2.
fn salt() -> anyhow::Result<SaltString> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read random bytes from the system: {e}"))?;
    SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("cannot encode the salt: {e}"))
}

/// The argon2id PHC hash of a password (default parameters: 19 MiB, 2 passes).
pub(crate) fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = salt()?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// `n` random bytes, base64url without padding.
pub(crate) fn random_token(n: usize) -> anyhow::Result<String> {
    use base64::Engine;
    let bytes = crate::secret::random_bytes(n)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn check_name_and_role(name: &str, role: &str) -> anyhow::Result<Role> {
    if !valid_name(name) {
        anyhow::bail!("user name {name:?}: {NAME_RULE}");
    }
    Role::parse(role).ok_or_else(|| anyhow::anyhow!("role {role:?}: expected {}", Role::NAMES))
}

/// `skypilot-host hash-password NAME --role ROLE`: reads the password (twice without
/// echo on a terminal, else one line of stdin) and prints the users-file line.
pub(crate) fn hash_password_cli(name: &str, role: &str) -> anyhow::Result<()> {
    let role = check_name_and_role(name, role)?;
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = read_hidden(&format!("password for {name}: "))?;
        let again = read_hidden("again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing printed");
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| anyhow::anyhow!("cannot read the password from stdin: {e}"))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        anyhow::bail!(
            "the password is shorter than {MIN_PASSWORD_CHARS} characters; nothing printed"
        );
    }
    let hash = hash_password(&password)?;
    println!("{name}:{hash}:{}", role.as_str());
    Ok(())
}

/// `skypilot-host make-token NAME --role ROLE`: prints a new API token on stderr and its
/// tokens-file line on stdout.
pub(crate) fn make_token_cli(name: &str, role: &str) -> anyhow::Result<()> {
    let role = check_name_and_role(name, role)?;
    let token = format!("{TOKEN_PREFIX}{}", random_token(32)?);
    let digest = token_digest(&token);
    eprintln!("token for {name} (shown once; send it as `Authorization: Bearer TOKEN`):\n{token}");
    println!(
        "{name}:{TOKEN_DIGEST_PREFIX}{}:{}",
        hex::encode(digest),
        role.as_str()
    );
    Ok(())
}

/// Reads one line from the terminal with echo off.
fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    rpassword::prompt_password(prompt)
        .map_err(|e| anyhow::anyhow!("cannot read the password from the terminal: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = "users";

    #[test]
    fn a_users_line_round_trips() {
        let hash = hash_password("correct horse").unwrap();
        let text = format!("# team\n\nalice:{hash}:admin\nbob@example.org:{hash}:viewer\n");
        let users = parse_users(&text, Path::new(P)).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].role, Role::Admin);
        assert_eq!(users[1].name, "bob@example.org");
        assert!(verify_password(&users[0].hash, "correct horse"));
        assert!(!verify_password(&users[0].hash, "correct horsf"));
        assert!(!format!("{:?}", users[0]).contains("argon2"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let hash = hash_password("correct horse").unwrap();
        for (text, line, needle) in [
            ("alice:admin\n".to_string(), 1, "three fields"),
            (
                format!("\n\nalice:{hash}:root\n"),
                3,
                "admin, user or viewer",
            ),
            ("alice:plaintext:admin\n".to_string(), 1, "PHC"),
            (
                "alice:$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo:admin\n".to_string(),
                1,
                "expected argon2id",
            ),
            (format!("al ice:{hash}:admin\n"), 1, "user name"),
            ("alice:$argon2id$nope:admin\n".to_string(), 1, "salt"),
            (
                format!("alice:{hash}:admin\nalice:{hash}:viewer\n"),
                2,
                "twice",
            ),
        ] {
            let e = parse_users(&text, Path::new(P)).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            let s = e.to_string();
            assert!(s.starts_with(&format!("users: line {line}: ")), "{s}");
            assert!(s.contains(needle), "{s}");
        }
    }

    #[test]
    fn tokens_are_found_by_digest_only() {
        let token = format!("{TOKEN_PREFIX}abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG");
        let line = format!(
            "ci:{TOKEN_DIGEST_PREFIX}{}:admin\n",
            hex::encode(token_digest(&token))
        );
        let parsed = parse_tokens(&line, Path::new("tokens")).unwrap();
        let mut users = Users::default();
        for (n, d, r) in parsed {
            users.tokens.insert(d, (n, r));
        }
        assert_eq!(users.token(&token), Some(("ci".to_string(), Role::Admin)));
        assert_eq!(users.token(&format!("{token}x")), None);
        assert_eq!(users.token("sky_abc"), None);
        let e = parse_tokens("ci:$blake2b$zz:admin\n", Path::new("tokens")).unwrap_err();
        assert!(e.to_string().starts_with("tokens: line 1: "), "{e}");
    }

    #[test]
    fn an_old_viewer_line_is_named_unless_the_file_says_it_means_read_only() {
        let text = "alice:H:admin\n# ops\nbob:H:viewer\ncarol:H:user\n";
        let w = viewer_warnings(text, Path::new("users"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("users: line 3: \"bob\""), "{}", w[0]);
        assert!(
            w[0].contains("`user`") && w[0].contains(ROLES_MARKER),
            "{}",
            w[0]
        );
        let marked = format!("{ROLES_MARKER}\n{text}");
        assert!(viewer_warnings(&marked, Path::new("users")).is_empty());
        let roles: Vec<Role> = ["admin", "user", "viewer"]
            .iter()
            .map(|r| Role::parse(r).unwrap())
            .collect();
        assert_eq!(roles, [Role::Admin, Role::User, Role::Viewer]);
    }

    #[test]
    fn the_initial_admin_is_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = initial_admin_path(&dir.path().join("host.db"));
        assert_eq!(path, dir.path().join(INITIAL_ADMIN_FILE));
        let (pw, made) = initial_admin_password(&path).unwrap();
        assert!(made && pw.len() >= 24, "{pw}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, made) = initial_admin_password(&path).unwrap();
        assert_eq!((again, made), (pw.clone(), false));
        let users = Users::initial_admin(&pw).unwrap();
        assert!(verify_password(
            &users.get(INITIAL_ADMIN).unwrap().hash,
            &pw
        ));
        std::fs::write(&path, "short\n").unwrap();
        assert!(initial_admin_password(&path)
            .unwrap_err()
            .to_string()
            .contains("delete it"));
    }

    #[test]
    fn names() {
        assert!(valid_name("alice"));
        assert!(valid_name("a.b-c_d+e@x.org"));
        for bad in ["", "-a", "a b", "a:b", "<script>", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
