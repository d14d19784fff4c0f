//! The policy's shared secret: SkyPilot cannot send headers to an admin-policy URL, so
//! the token rides in its query string (`?token=…`). Read from `policy.token_file`,
//! created there (random, mode 0600) when `policy.create_token` says so.

use std::path::Path;

/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 4096;

/// A token: printable ASCII without blanks, long enough to guess at no rate.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares with what a request carried, in time that does not depend on where
    /// they differ.
    pub(crate) fn matches(&self, given: &str) -> bool {
        crate::secret::matches(&self.0, given)
    }

    fn parse(text: &str, path: &Path) -> anyhow::Result<Token> {
        let t = text.trim();
        if t.len() < 16 {
            anyhow::bail!(
                "{}: the policy token is {} characters long: expected at least 16 (e.g. `head -c 32 /dev/urandom | base64 | tr -d '+/='`)",
                path.display(),
                t.len()
            );
        }
        if let Some(c) = t
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c)))
        {
            anyhow::bail!(
                "{}: the policy token holds {c:?}: expected letters, digits and - . _ ~ only (it goes into a URL as it is)",
                path.display()
            );
        }
        Ok(Token(t.to_string()))
    }
}

/// Reads the token; with `create`, a missing file is first created with a new random
/// token (two processes creating it at once agree: the file appears whole, once).
pub(crate) fn load(path: &Path, create: bool) -> anyhow::Result<Token> {
    use crate::files::ReadError;
    match crate::files::read_regular_text(path, MAX_TOKEN_BYTES) {
        Ok(text) => Token::parse(&text, path),
        Err(ReadError::NotFound) if create => {
            create_new(path)?;
            let text = crate::files::read_regular_text(path, MAX_TOKEN_BYTES).map_err(|e| {
                anyhow::anyhow!("{}: cannot read the new policy token: it {e}", path.display())
            })?;
            Token::parse(&text, path)
        }
        Err(ReadError::NotFound) => anyhow::bail!(
            "{}: the policy token file does not exist: create it (a random string of letters and digits) or set policy.create_token = true",
            path.display()
        ),
        Err(e) => anyhow::bail!("{}: cannot read the policy token: it {e}", path.display()),
    }
}

fn create_new(path: &Path) -> anyhow::Result<()> {
    let token = hex::encode(crate::secret::random_bytes(32)?);
    // Another process may make it first: theirs is the token (`Ok(false)`).
    crate::files::write_atomic(
        path,
        format!("{token}\n").as_bytes(),
        0o600,
        crate::files::Place::CreateNew,
    )
    .map(drop)
    .map_err(|e| anyhow::anyhow!("{}: cannot create the policy token: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_tokens_only() {
        let t = Token("abcdefghijklmnop".to_string());
        assert!(t.matches("abcdefghijklmnop"));
        assert!(!t.matches("abcdefghijklmnoq"));
        assert!(!t.matches("abcdefghijklmno"));
        assert!(!t.matches("abcdefghijklmnopq"));
        assert!(!t.matches(""));
    }

    #[test]
    fn created_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let e = load(&path, false).unwrap_err().to_string();
        assert!(
            e.contains("does not exist") && e.contains("create_token"),
            "{e}"
        );
        let a = load(&path, true).unwrap();
        assert_eq!(a.as_str().len(), 64);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = load(&path, true).unwrap();
        assert_eq!(a, b, "an existing token is kept");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn weak_or_unsafe_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        assert!(load(&path, false)
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        std::fs::write(&path, "abcdefghijklmnop&x=1").unwrap();
        assert!(load(&path, false).unwrap_err().to_string().contains("'&'"));
        std::fs::write(&path, "  abcdefghijklmnopqrstuvwxyz-._~0123\n").unwrap();
        assert_eq!(
            load(&path, false).unwrap().as_str(),
            "abcdefghijklmnopqrstuvwxyz-._~0123"
        );
    }
}
