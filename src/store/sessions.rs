//! The web UI's console sessions: who, since and until when; keyed by the digest of
//! the session id (the id itself, the cookie's value, is never stored).

use rusqlite::{named_params, OptionalExtension as _};

use super::{At, Result, Store};
use crate::time::Timestamp;

/// A session as the database keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredSession {
    pub(crate) name: String,
    pub(crate) created: Timestamp,
    pub(crate) expires: Timestamp,
}

impl Store {
    /// Records a session under `id_digest`, and drops the sessions expired at `now`.
    pub(crate) fn insert_session(
        &self,
        id_digest: &str,
        s: &StoredSession,
        now: Timestamp,
    ) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM sessions WHERE expires <= :now",
                named_params! { ":now": now },
            )
            .at(&self.path)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO sessions (id_digest, name, created, expires) VALUES (:id, :name, :created, :expires)",
                named_params! {
                    ":id": id_digest,
                    ":name": s.name,
                    ":created": s.created,
                    ":expires": s.expires,
                },
            )
            .at(&self.path)?;
        Ok(())
    }

    /// The session under `id_digest` that is still live at `now`.
    pub(crate) fn session(&self, id_digest: &str, now: Timestamp) -> Result<Option<StoredSession>> {
        self.conn
            .query_row(
                "SELECT name, created, expires FROM sessions WHERE id_digest = :id AND expires > :now",
                named_params! { ":id": id_digest, ":now": now },
                |r| {
                    Ok(StoredSession {
                        name: r.get("name")?,
                        created: r.get("created")?,
                        expires: r.get("expires")?,
                    })
                },
            )
            .optional()
            .at(&self.path)
    }

    /// Ends the session under `id_digest`; whether there was one.
    pub(crate) fn delete_session(&self, id_digest: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM sessions WHERE id_digest = :id",
                named_params! { ":id": id_digest },
            )
            .at(&self.path)?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_kept_until_they_expire_or_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("host.db")).unwrap();
        let s = StoredSession {
            name: "alice".into(),
            created: Timestamp::from_secs(100),
            expires: Timestamp::from_secs(200),
        };
        store
            .insert_session("d1", &s, Timestamp::from_secs(100))
            .unwrap();
        assert_eq!(
            store.session("d1", Timestamp::from_secs(199)).unwrap(),
            Some(s.clone())
        );
        assert_eq!(
            store.session("d1", Timestamp::from_secs(200)).unwrap(),
            None
        );
        assert_eq!(
            store.session("other", Timestamp::from_secs(150)).unwrap(),
            None
        );
        // A later login drops what has expired.
        store
            .insert_session("d2", &s, Timestamp::from_secs(250))
            .unwrap();
        assert!(
            !store.delete_session("d1").unwrap(),
            "expired ones are pruned"
        );
        assert!(store.delete_session("d2").unwrap());
        assert_eq!(
            store.session("d2", Timestamp::from_secs(150)).unwrap(),
            None
        );
    }
}
