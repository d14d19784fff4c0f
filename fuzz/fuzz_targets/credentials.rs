//! The cloud credential checks, through the public entry `credentials::check_cloud`,
//! which reads a real file (or, for Azure, a directory). The first byte picks the cloud;
//! the rest is the file. For Azure the rest is split at the first NUL byte into
//! `msal_token_cache.json` and `azureProfile.json`.
//!
//! Files are written under `$FUZZ_SCRATCH` (or the system temp dir), in a directory of
//! this process.

use std::path::PathBuf;

use skypilot_host::credentials::check_cloud;

const CLOUDS: &[&str] = &["aws", "gcp", "azure", "kubernetes", "lambda", "runpod"];

fn main() {
    let base = std::env::var_os("FUZZ_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("credentials-{}", std::process::id()));
    let azure = base.join("azure");
    std::fs::create_dir_all(&azure).expect("scratch directory");
    let file = base.join("credential");
    afl::fuzz!(|data: &[u8]| {
        let Some((&pick, rest)) = data.split_first() else {
            return;
        };
        let cloud = CLOUDS[usize::from(pick) % CLOUDS.len()];
        let report = if cloud == "azure" {
            let (cache, profile) = match rest.iter().position(|&b| b == 0) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            std::fs::write(azure.join("msal_token_cache.json"), cache).expect("write");
            std::fs::write(azure.join("azureProfile.json"), profile).expect("write");
            check_cloud(cloud, &azure)
        } else {
            std::fs::write(&file, rest).expect("write");
            check_cloud(cloud, &file)
        };
        let _ = report.ok();
    });
}
