//! Integration tests: cluster_manager.
