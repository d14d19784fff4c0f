use clap::Parser;

fn main() -> std::process::ExitCode {
    skypilot_host::cli::run(skypilot_host::cli::Cli::parse())
}
