//! CLI logins: SkyPilot's own `sky api login -e URL`, answered by the web UI.
//!
//! SkyPilot 0.14.1's CLI (`sky/client/sdk.py`, `api_login`) asks `/api/health`; an
//! answer of `"status": "needs_auth"` (what SkyPilot's own server says to an anonymous
//! CLI when its auth is on; the gateway says it for us) starts its browser login:
//! - the polling flow (servers of API version 30 and later): the person opens
//!   `/auth/authorize?code_challenge=C` and authorizes; the CLI polls
//!   `/api/v1/auth/token?code_verifier=V` (404 until then) and gets the token once;
//! - the manual flow: the person opens `/token`, and pastes the token it shows.
//!
//! The token is SkyPilot's format: base64 of `{"v": 1, "user": ID, "cookies": {…}}`. The
//! CLI stores the cookies and sends them on every request: ours is [`COOKIE`], a secret
//! of 256 random bits, personal and revocable. The host database keeps its digest, the
//! person's name, their provider groups for a single sign-on login, created, expiry and
//! last use ([`crate::store::CliLogin`]); this file keeps the recently used ones in
//! memory. A revoked or expired one is gone from both at once: the CLI is then anonymous
//! and SkyPilot's CLI tells the person to run `sky api login -e URL` again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::Digest as _;

use super::session::Origin;
use crate::time::Timestamp;

/// The cookie SkyPilot's CLI sends back on every request.
pub(crate) const COOKIE: &str = "skyhost_cli";
/// How long the CLI may take to fetch its token after the person authorized it (what
/// SkyPilot's CLI waits, `AUTH_SESSION_TIMEOUT_SECONDS`).
pub(crate) const HANDOFF_SECS: f64 = 300.0;
/// How often a login's last use is written to the database, at most.
const TOUCH_EVERY_SECS: f64 = 60.0;
/// Most logins held in memory, and most tokens waiting for their CLI.
const MAX_HELD: usize = 10_000;

/// A live CLI login, as a request finds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Held {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) origin: Origin,
    pub(crate) expires: Timestamp,
    /// When its last use was written to the database.
    touched: Timestamp,
}

/// The CLI logins the web UI knows (a cache of the database's), and the tokens waiting
/// for their CLI to fetch them.
#[derive(Debug, Default)]
pub(crate) struct CliLogins {
    by_digest: Mutex<HashMap<String, Held>>,
    handoffs: Mutex<HashMap<String, (String, Timestamp)>>,
}

/// The key a CLI login is stored under: the hex digest of its secret.
pub(crate) fn digest(secret: &str) -> String {
    hex::encode(crate::web_ui::users::token_digest(&format!(
        "skyhost-cli:{secret}"
    )))
}

