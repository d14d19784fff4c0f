//! Integration tests: sky_config.
