//! Integration tests: credentials.
