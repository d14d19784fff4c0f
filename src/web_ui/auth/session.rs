//! Console sessions: a random id in an HttpOnly cookie, the session itself on the server
//! with an absolute expiry. The time is passed in (tests control the clock).
//!
//! Held in memory, and written through to the host database ([`save`], [`forget`]) under
//! the digest of the id, so that they outlive a restart of the web UI: a cookie the
//! memory does not know is looked up there ([`digest`]). The CSRF token is derived from
//! the id, so it is the same after a restart and nothing of it is stored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::store::{Store, StoredSession};

use crate::time::Timestamp;

/// Name of the session cookie.
pub(crate) const COOKIE: &str = "skyhost_session";
/// Most sessions held at once; past it, expired ones are dropped, then the oldest.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// Where a login came from: it decides the person's role at each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The users file (a password): the role the file gives now.
    UsersFile,
    /// Single sign-on: the role the provider's groups, as of the login, map to now.
    Sso(Vec<String>),
}

impl Origin {
    /// The groups column of the database (`None` for the users file).
    pub(crate) fn groups(&self) -> Option<Vec<String>> {
        match self {
            Origin::UsersFile => None,
            Origin::Sso(g) => Some(g.clone()),
        }
    }

    pub(crate) fn from_groups(groups: Option<Vec<String>>) -> Origin {
        groups.map_or(Origin::UsersFile, Origin::Sso)
    }
}

/// One logged-in browser.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Session {
    pub(crate) name: String,
    pub(crate) origin: Origin,
    /// The CSRF token every state-changing request of this session must carry.
    pub(crate) csrf: String,
    pub(crate) created: Timestamp,
    pub(crate) expires: Timestamp,
}

/// The server-side session store.
#[derive(Debug)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    lifetime_secs: f64,
    max: usize,
}

impl Sessions {
    pub(crate) fn new(lifetime_secs: u64, max: usize) -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            lifetime_secs: std::time::Duration::from_secs(lifetime_secs).as_secs_f64(),
            max: max.max(1),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session; returns its id (the cookie's value) and the session.
    pub(crate) fn create(
        &self,
        name: &str,
        origin: Origin,
        now: Timestamp,
    ) -> anyhow::Result<(String, Session)> {
        let id = crate::web_ui::users::random_token(32)?;
        let session = Session {
            name: name.to_string(),
            origin,
            csrf: csrf_of(&id),
            created: now,
            expires: now.plus_secs(self.lifetime_secs),
        };
        self.adopt(&id, session.clone(), now);
        Ok((id, session))
    }

    /// Holds `session` under `id` (a new one, or one read back from the database).
    pub(crate) fn adopt(&self, id: &str, session: Session, now: Timestamp) {
        let mut map = self.map();
        if map.len() >= self.max {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= self.max {
            let oldest = map
                .iter()
                .min_by(|a, b| {
                    a.1.created
                        .partial_cmp(&b.1.created)
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(id.to_string(), session);
    }

    /// The live session with this id; an expired one is removed.
    pub(crate) fn get(&self, id: &str, now: Timestamp) -> Option<Session> {
        let mut map = self.map();
        match map.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session (logout).
    pub(crate) fn remove(&self, id: &str) -> bool {
        self.map().remove(id).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

/// The key a session is stored under: the hex digest of its id.
pub(crate) fn digest(id: &str) -> String {
    hex::encode(crate::web_ui::users::token_digest(id))
}

/// The CSRF token of the session `id`: a digest of it, unguessable without it.
fn csrf_of(id: &str) -> String {
    use base64::Engine as _;
    let d = crate::web_ui::users::token_digest(&format!("skyhost-csrf:{id}"));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

/// The session `id` as the database holds it, back in memory's form.
pub(crate) fn from_stored(id: &str, s: StoredSession) -> Session {
    Session {
        name: s.name,
        origin: Origin::from_groups(s.groups),
        csrf: csrf_of(id),
        created: s.created,
        expires: s.expires,
    }
}

/// Runs `f` on the host database at `db`; a failure is logged (the session then lives in
/// memory only, until a restart).
async fn write(
    db: PathBuf,
    what: &'static str,
    f: impl FnOnce(&Store) -> crate::store::Result<()> + Send + 'static,
) {
    if let Err(e) = crate::web_ui::state::write(db, f).await {
        tracing::warn!(error = %e, "web UI: cannot {what} in the host database; it holds in memory until a restart");
    }
}

/// Writes the session `id` to the host database at `db`.
pub(crate) async fn save(db: PathBuf, id: &str, s: &Session, now: Timestamp) {
    let key = digest(id);
    let stored = StoredSession {
        name: s.name.clone(),
        groups: s.origin.groups(),
        created: s.created,
        expires: s.expires,
    };
    write(db, "record the session", move |store| {
        store.insert_session(&key, &stored, now)
    })
    .await;
}

/// Removes the session `id` from the host database at `db`.
pub(crate) async fn forget(db: PathBuf, id: &str) {
    let key = digest(id);
    write(db, "end the session", move |store| {
        store.delete_session(&key).map(drop)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::new(60, 10);
        let t0 = Timestamp::from_secs(1000);
        let (id, sess) = s.create("alice", Origin::UsersFile, t0).unwrap();
        assert_eq!(sess.expires, Timestamp::from_secs(1060));
        assert!(s.get(&id, Timestamp::from_secs(1059)).is_some());
        assert!(s.get(&id, Timestamp::from_secs(1060)).is_none());
        assert_eq!(s.len(), 0, "an expired session is dropped");
        let (id2, _) = s.create("alice", Origin::UsersFile, t0).unwrap();
        assert_ne!(id, id2);
        assert!(s.remove(&id2));
        assert!(s.get(&id2, t0).is_none());
    }

    #[test]
    fn the_store_is_bounded() {
        let s = Sessions::new(60, 3);
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                s.create("a", Origin::UsersFile, Timestamp::from_secs(i))
                    .unwrap()
                    .0,
            );
        }
        assert_eq!(s.len(), 3);
        assert!(
            s.get(&ids[0], Timestamp::from_secs(5)).is_none(),
            "oldest evicted"
        );
        assert!(s.get(&ids[4], Timestamp::from_secs(5)).is_some());
    }
}
