//! The web UI's console sessions and CLI logins: who, since and until when; keyed by
//! the digest of the secret (the session id, the CLI's credential: never stored). A
//! single sign-on login keeps the person's groups (its role is mapped from them at each
//! request); a users-file login keeps none (its role is the users file's).

use rusqlite::{named_params, OptionalExtension as _};

use super::{At, Result, Store};
use crate::time::Timestamp;

/// A session as the database keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredSession {
    pub(crate) name: String,
    /// The provider's groups of a single sign-on login; `None` for the users file's.
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) created: Timestamp,
    pub(crate) expires: Timestamp,
}

/// A CLI login (`sky api login`) as the database keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CliLogin {
    /// Its number, for the console's list and revoke.
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) groups: Option<Vec<String>>,
    pub(crate) created: Timestamp,
    pub(crate) expires: Timestamp,
    pub(crate) last_used: Option<Timestamp>,
}

fn groups_to_sql(groups: &Option<Vec<String>>) -> Option<String> {
    groups
        .as_ref()
        .map(|g| serde_json::Value::from(g.clone()).to_string())
}

/// The groups column back: an unreadable one is taken as no groups (no role), never as
/// a users-file login.
fn groups_from_sql(text: Option<String>) -> Option<Vec<String>> {
    text.map(|t| serde_json::from_str(&t).unwrap_or_default())
}

