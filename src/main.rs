//! The `trellis` command: serve, migrate, bundles, users and tokens.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
