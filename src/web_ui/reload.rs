//! The users and tokens files, read again when they change: checked every few seconds
//! (size, modification time, inode), read once a change has settled, and replaced as a
//! whole when the new ones read well.
//! Nobody is logged out: a session holds while its person is still in the file, with the
//! role the file gives now. A file that does not read keeps the previous one in force;
//! why is logged and shown on the Services page until a good one comes.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::state::WebState;
use super::users::Users;

/// How often the files are looked at.
pub(crate) const EVERY: Duration = Duration::from_secs(2);

/// What identifies a version of a file: (size, mtime in ns, inode), or why it cannot be
/// looked at.
type Version = Result<(u64, i128, u64), String>;

fn version(path: &PathBuf) -> Version {
    std::fs::metadata(path)
        .map(|m| {
            let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            (m.len(), mtime, m.ino())
        })
        .map_err(|e| e.to_string())
}

/// Checks the configured files every `every` and takes a changed version that reads
/// well. Runs until aborted; does nothing without a users or tokens file.
pub(crate) async fn run(state: Arc<WebState>, every: Duration) {
    let w = &state.config.web_ui;
    let files: Vec<PathBuf> = [&w.users_file, &w.tokens_file]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if files.is_empty() {
        return;
    }
    let mut seen: Vec<Version> = files.iter().map(version).collect();
    // A changed version is read once it has stayed the same for one more look: a file
    // being written (an editor's save, `>>`) is not read half-way.
    let mut settling: Option<Vec<Version>> = None;
    loop {
        tokio::time::sleep(every).await;
        let now: Vec<Version> = files.iter().map(version).collect();
        if now == seen {
            settling = None;
            continue;
        }
        if settling.as_ref() != Some(&now) {
            settling = Some(now);
            continue;
        }
        settling = None;
        seen = now;
        reload(&state).await;
    }
}

/// Reads the files again; the new users replace the old ones only when both read well.
pub(crate) async fn reload(state: &Arc<WebState>) {
    let (users_file, tokens_file) = (
        state.config.web_ui.users_file.clone(),
        state.config.web_ui.tokens_file.clone(),
    );
    let read = tokio::task::spawn_blocking(move || {
        Users::load(users_file.as_deref(), tokens_file.as_deref())
    })
    .await;
    let problem = match read {
        Ok(Ok(users)) => {
            tracing::info!(
                users = users.user_count(),
                tokens = users.token_count(),
                "web UI: the users and tokens files changed and were read again"
            );
            for w in &users.warnings {
                tracing::warn!("{w}");
            }
            *state.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(users);
            // A cached password check may be of a password the file no longer has.
            state.basic_cache.clear();
            None
        }
        Ok(Err(e)) => Some(format!("{e}; the previous users and tokens stay in force")),
        Err(e) => Some(format!("reading the users file did not complete: {e}")),
    };
    if let Some(p) = &problem {
        tracing::error!("web UI: {p}");
    }
    *state
        .users_problem
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = problem;
}
