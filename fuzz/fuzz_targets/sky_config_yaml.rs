//! SkyPilot config YAML (`sky-config check` / `render` input): parsed, mapped from the
//! seed keys, and written back. The writer promises YAML that reads back to the same
//! value, so a difference is reported as a finding.

use skypilot_host::sky_config::{compat, yaml};

const CLOUDS: &[&str] = &["aws", "gcp", "azure", "kubernetes", "lambda", "runpod"];

fn main() {
    let clouds: Vec<String> = CLOUDS.iter().map(|c| c.to_string()).collect();
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(value) = yaml::parse(text) else {
            return;
        };
        let written = yaml::to_yaml(&value, "fuzz");
        match yaml::parse(&written) {
            Ok(back) => assert_eq!(back, value, "to_yaml did not read back:\n{written}"),
            Err(e) => panic!("to_yaml wrote YAML that does not parse ({e}):\n{written}"),
        }
        let _ = compat::map(value.clone(), &clouds);
        let _ = compat::map(value, &[]);
    });
}