fn cli_login(r: &rusqlite::Row<'_>) -> rusqlite::Result<CliLogin> {
    Ok(CliLogin {
        id: r.get("id")?,
        name: r.get("name")?,
        groups: groups_from_sql(r.get("groups")?),
        created: r.get("created")?,
        expires: r.get("expires")?,
        last_used: r.get("last_used")?,
    })
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
                "INSERT OR REPLACE INTO sessions (id_digest, name, groups, created, expires) VALUES (:id, :name, :groups, :created, :expires)",
                named_params! {
                    ":id": id_digest,
                    ":name": s.name,
                    ":groups": groups_to_sql(&s.groups),
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
                "SELECT name, groups, created, expires FROM sessions WHERE id_digest = :id AND expires > :now",
                named_params! { ":id": id_digest, ":now": now },
                |r| {
                    Ok(StoredSession {
                        name: r.get("name")?,
                        groups: groups_from_sql(r.get("groups")?),
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

    /// The people of single sign-on with a live session or CLI login at `now`, with the
    /// groups of their latest login.
    pub(crate) fn sso_people(&self, now: Timestamp) -> Result<Vec<(String, Vec<String>)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT name, groups FROM (
                    SELECT name, groups, created FROM sessions WHERE groups IS NOT NULL AND expires > :now
                    UNION ALL
                    SELECT name, groups, created FROM cli_logins WHERE groups IS NOT NULL AND expires > :now
                 ) ORDER BY created",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map(named_params! { ":now": now }, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    groups_from_sql(r.get(1)?).unwrap_or_default(),
                ))
            })
            .at(&self.path)?;
        let mut latest: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for row in rows {
            let (name, groups) = row.at(&self.path)?;
            latest.insert(name, groups);
        }
        Ok(latest.into_iter().collect())
    }

    /// Records a CLI login under the digest of its secret, and drops the ones expired
    /// at `now`; returns its number.
    pub(crate) fn insert_cli_login(
        &self,
        secret_digest: &str,
        name: &str,
        groups: &Option<Vec<String>>,
        created: Timestamp,
        expires: Timestamp,
    ) -> Result<i64> {
        self.conn
            .execute(
                "DELETE FROM cli_logins WHERE expires <= :now",
                named_params! { ":now": created },
            )
            .at(&self.path)?;
        self.conn
            .execute(
                "INSERT INTO cli_logins (secret_digest, name, groups, created, expires) VALUES (:d, :name, :groups, :created, :expires)",
                named_params! {
                    ":d": secret_digest,
                    ":name": name,
                    ":groups": groups_to_sql(groups),
                    ":created": created,
                    ":expires": expires,
                },
            )
            .at(&self.path)?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The CLI login whose secret has this digest, live at `now`.
    pub(crate) fn cli_login(
        &self,
        secret_digest: &str,
        now: Timestamp,
    ) -> Result<Option<CliLogin>> {
        self.conn
            .query_row(
                "SELECT id, name, groups, created, expires, last_used FROM cli_logins WHERE secret_digest = :d AND expires > :now",
                named_params! { ":d": secret_digest, ":now": now },
                cli_login,
            )
            .optional()
            .at(&self.path)
    }

    /// The live CLI logins of `name` (every person's with `None`), newest first.
    pub(crate) fn cli_logins(&self, name: Option<&str>, now: Timestamp) -> Result<Vec<CliLogin>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, name, groups, created, expires, last_used FROM cli_logins WHERE (:name IS NULL OR name = :name) AND expires > :now ORDER BY id DESC LIMIT 1000",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map(named_params! { ":name": name, ":now": now }, cli_login)
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().at(&self.path)
    }

    /// Notes that the CLI login `id` was used at `at`.
    pub(crate) fn touch_cli_login(&self, id: i64, at: Timestamp) -> Result<()> {
        self.conn
            .execute(
                "UPDATE cli_logins SET last_used = :at WHERE id = :id",
                named_params! { ":id": id, ":at": at },
            )
            .at(&self.path)?;
        Ok(())
    }

    /// Revokes the CLI login `id` (of `name` only, unless `None`); its secret digest
    /// when there was one to revoke.
    pub(crate) fn delete_cli_login(&self, id: i64, name: Option<&str>) -> Result<Option<String>> {
        let digest: Option<String> = self
            .conn
            .query_row(
                "DELETE FROM cli_logins WHERE id = :id AND (:name IS NULL OR name = :name) RETURNING secret_digest",
                named_params! { ":id": id, ":name": name },
                |r| r.get(0),
            )
            .optional()
            .at(&self.path)?;
        Ok(digest)
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
            groups: None,
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

    #[test]
    fn cli_logins_are_kept_listed_touched_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("host.db")).unwrap();
        let t = Timestamp::from_secs;
        let sso = Some(vec!["sky-users".to_string(), "x\"y".to_string()]);
        let a = store
            .insert_cli_login("da", "alice", &sso, t(100), t(200))
            .unwrap();
        let b = store
            .insert_cli_login("db", "bob", &None, t(100), t(200))
            .unwrap();
        let got = store.cli_login("da", t(150)).unwrap().unwrap();
        assert_eq!((got.id, got.name.as_str(), &got.groups), (a, "alice", &sso));
        assert_eq!(got.last_used, None);
        assert_eq!(store.cli_login("da", t(200)).unwrap(), None, "expired");
        store.touch_cli_login(a, t(160)).unwrap();
        assert_eq!(
            store.cli_login("da", t(170)).unwrap().unwrap().last_used,
            Some(t(160))
        );
        assert_eq!(store.cli_logins(None, t(150)).unwrap().len(), 2);
        assert_eq!(store.cli_logins(Some("bob"), t(150)).unwrap()[0].id, b);
        // Only the owner's own, unless an admin's (None).
        assert_eq!(store.delete_cli_login(a, Some("bob")).unwrap(), None);
        assert_eq!(
            store.delete_cli_login(a, Some("alice")).unwrap(),
            Some("da".into())
        );
        assert_eq!(store.cli_login("da", t(150)).unwrap(), None);
        assert_eq!(store.delete_cli_login(b, None).unwrap(), Some("db".into()));
    }

    #[test]
    fn sso_sessions_keep_their_groups() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("host.db")).unwrap();
        let s = StoredSession {
            name: "carol@example.org".into(),
            groups: Some(vec!["sky-admins".into()]),
            created: Timestamp::from_secs(100),
            expires: Timestamp::from_secs(200),
        };
        store
            .insert_session("d", &s, Timestamp::from_secs(100))
            .unwrap();
        assert_eq!(
            store.session("d", Timestamp::from_secs(150)).unwrap(),
            Some(s)
        );
    }
}
