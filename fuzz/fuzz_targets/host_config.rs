//! The host config file (TOML), parsed and validated; an accepted config is asked for
//! its credential paths.

use std::path::Path;

use skypilot_host::config::Config;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match Config::parse(text, Path::new("fuzz.toml")) {
            Ok(cfg) => {
                let _ = cfg.credential_paths();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    });
}
