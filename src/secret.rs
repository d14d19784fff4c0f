//! Secrets' small helpers, shared by the web UI and the launch policy: random bytes from
//! the system, and comparing a secret with what a request carried.

use subtle::ConstantTimeEq as _;

/// `n` random bytes from the system's generator.
pub(crate) fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read random bytes from the system: {e}"))?;
    Ok(bytes)
}

/// Whether `given` is the secret `expected`, in time that does not depend on where they
/// differ. An empty secret matches nothing.
pub(crate) fn matches(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_exactly() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abd"));
        assert!(!matches("abc", "ab"));
        assert!(!matches("abc", "abcd"));
        assert!(!matches("", ""));
    }

    #[test]
    fn random_bytes_differ() {
        let (a, b) = (random_bytes(32).unwrap(), random_bytes(32).unwrap());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