/// SkyPilot's code challenge of a verifier: base64url(SHA-256(verifier)), no padding.
pub(crate) fn challenge_of(verifier: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// Whether `c` has the form SkyPilot's CLI sends: 43 characters of base64url.
pub(crate) fn valid_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token SkyPilot's CLI takes: our cookie with `secret`, and SkyPilot's user id.
pub(crate) fn token_for(name: &str, secret: &str) -> String {
    use base64::Engine as _;
    let data = serde_json::json!({
        "v": 1,
        "user": crate::web_ui::ownership::user_id_of_name(name),
        "cookies": { COOKIE: secret },
    });
    base64::engine::general_purpose::STANDARD.encode(data.to_string())
}

impl CliLogins {
    pub(crate) fn new() -> CliLogins {
        CliLogins::default()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.by_digest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new CLI login of `name` (through `origin`), recorded in the database at `db`:
    /// its number and its secret.
    pub(crate) async fn create(
        &self,
        db: PathBuf,
        name: &str,
        origin: Origin,
        lifetime_secs: f64,
        now: Timestamp,
    ) -> anyhow::Result<(i64, String)> {
        let secret = crate::web_ui::users::random_token(32)?;
        let key = digest(&secret);
        let expires = now.plus_secs(lifetime_secs);
        let (n, g, k) = (name.to_string(), origin.groups(), key.clone());
        let id =
            crate::web_ui::state::write(db, move |s| s.insert_cli_login(&k, &n, &g, now, expires))
                .await
                .map_err(|e| {
                    anyhow::anyhow!("cannot record the CLI login in the host database: {e}")
                })?;
        self.hold(
            key,
            Held {
                id,
                name: name.to_string(),
                origin,
                expires,
                touched: now,
            },
            now,
        );
        Ok((id, secret))
    }

    fn hold(&self, key: String, held: Held, now: Timestamp) {
        let mut map = self.held();
        if map.len() >= MAX_HELD {
            map.retain(|_, h| h.expires > now);
            if map.len() >= MAX_HELD {
                map.clear();
            }
        }
        map.insert(key, held);
    }

    /// The live login of `secret` from memory, and whether its last use is due to be
    /// written (then it counts as written).
    fn in_memory(&self, key: &str, now: Timestamp) -> Option<(Held, bool)> {
        let mut map = self.held();
        let h = map.get_mut(key)?;
        if h.expires <= now {
            map.remove(key);
            return None;
        }
        let due = now.secs_since(h.touched) >= TOUCH_EVERY_SECS;
        if due {
            h.touched = now;
        }
        Some((h.clone(), due))
    }

    /// Holds a login read from the database.
    pub(crate) fn adopt(&self, secret: &str, row: crate::store::CliLogin, now: Timestamp) -> Held {
        let held = Held {
            id: row.id,
            name: row.name,
            origin: Origin::from_groups(row.groups),
            expires: row.expires,
            touched: now,
        };
        self.hold(digest(secret), held.clone(), now);
        held
    }

    /// Forgets the login stored under `key` (revoked).
    pub(crate) fn forget(&self, key: &str) {
        self.held().remove(key);
    }

    /// Leaves `token` for the CLI that holds the verifier of `challenge`.
    pub(crate) fn offer(&self, challenge: &str, token: String, now: Timestamp) {
        let mut map = self.handoffs.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at)| now.secs_since(*at) < HANDOFF_SECS);
        if map.len() >= MAX_HELD {
            map.clear();
        }
        map.insert(challenge.to_string(), (token, now));
    }

    /// The token left for the CLI with `verifier`, once.
    pub(crate) fn take(&self, verifier: &str, now: Timestamp) -> Option<String> {
        let mut map = self.handoffs.lock().unwrap_or_else(|e| e.into_inner());
        let (token, at) = map.remove(&challenge_of(verifier))?;
        (now.secs_since(at) < HANDOFF_SECS).then_some(token)
    }
}

/// The live CLI login of the cookie `secret`: from memory, else from the host database;
/// its last use is written at most every minute.
pub(crate) async fn find(
    state: &std::sync::Arc<crate::web_ui::WebState>,
    secret: &str,
) -> Option<Held> {
    let now = state.clock.now();
    let key = digest(secret);
    if let Some((held, due)) = state.cli_logins.in_memory(&key, now) {
        if due {
            let id = held.id;
            tokio::spawn(crate::web_ui::state::write(
                state.db_path.clone(),
                move |s| s.touch_cli_login(id, now),
            ));
        }
        return Some(held);
    }
    let row = match state.read(move |s| Ok(s.cli_login(&key, now)?)).await {
        Ok(row) => row?,
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "web UI: cannot look up a CLI login in the host database");
            return None;
        }
    };
    let id = row.id;
    tokio::spawn(crate::web_ui::state::write(
        state.db_path.clone(),
        move |s| s.touch_cli_login(id, now),
    ));
    Some(state.cli_logins.adopt(secret, row, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_skypilots() {
        // RFC 7636's example pair, the computation SkyPilot's CLI makes.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"
        ));
        assert!(!valid_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
    }

    #[test]
    fn a_token_is_handed_over_once_and_not_late() {
        let c = CliLogins::new();
        let v = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let t = Timestamp::from_secs(1000);
        c.offer(&challenge_of(v), "tok".into(), t);
        assert_eq!(c.take("another verifier", t), None);
        assert_eq!(c.take(v, t.plus_secs(10.0)), Some("tok".into()));
        assert_eq!(c.take(v, t.plus_secs(11.0)), None, "once");
        c.offer(&challenge_of(v), "tok".into(), t);
        assert_eq!(c.take(v, t.plus_secs(HANDOFF_SECS)), None, "too late");
    }

    #[test]
    fn the_token_is_skypilots_format() {
        use base64::Engine as _;
        let t = token_for("alice", "SECRET");
        let raw = base64::engine::general_purpose::STANDARD.decode(t).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(
            v["user"],
            crate::web_ui::ownership::user_id_of_name("alice")
        );
        assert_eq!(v["cookies"][COOKIE], "SECRET");
    }
}
