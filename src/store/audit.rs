//! The `audit` table: every action a role or a person takes on a cluster, and its
//! outcome. Appended by the roles that act (autostop, web UI) through
//! [`Store::open_writer`]; never updated.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{named_params, Row};

use super::{sql_count, At, Result, Store};
use crate::time::Timestamp;

/// Declares a string-backed enum whose names are the values allowed in the database
/// (the `CHECK` constraints of migration 2 list the same names).
macro_rules! db_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}: expected one of {}",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|m: String| FromSqlError::Other(m.into()))
            }
        }
    };
}

db_enum! {
    /// What was done.
    AuditAction {
        /// Set (or lower) a cluster's autostop.
        Autostop = "autostop",
        CancelAutostop = "cancel_autostop",
        Stop = "stop",
        Down = "down",
        Start = "start",
        Login = "login",
        Logout = "logout",
        /// A state-changing request through the gateway (or its refusal).
        Request = "request",
        /// The web UI set a person's role inside SkyPilot to ours (a sync or a drift).
        Role = "role",
    }
}

db_enum! {
    /// How it went.
    AuditOutcome {
        /// SkyPilot carried it out.
        Ok = "ok",
        /// SkyPilot (or the way to it) failed; `detail` has the error.
        Error = "error",
        /// Decided but not sent: a dry run.
        DryRun = "dry_run",
        /// Refused before reaching SkyPilot (not allowed, stale data, …).
        Refused = "refused",
        /// Denied: a login with wrong credentials.
        Failure = "failure",
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// The role or person that acted (`autostop`, `web-ui:alice`, …).
    pub actor: String,
    pub action: AuditAction,
    pub cluster: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
}

fn read_entry(r: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        at: r.get("at")?,
        actor: r.get("actor")?,
        action: r.get("action")?,
        cluster: r.get("cluster")?,
        outcome: r.get("outcome")?,
        detail: r.get("detail")?,
    })
}

const AUDIT_COLUMNS: &str = "at, actor, action, cluster, outcome, detail";

impl Store {
    /// Appends one entry; returns its id.
    pub fn append_audit(&self, e: &AuditEntry) -> Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit (at, actor, action, cluster, outcome, detail) VALUES (:at, :actor, :action, :cluster, :outcome, :detail)",
            )
            .and_then(|mut s| {
                s.execute(named_params! {
                    ":at": e.at,
                    ":actor": e.actor,
                    ":action": e.action,
                    ":cluster": e.cluster,
                    ":outcome": e.outcome,
                    ":detail": e.detail,
                })
            })
            .at(&self.path)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn audit_query(&self, sql: &str, args: &[(&str, &dyn ToSql)]) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare_cached(sql).at(&self.path)?;
        let rows = stmt.query_map(args, read_entry).at(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.path)
    }

    /// The latest audit entries, newest first.
    pub(crate) fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit_query(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT :limit"),
            &[(":limit", &sql_count(limit))],
        )
    }

    /// One page of the audit log, newest first: `limit` entries after the `offset` newest.
    pub(crate) fn audit_page(&self, offset: usize, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit_query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id DESC LIMIT :limit OFFSET :offset"
            ),
            &[
                (":limit", &sql_count(limit)),
                (":offset", &sql_count(offset)),
            ],
        )
    }

    /// How many entries the audit log holds.
    pub(crate) fn audit_count(&self) -> Result<usize> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM audit")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .at(&self.path)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Entries at or after `since`, oldest first (at most `limit`).
    pub fn audit_since(&self, since: Timestamp, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit_query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE at >= :since ORDER BY id ASC LIMIT :limit"
            ),
            &[(":since", &since), (":limit", &sql_count(limit))],
        )
    }

    /// Entries naming one cluster, newest first.
    pub(crate) fn audit_for_cluster(&self, cluster: &str, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit_query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE cluster = :cluster ORDER BY id DESC LIMIT :limit"
            ),
            &[(":cluster", &cluster), (":limit", &sql_count(limit))],
        )
    }

    /// The latest entries made by `actor` or recording one of `actions`, newest first.
    pub(crate) fn audit_by(
        &self,
        actor: &str,
        actions: &[AuditAction],
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        // The actions are this binary's own names: one placeholder each.
        let names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!(":a{i}")).collect();
        let mut args: Vec<(&str, &dyn ToSql)> = vec![(":actor", &actor)];
        for (k, n) in placeholders.iter().zip(&names) {
            args.push((k.as_str(), n));
        }
        let limit = sql_count(limit);
        args.push((":limit", &limit));
        let actions_clause = if names.is_empty() {
            String::new()
        } else {
            format!(" OR action IN ({})", placeholders.join(", "))
        };
        self.audit_query(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE actor = :actor{actions_clause} ORDER BY id DESC LIMIT :limit"
            ),
            &args,
        )
    }

    /// Counts of audit entries by (action, outcome).
    pub(crate) fn audit_counts(&self) -> Result<Vec<(AuditAction, AuditOutcome, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT action, outcome, COUNT(*) AS n FROM audit GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .at(&self.path)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get("action")?, r.get("outcome")?, r.get("n")?))
            })
            .at(&self.path)?;
        rows.collect::<rusqlite::Result<_>>().at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_by_actor_or_action_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("host.db")).unwrap();
        let add = |actor: &str, action: AuditAction| {
            store
                .append_audit(&AuditEntry {
                    at: Timestamp::from_secs(1),
                    actor: actor.into(),
                    action,
                    cluster: Some("c".into()),
                    outcome: AuditOutcome::Ok,
                    detail: None,
                })
                .unwrap();
        };
        add("autostop", AuditAction::Stop);
        add("alice", AuditAction::Autostop);
        add("autostop-bot", AuditAction::Down);
        add("bob", AuditAction::Stop);
        add("autostop", AuditAction::Autostop);
        let by = |actions: &[AuditAction], limit| -> Vec<(String, AuditAction)> {
            store
                .audit_by("autostop", actions, limit)
                .unwrap()
                .into_iter()
                .map(|e| (e.actor, e.action))
                .collect()
        };
        assert_eq!(
            by(&[], 10),
            vec![
                ("autostop".into(), AuditAction::Autostop),
                ("autostop".into(), AuditAction::Stop)
            ]
        );
        assert_eq!(by(&[], 1).len(), 1);
        let with_actions = by(&[AuditAction::Autostop, AuditAction::CancelAutostop], 10);
        assert_eq!(
            with_actions,
            vec![
                ("autostop".into(), AuditAction::Autostop),
                ("alice".into(), AuditAction::Autostop),
                ("autostop".into(), AuditAction::Stop)
            ]
        );
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_named() {
        for a in AuditAction::ALL {
            assert_eq!(a.as_str().parse::<AuditAction>(), Ok(*a));
        }
        for o in AuditOutcome::ALL {
            assert_eq!(o.as_str().parse::<AuditOutcome>(), Ok(*o));
        }
        let e = "reboot".parse::<AuditAction>().unwrap_err();
        assert!(
            e.contains("\"reboot\"") && e.contains("cancel_autostop"),
            "{e}"
        );
    }
}
