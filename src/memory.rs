//! Returning freed heap memory to the system.

/// Hands freed heap pages back to the OS. A poll of a large fleet or a scrape's full
/// rendering allocates several times its answer for a moment, on threads with glibc
/// arenas of their own; without this glibc keeps that peak resident.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(
    unsafe_code,
    reason = "malloc_trim is glibc's, with no safe wrapper in std or libc"
)]
pub(crate) fn release_freed() {
    // SAFETY: malloc_trim takes no pointers and only returns free pages of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_freed() {}
