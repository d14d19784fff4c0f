//! Integration tests: real.
