//! One cluster manager per database: an exclusive `flock` on `<database>.lock`, held
//! while the manager runs, with the holder's pid inside for the next one's message.

use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Held while the cluster manager runs; released when dropped (or the process dies).
#[derive(Debug)]
pub struct WriterLock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("host database {database}: another cluster manager (pid {holder}) is running on it; only one may write it (lock file {lock})")]
    Held {
        database: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("host database {database}: cannot take the lock file {lock}: {source}")]
    Io {
        database: PathBuf,
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive `flock` on the file at `path` (created if missing) with this process's
/// pid written in it: `Ok(Ok(file))` while held (released when the file is dropped or
/// the process dies), or `Ok(Err(holder))` with the holder's pid ("unknown" when it has
/// not written it yet) when another process holds it. Shared by the cluster manager's
/// writer lock and the autostop enforcer's pass lock.
#[allow(
    unsafe_code,
    reason = "flock(2): std's safe File::try_lock needs Rust 1.89, above this crate's rust-version"
)]
pub(crate) fn lock_with_pid(path: &Path) -> std::io::Result<Result<std::fs::File, String>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // SAFETY: flock on a file descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e);
        }
        // The holder writes its pid just after taking the lock: give it a moment.
        let mut holder = String::new();
        for _ in 0..20 {
            holder.clear();
            let _ = file.rewind();
            let _ = Read::by_ref(&mut file).take(32).read_to_string(&mut holder);
            if !holder.trim().is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pid: String = holder.chars().filter(char::is_ascii_digit).collect();
        return Ok(Err(if pid.is_empty() {
            "unknown".into()
        } else {
            pid
        }));
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()?;
    Ok(Ok(file))
}

impl WriterLock {
    /// Takes the lock of `database`, or says who holds it.
    pub(crate) fn acquire(database: &Path) -> Result<WriterLock, LockError> {
        let mut lock = database.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let io = |source| LockError::Io {
            database: database.to_path_buf(),
            lock: lock.clone(),
            source,
        };
        if let Some(dir) = database.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
        }
        match lock_with_pid(&lock).map_err(io)? {
            Ok(file) => Ok(WriterLock { _file: file }),
            Err(holder) => Err(LockError::Held {
                database: database.to_path_buf(),
                lock,
                holder,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("host.db");
        let first = WriterLock::acquire(&db).unwrap();
        let e = WriterLock::acquire(&db).unwrap_err().to_string();
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        assert!(e.contains(&db.display().to_string()), "{e}");
        drop(first);
        WriterLock::acquire(&db).unwrap();
    }
}
