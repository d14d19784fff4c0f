//! Reading the files a role is pointed at (host config, SkyPilot config, tokens,
//! credentials) without trusting them: only regular files, opened so that a FIFO cannot
//! block, and never more than a cap; and writing one so that a reader never sees half of
//! it ([`write_atomic`]).

use std::fmt;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file could not be read. Displayed without the path: the caller names the
/// file and the setting it came from.
#[derive(Debug)]
pub(crate) enum ReadError {
    NotFound,
    /// A FIFO, socket, device or directory: what it is.
    NotRegular(&'static str),
    TooLarge {
        max: u64,
    },
    NotUtf8 {
        offset: usize,
    },
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotFound => f.write_str("does not exist"),
            ReadError::NotRegular(kind) => {
                write!(
                    f,
                    "is a {kind}, not a regular file; expected a regular file"
                )
            }
            ReadError::TooLarge { max } => {
                write!(
                    f,
                    "is larger than {max} bytes, more than such a file can hold; not reading it"
                )
            }
            ReadError::NotUtf8 { offset } => {
                write!(f, "is not UTF-8 text (invalid byte at offset {offset})")
            }
            ReadError::Io(e) => write!(f, "cannot be read: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// The bytes of a regular file of at most `max` bytes.
pub(crate) fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        // Opening a FIFO for reading would wait for a writer; non-blocking, it does not.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ReadError::NotFound,
            _ => ReadError::Io(e),
        })?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(meta.file_type())));
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge { max });
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow while it is read: the cap holds whatever its size said.
    file.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if u64::try_from(buf.len()).unwrap_or(u64::MAX) > max {
        return Err(ReadError::TooLarge { max });
    }
    Ok(buf)
}

/// The text of a regular UTF-8 file of at most `max` bytes.
pub(crate) fn read_regular_text(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read_regular(path, max)?;
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

/// How [`write_atomic`] puts its file in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// Renamed over whatever is at the path.
    Replace,
    /// Linked only if nothing is at the path yet.
    CreateNew,
}

/// Writes `bytes` to a new temporary file of `mode` (less the umask) beside `path`,
/// synced, then puts it at `path` in one step, so a reader sees the old file or the
/// whole new one. `Ok(false)` when `place` is [`Place::CreateNew`] and `path` already
/// exists (another process made it first). The temporary file never stays behind.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    place: Place,
) -> std::io::Result<bool> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> std::io::Result<bool> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        match place {
            Place::Replace => std::fs::rename(&tmp, path).map(|()| true),
            Place::CreateNew => match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                other => other.map(|()| true),
            },
        }
    })();
    if place == Place::CreateNew || result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO at `path`. The package's checks run these tests without coreutils, so no
    /// `mkfifo` command: the call itself, which std does not wrap.
    #[allow(unsafe_code, reason = "mkfifo(3) has no safe wrapper in std")]
    fn make_fifo(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and a plain mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "hello").unwrap();
        assert_eq!(read_regular_text(&ok, 5).unwrap(), "hello");
        assert!(matches!(
            read_regular(&ok, 4),
            Err(ReadError::TooLarge { max: 4 })
        ));
        assert!(matches!(
            read_regular(&dir.path().join("nope"), 9),
            Err(ReadError::NotFound)
        ));
        assert!(matches!(
            read_regular(dir.path(), 9),
            Err(ReadError::NotRegular("directory"))
        ));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 1024),
            Err(ReadError::NotRegular("character device"))
        ));
        let fifo = dir.path().join("fifo");
        make_fifo(&fifo);
        let started = std::time::Instant::now();
        assert!(matches!(
            read_regular(&fifo, 9),
            Err(ReadError::NotRegular("FIFO"))
        ));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let bad = dir.path().join("bad");
        std::fs::write(&bad, b"ab\xffcd").unwrap();
        assert!(matches!(
            read_regular_text(&bad, 9),
            Err(ReadError::NotUtf8 { offset: 2 })
        ));
        let e = read_regular(Path::new("/dev/zero"), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("character device") && e.contains("expected a regular file"),
            "{e}"
        );
    }
}
